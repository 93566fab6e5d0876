"""Config mistakes are caught at load time, in one line that names the file, the key, what was found and
what is expected — before they look like outages (a probe that cannot connect, a budget that never moves,
a warning that never fires). `check` exits 3 (UNKNOWN) for them, never 2 (CRITICAL)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from llmpulse.core.config import parse_config
from llmpulse.core.validate import ConfigError
from tests.cli_helpers import run_cli


def parse(text: str):
    import tomllib

    return parse_config(tomllib.loads(text), "test.toml")


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        # a typo of a catalog id, with neither kind nor base_url: say which id was meant
        ("[providers.opneai]\npriority = 3\n", "providers.opneai", "did you mean 'openai'?"),
        ('[providers.antrhopic]\napi_key_env = "K"\n', "providers.antrhopic", "did you mean 'anthropic'?"),
        # a budget on a provider nobody configured would stay at $0 forever
        ('[[budgets]]\nscope = "provider:opneai"\nlimit_usd = 50\n', "budgets[0].scope", "did you mean 'openai'?"),
        # percentages instead of fractions: a warning at 80x the budget never fires
        ("[[budgets]]\nlimit_usd = 50\nwarn_at = [80, 100]\n", "budgets[0].warn_at", "not percentages"),
        # a base URL that is not http(s) would only show up as "cannot connect"
        ('[providers.openai]\nbase_url = "api.openai.com/v1"\n', "providers.openai.base_url", "http(s) URL"),
        ('[providers.vllm]\nkind = "openai"\nbase_url = "ftp://10.0.0.5/v1"\n', "providers.vllm.base_url", "http(s)"),
    ],
)
def test_mistakes_are_errors_at_load_time(text, key, says):
    with pytest.raises(ConfigError) as err:
        parse(text)
    message = str(err.value)
    assert message.startswith(f"test.toml: {key}: found ") and says in message and "\n" not in message


def test_what_is_right_still_loads():
    cfg = parse(
        '[providers.my-vllm]\nbase_url = "http://10.0.0.5:8000/v1"\n'
        '[[budgets]]\nscope = "provider:my-vllm"\nlimit_usd = 5\nwarn_at = [0.5, 1.0, 1.5]\n'
        '[[budgets]]\nscope = "provider:openai"\nlimit_usd = 5\n'
    )
    assert [b.scope for b in cfg.usage.budgets] == ["provider:my-vllm", "provider:openai"]


def test_check_exits_unknown_on_a_config_typo_and_other_commands_exit_2(tmp_path):
    (tmp_path / "llmpulse.toml").write_text("[providers.opneai]\npriority = 1\n")
    checked = run_cli(tmp_path, "--db", str(tmp_path / "x.db"), "check")
    assert checked.returncode == 3, checked.stderr
    assert checked.stderr.count("\n") == 1 and "did you mean 'openai'?" in checked.stderr
    reported = run_cli(tmp_path, "--db", str(tmp_path / "x.db"), "report")
    assert reported.returncode == 2 and "Traceback" not in reported.stderr


@pytest.mark.parametrize("command", [["check"], ["report"], ["record", "--provider", "openai", "--model", "gpt-4o"]])
def test_db_pointing_at_a_directory_is_one_clear_line(tmp_path, command):
    folder = tmp_path / "data"
    folder.mkdir()
    r = run_cli(tmp_path, "--db", str(folder), *command)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # no worker-thread traceback after it
    assert "is a directory" in lines[0] and "llmpulse.db" in lines[0] and "internal error" not in lines[0]
    assert r.returncode == (3 if command == ["check"] else 2)


def _run_without_root_override(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """Run the CLI so file permissions apply: as root, drop the capability that ignores them."""
    if os.geteuid() != 0:
        return run_cli(tmp_path, *args)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("LLMPULSE_")}
    env.update({"XDG_CONFIG_HOME": str(tmp_path / "c"), "XDG_DATA_HOME": str(tmp_path / "d"), "NO_COLOR": "1"})
    cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", sys.executable, "-m", "llmpulse.core.cli"]
    return subprocess.run([*cmd, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_a_read_only_database_is_one_clear_line_and_loses_nothing(tmp_path):
    db = tmp_path / "ro.db"
    made = run_cli(
        tmp_path, "--db", str(db), "record", "--provider", "openai", "--model", "gpt-4o", "--input-tokens", "7"
    )
    assert made.returncode == 0, made.stderr
    for f in tmp_path.glob("ro.db*"):
        f.chmod(0o444)
    before = db.read_bytes()
    try:
        for args, code in (
            (["record", "--provider", "openai", "--model", "gpt-4o", "--input-tokens", "3"], 2),
            (["check"], 3),
        ):
            r = _run_without_root_override(tmp_path, "--db", str(db), *args)
            lines = r.stderr.strip().splitlines()
            assert r.returncode == code and len(lines) == 1, r.stderr
            assert "read-only" in lines[0] and "internal error" not in lines[0] and "Traceback" not in r.stderr
        # what was stored is still there, and reading still works
        reported = _run_without_root_override(tmp_path, "--db", str(db), "report", "--format", "json")
        assert reported.returncode == 0, reported.stderr
    finally:
        for f in tmp_path.glob("ro.db*"):
            f.chmod(0o644)
    assert db.read_bytes() == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT SUM(input_tokens) FROM usage_records").fetchone()[0] == 7


@pytest.mark.parametrize("limit", ["-5", "0", "0.0"])
def test_a_budget_limit_not_above_zero_names_the_same_expectation(limit):
    """-5 was "expected a number >= 0", and the 0 a user then wrote was "expected > 0": one expectation."""
    with pytest.raises(ConfigError) as err:
        parse_config({"budgets": [{"scope": "total", "limit_usd": float(limit)}]}, "t.toml")
    assert str(err.value).endswith("expected a number of dollars > 0"), str(err.value)


@pytest.mark.parametrize(
    "command",
    [
        ("report",),
        ("report", "--format", "json"),
        ("budgets",),
        ("alerts",),
        ("alerts", "stats"),
        ("migration", "--json"),
        ("failover",),
        ("export", "--out", "OUT"),
    ],
)
def test_a_reading_command_on_a_missing_database_says_so_and_creates_nothing(tmp_path, command):
    """A mistyped --db: `report` created an empty database and printed "0 requests, $0.00", `alerts` "no
    open alerts" — figures about a database nobody ever collected into. Now the one line `status` gives."""
    db = tmp_path / "typo.db"
    (tmp_path / "llmpulse.toml").write_text('[[budgets]]\nscope = "total"\nlimit_usd = 100\n')
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    r = run_cli(tmp_path, "--db", str(db), *args)
    assert r.returncode == 2, (command, r.stdout, r.stderr)
    assert (
        r.stderr == f"llmpulse: error: no database at {db}: nothing has collected there yet (run 'llmpulse daemon')\n"
    )
    assert r.stdout == "" and not db.exists() and not (tmp_path / "out").exists()


def test_providers_on_a_missing_database_lists_the_catalog_and_creates_nothing(tmp_path):
    """`providers` answers from the catalog and config; only an existing database can add a hand-set
    enable/disable to it. A mistyped --db used to leave an empty database behind."""
    db = tmp_path / "typo.db"
    r = run_cli(tmp_path, "--db", str(db), "providers", "--json")
    assert r.returncode == 0, r.stderr
    rows = {p["id"]: p for p in json.loads(r.stdout)["providers"]}
    assert "openai" in rows and rows["openai"]["enabled_source"] == "config"
    assert not db.exists()
    # where the database exists, the hand-set state is still read from it
    real = tmp_path / "real.db"
    assert run_cli(tmp_path, "--db", str(real), "providers", "disable", "openai").returncode == 0
    r = run_cli(tmp_path, "--db", str(real), "providers", "--json")
    openai = next(p for p in json.loads(r.stdout)["providers"] if p["id"] == "openai")
    assert openai["enabled"] is False and openai["enabled_source"] == "database"
