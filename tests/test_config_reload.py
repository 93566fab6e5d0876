"""`kill -HUP` on a real daemon: a new budget applies from the next round while open alerts keep their
ids and history; a config with a mistake is refused in one line and the running config stays."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from tests.cli_helpers import run_cli, start_cli


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except sqlite3.OperationalError:  # the daemon is creating or writing the file
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def open_alerts(db: Path) -> dict[str, tuple[int, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT subject, id, rule FROM alerts WHERE state != 'resolved' AND rule = 'budget_exceeded'"
        )
        return {subject: (alert_id, rule) for subject, alert_id, rule in rows}


def rounds(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT rounds FROM collector_status").fetchone()
        return int(row[0]) if row else 0


def budget(scope: str, limit: float) -> str:
    return f'[[budgets]]\nscope = "{scope}"\nperiod = "month"\nlimit_usd = {limit}\n'


def test_sighup_reloads_budgets_keeps_open_alerts_and_refuses_a_broken_config(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    now = time.time()
    calls = [
        {
            "ts": now - 30 * i,
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 10_000,
            "output_tokens": 2_000,
            "request_id": f"r{i}",
        }
        for i in range(20)
    ]
    (tmp_path / "calls.jsonl").write_text("".join(json.dumps(c) + "\n" for c in calls))
    assert run_cli(tmp_path, "--db", str(db), "import", "calls.jsonl").returncode == 0
    with sqlite3.connect(db) as conn:
        spent = conn.execute("SELECT SUM(cost_usd) FROM usage_records").fetchone()[0]
    assert spent > 0
    cfg = tmp_path / "llmpulse.toml"
    base = '[probe]\ninterval = "1s"\n\n'
    cfg.write_text(base + budget("total", round(spent / 2, 6)))

    proc = start_cli(tmp_path, "--config", str(cfg), "--db", str(db), "daemon")
    try:
        wait_for("the total budget alert", lambda: "total/month" in open_alerts(db))
        first_id = open_alerts(db)["total/month"][0]

        cfg.write_text(base + budget("total", round(spent / 2, 6)) + budget("provider:openai", round(spent / 3, 6)))
        proc.send_signal(signal.SIGHUP)
        wait_for("the new budget's alert", lambda: "provider:openai/month" in open_alerts(db))
        assert open_alerts(db)["total/month"][0] == first_id  # the open alert stays, same id

        cfg.write_text('[probe]\ninterval = "fast"\n')
        before = rounds(db)
        proc.send_signal(signal.SIGHUP)
        wait_for("two more rounds after the refused reload", lambda: rounds(db) >= before + 2)
        assert set(open_alerts(db)) == {"total/month", "provider:openai/month"}  # config B still in force
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    refused = [line for line in err.splitlines() if "reload refused" in line]
    assert len(refused) == 1 and "interval" in refused[0], err
    assert "SIGHUP: config loaded" in err and "config reloaded" in err
    assert "Traceback" not in err
    with sqlite3.connect(db) as conn:
        opened = conn.execute(
            "SELECT COUNT(*) FROM alert_transitions WHERE alert_id = ? AND event = 'opened'", (first_id,)
        ).fetchone()[0]
    assert opened == 1
