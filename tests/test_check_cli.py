"""`llmpulse check` as cron runs it: a real process, real fake providers, real exit codes."""

from __future__ import annotations

import json
import sqlite3

from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from tests.cli_helpers import run_cli

KEY = "sk-proj-CheckCliSecret0123456789abcdef"


def write_config(tmp_path, fleet: Fleet, ids):
    lines = ["[probe]", 'timeout = "1s"', 'slow = "2s"']
    for pid in ids:
        lines += [f"[providers.{pid}]", f'base_url = "{fleet.base_url(pid)}"']
    (tmp_path / "llmpulse.toml").write_text("\n".join(lines) + "\n")


def test_exit_codes_json_and_stored_results(tmp_path):
    with Fleet(
        [
            FakeProvider("openai", key=KEY),
            FakeProvider("groq", kind="groq", key=KEY),
            FakeProvider("mistral", kind="mistral", key=KEY),
        ]
    ) as fleet:
        write_config(tmp_path, fleet, ["openai", "groq", "mistral"])
        env = {
            "OPENAI_API_KEY": KEY,
            "GROQ_API_KEY": KEY,
            "MISTRAL_API_KEY": KEY,
            "LLMPULSE_DB": str(tmp_path / "x.db"),
        }
        ok = run_cli(tmp_path, "check", env=env)
        assert ok.returncode == 0, ok.stderr
        assert "3 healthy, 0 degraded, 0 failed" in ok.stdout

        fleet.set_behaviour("groq", "rate_limited")
        degraded = run_cli(tmp_path, "check", "--json", env=env)
        assert degraded.returncode == 1, degraded.stderr
        data = json.loads(degraded.stdout)
        assert data["summary"] == {"healthy": 2, "degraded": 1, "failed": 0, "unknown": 10}
        groq = next(p for p in data["providers"] if p["id"] == "groq")
        assert set(groq) >= {
            "id",
            "name",
            "status",
            "error_kind",
            "error",
            "latency_ms",
            "http_status",
            "rate_limit",
            "balance",
        }
        assert (groq["status"], groq["error_kind"], groq["http_status"]) == ("degraded", "rate_limited", 429)
        assert groq["rate_limit"]["retry_after_s"] == 12  # Groq's TPM answer: retry-after 12

        fleet.set_behaviour("mistral", "server_error")
        failed = run_cli(tmp_path, "--db", str(tmp_path / "x.db"), "check", "--provider", "mistral", env=env)
        assert failed.returncode == 2 and "server_error" in failed.stdout

        bad = run_cli(tmp_path, "check", "--provider", "nope", env=env)
        # could not check what was asked: UNKNOWN (3), not CRITICAL
        assert bad.returncode == 3 and "unknown provider 'nope'" in bad.stderr and "Traceback" not in bad.stderr

    with sqlite3.connect(tmp_path / "x.db") as db:
        rows = db.execute("SELECT provider_id, status FROM probe_results WHERE status != 'unknown'").fetchall()
    assert ("mistral", "failed") in rows and ("groq", "degraded") in rows and len(rows) == 7
    for out in (ok.stdout, degraded.stdout, failed.stdout):
        assert KEY not in out
    assert KEY.encode() not in (tmp_path / "x.db").read_bytes()


def test_nothing_configured_exits_3(tmp_path):
    r = run_cli(tmp_path, "--db", str(tmp_path / "n.db"), "check")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "0 healthy, 0 degraded, 0 failed, 13 unknown" in r.stdout
