"""The config file: where it is found, what it may say, and one clear line for each kind of mistake."""

from __future__ import annotations

import tomllib

import pytest

from llmpulse.core.config import load_config, load_context, parse_config
from llmpulse.core.validate import ConfigError
from tests.cli_helpers import run_cli


def parse(text: str):
    return parse_config(tomllib.loads(text), "test.toml")


def test_issue_example_parses_and_defaults_hold():
    cfg = parse("""
[probe]
interval = "30s"
timeout = "10s"
slow = "3s"

[providers.openai]
base_url = "http://127.0.0.1:9000/v1"
api_key_env = "MY_OPENAI_KEY"
priority = 1
enabled = true

[providers.my-vllm]
kind = "openai-compatible"
base_url = "http://10.0.0.5:8000/v1"
api_key_env = "VLLM_KEY"
local = true
""")
    assert (cfg.probe.interval, cfg.probe.timeout, cfg.probe.slow) == (30.0, 10.0, 3.0)
    assert cfg.specs["openai"].priority == 1 and cfg.specs["my-vllm"].local
    assert cfg.specs["my-vllm"].probe_path == "/models"
    defaults = parse("")
    assert defaults.probe.timeout == 10.0 and defaults.health.failure_threshold == 3


@pytest.mark.parametrize(
    "text,key,found",
    [
        ('[probe]\ntimeoutt = "1s"\n', "probe.timeoutt", "unknown key"),
        ("[probe]\ntimeout = true\n", "probe.timeout", "True"),
        ('[probe]\ninterval = "5x"\n', "probe.interval", "5x"),
        ("[providers.openai]\npriority = -1\n", "providers.openai.priority", "-1"),
        ('[providers.mine]\nkind = "soap"\nbase_url = "http://x"\n', "providers.mine.kind", "soap"),
        ('[providers.openai]\nenabled = "yes"\n', "providers.openai.enabled", "yes"),
    ],
)
def test_bad_config_names_file_key_found_and_expected(text, key, found):
    with pytest.raises(ConfigError) as err:
        parse(text)
    message = str(err.value)
    assert message.startswith("test.toml: ") and key in message and found in message and "expected" in message
    assert "\n" not in message


def test_bad_config_is_one_line_exit_3_for_check_and_keeps_the_database(tmp_path):
    db = tmp_path / "keep.db"
    first = run_cli(tmp_path, "--db", str(db), "providers", "disable", "groq")
    assert first.returncode == 0, first.stderr
    before = db.read_bytes()
    (tmp_path / "llmpulse.toml").write_text('[probe]\ninterval = "5x"\n')
    r = run_cli(tmp_path, "--db", str(db), "check")
    assert r.returncode == 3  # UNKNOWN in the Nagios convention: cron must not page CRITICAL for a typo
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "llmpulse.toml" in lines[0] and "probe.interval" in lines[0] and "5x" in lines[0]
    assert "Traceback" not in r.stderr and db.read_bytes() == before


def test_where_config_and_database_come_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "llmpulse.toml").write_text('[probe]\ninterval = "1m"\n[storage]\npath = "from-config.db"\n')
    other = tmp_path / "other.toml"
    other.write_text('[probe]\ninterval = "2m"\n')
    env = {"HOME": str(tmp_path)}
    assert load_context(environ=env).config.probe.interval == 60
    assert load_context(environ={**env, "LLMPULSE_CONFIG": str(other)}).config.probe.interval == 120
    assert (
        load_context(config_path=str(other), environ={**env, "LLMPULSE_CONFIG": "/nope"}).config.probe.interval == 120
    )
    assert load_context(environ=env).db_path.name == "from-config.db"
    assert load_context(environ={**env, "LLMPULSE_DB": "env.db"}).db_path.name == "env.db"
    assert load_context(db_path="flag.db", environ={**env, "LLMPULSE_DB": "env.db"}).db_path.name == "flag.db"
    with pytest.raises(ConfigError, match="no such file"):
        load_context(config_path=str(tmp_path / "missing.toml"), environ=env)
    assert load_config(None).source == "defaults"


def test_every_toml_example_in_the_readme_parses():
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    assert len(blocks) >= 4
    for block in blocks:
        parse(block)


def test_slow_means_one_threshold_for_probes_and_the_p95_bands(tmp_path):
    """A probe over `[probe] slow` is degraded (slow); a p95 over the top latency band is `slow`. With
    only one of them set, the other follows it; both set apart is a config error (one line, exit 2),
    since the dashboard would show "degraded (slow)" beside "1.4s acceptable"."""
    from llmpulse.core.health import latency_band

    only_slow = parse('[probe]\nslow = "1s"\n')
    assert only_slow.health.latency_bands == (0.5, 1.0, 1.0)
    # 1.4 s: the probe is slow by [probe] slow, so its p95 band says slow too (not "acceptable").
    assert latency_band(1400.0, only_slow.health) == "slow"
    assert latency_band(900.0, only_slow.health) == "good"
    tight = parse('[probe]\nslow = "300ms"\n')
    assert tight.health.latency_bands == (0.3, 0.3, 0.3)
    only_bands = parse('[health]\nlatency_bands = ["200ms", "400ms", "800ms"]\n')
    assert only_bands.probe.slow == 0.8
    agreeing = parse('[probe]\nslow = "2s"\n[health]\nlatency_bands = ["500ms", "1s", "2s"]\n')
    assert (agreeing.probe.slow, agreeing.health.latency_bands) == (2.0, (0.5, 1.0, 2.0))
    with pytest.raises(ConfigError) as apart:
        parse('[probe]\nslow = "1s"\n[health]\nlatency_bands = ["500ms", "1s", "3s"]\n')
    assert "probe.slow" in str(apart.value) and "3s" in str(apart.value)
    path = tmp_path / "llmpulse.toml"
    path.write_text('[probe]\nslow = "1s"\n[health]\nlatency_bands = ["500ms", "1s", "3s"]\n')
    proc = run_cli(tmp_path, "--config", str(path), "budgets")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "probe.slow" in proc.stderr
