"""A `.env` with lines that are not KEY=VALUE: llmpulse names the file and line in one line of its own,
never shows what the line holds (it may be a key pasted on its own), and keeps the good lines — except
`check` and `daemon`, which run unattended and stop (a skipped key would quietly drop a provider)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_helpers import run_cli

# Secrets in bad lines: none of these may reach stdout or stderr.
PASTED_KEY = "sk-proj-PASTEDALONE0123456789abcdef"
GARBAGE_SECRET = "sk-ant-INSIDEGARBAGE9876543210"
GOOD_OPENAI = "sk-GOODOPENAI000111222333444"
GOOD_GROQ = "gsk_GOODGROQ555666777888999"

# Line 1 good; 2 a sentence with a key in it; 3 a key pasted without a name; 4 a comment; 5 an unclosed
# quote; 6 good, after all of them ('export' is allowed, as in a shell).
ENV_TEXT = (
    f"OPENAI_API_KEY={GOOD_OPENAI}\n"
    f"the anthropic key is {GARBAGE_SECRET} ok\n"
    f"{PASTED_KEY}\n"
    "# a comment is fine\n"
    "'UNCLOSED=x\n"
    f"export GROQ_API_KEY={GOOD_GROQ}\n"
)
BAD_LINES = {2, 3, 5}


def _write_env(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text(ENV_TEXT)
    return path


def _no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (PASTED_KEY, GARBAGE_SECRET, GOOD_OPENAI, GOOD_GROQ, "PASTEDALONE", "INSIDEGARBAGE"):
            assert secret not in text, f"{secret!r} shown in {text!r}"


def test_a_viewing_command_names_each_bad_line_and_keeps_the_good_ones(tmp_path: Path) -> None:
    env_path = _write_env(tmp_path)
    r = run_cli(tmp_path, "--db", str(tmp_path / "db.sqlite"), "providers", "--json")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == len(BAD_LINES), r.stderr  # one line per bad line, nothing else (no dotenv warning)
    for line, number in zip(lines, sorted(BAD_LINES), strict=True):
        assert line.startswith(f"llmpulse: warning: {env_path} line {number}: "), line
        assert "KEY=VALUE" in line and "skipped" in line
    assert "python-dotenv" not in r.stderr
    _no_secret(r.stdout, r.stderr)
    configured = {p["id"] for p in json.loads(r.stdout)["providers"] if p["configured"]}
    # The key before the bad lines and the one after them are both read; the garbage is not a key.
    assert configured == {"openai", "groq"}


def test_check_stops_with_unknown_and_probes_nothing(tmp_path: Path) -> None:
    env_path = _write_env(tmp_path)
    db = tmp_path / "db.sqlite"
    r = run_cli(tmp_path, "--db", str(db), "check")
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)  # UNKNOWN: could not check, not CRITICAL
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"llmpulse: config error: {env_path}: line 2 (and 2 other lines): "), lines[0]
    assert "KEY=VALUE" in lines[0] and "Traceback" not in r.stderr
    _no_secret(r.stdout, r.stderr)
    assert r.stdout == "" and not db.exists()  # stopped before probing or storing anything


def test_daemon_refuses_to_start(tmp_path: Path) -> None:
    env_path = tmp_path / "secrets.env"
    env_path.write_text(f"OPENAI_API_KEY={GOOD_OPENAI}\n{PASTED_KEY}\n")
    r = run_cli(tmp_path, "--env-file", str(env_path), "--db", str(tmp_path / "db.sqlite"), "daemon", "--once")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.strip().splitlines() == [
        f"llmpulse: config error: {env_path}: line 2: found a line that is not KEY=VALUE (not shown: it may hold "
        "a secret); expected NAME=value lines, e.g. OPENAI_API_KEY=...; '#' starts a comment"
    ]
    _no_secret(r.stdout, r.stderr)


def test_a_clean_env_file_says_nothing(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f'# secrets\nOPENAI_API_KEY="{GOOD_OPENAI}"\n\nGROQ_API_KEY={GOOD_GROQ}\n')
    r = run_cli(tmp_path, "--db", str(tmp_path / "db.sqlite"), "providers", "--json")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    configured = {p["id"] for p in json.loads(r.stdout)["providers"] if p["configured"]}
    assert configured == {"openai", "groq"}


def test_an_env_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    env_path = tmp_path / "latin1.env"
    env_path.write_bytes(b"OPENAI_API_KEY=abc\nNOTE=caf\xe9\n")
    r = run_cli(tmp_path, "--env-file", str(env_path), "--db", str(tmp_path / "db.sqlite"), "providers")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        f"llmpulse: config error: {env_path}: line 2: found bytes that are not UTF-8; expected a UTF-8 text file"
    )
