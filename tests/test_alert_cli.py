"""`llmpulse alerts` as a real subprocess on a tmp database: listing, actions, one-line errors that change
nothing, and two processes acking the same alert at once."""

from __future__ import annotations

import asyncio
import getpass
import json
import re
import sqlite3
import subprocess
import sys

from llmpulse.core.alerts.engine import AlertEngine
from llmpulse.core.alerts.rules import Condition
from llmpulse.core.clock import ManualClock
from llmpulse.core.store import Store
from tests.cli_helpers import run_cli

T0 = 1_795_000_000.0
DOWN = Condition("provider_down", "groq", "critical", "Groq down: 3 failed probes in a row (timeout)")
SLOW = Condition("latency_p95", "anthropic", "warning", "Anthropic p95 latency 6.20s")


def seed(tmp_path, conditions=(DOWN, SLOW)) -> list[str]:
    async def go():
        store = await Store.open(tmp_path / "a.db")
        await AlertEngine(store, None, ManualClock(T0)).process(list(conditions))
        await store.execute(
            "INSERT INTO alert_deliveries (alert_id, channel, event, status, attempts, created_at, "
            "updated_at, error) VALUES (1, 'slack', 'firing', 'failed', 4, ?, ?, 'HTTP 500: oops')",
            (T0, T0),
        )
        await store.close()

    asyncio.run(go())
    return ["--db", str(tmp_path / "a.db")]


def dump(tmp_path) -> list:
    with sqlite3.connect(tmp_path / "a.db") as db:
        return [
            db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
            for t in ("alerts", "alert_transitions", "alert_outbox")
        ]


def test_list_show_and_act(tmp_path):
    db = seed(tmp_path)
    listed = json.loads(run_cli(tmp_path, *db, "alerts", "--json").stdout)["alerts"]
    assert [(a["id"], a["rule"], a["state"]) for a in listed] == [
        (1, "provider_down", "firing"),
        (2, "latency_p95", "firing"),
    ]
    ack = run_cli(tmp_path, *db, "alerts", "ack", "1", "--note", "upstream incident")
    assert ack.returncode == 0 and f"alert #1 acknowledged by {getpass.getuser()}" in ack.stdout  # login user
    sil = run_cli(tmp_path, *db, "alerts", "silence", "2", "--for", "1h", "--by", "kim")
    assert sil.returncode == 0 and "alert #2 silenced by kim until" in sil.stdout
    table = run_cli(tmp_path, *db, "alerts").stdout
    assert "ID" in table and "SEVERITY" in table
    assert f"acked by {getpass.getuser()}" in table and re.search(r"silenced (1h|59m)", table) and "Groq down" in table
    assert run_cli(tmp_path, *db, "alerts", "unsilence", "2", "--by", "kim").returncode == 0
    res = run_cli(tmp_path, *db, "alerts", "resolve", "2", "--by", "kim")
    assert res.returncode == 0 and "alert #2 resolved by kim" in res.stdout
    assert [a["id"] for a in json.loads(run_cli(tmp_path, *db, "alerts", "--json").stdout)["alerts"]] == [1]
    assert "Anthropic p95" in run_cli(tmp_path, *db, "alerts", "--all").stdout  # history too

    show = run_cli(tmp_path, *db, "alerts", "show", "1")
    assert show.returncode == 0 and "note: upstream incident" in show.stdout
    assert "acknowledged" in show.stdout and "HTTP 500: oops" in show.stdout  # a failed delivery, with why
    shown = json.loads(run_cli(tmp_path, *db, "alerts", "show", "2", "--json").stdout)
    assert [(t["event"], t["actor"]) for t in shown["transitions"]] == [
        ("opened", "auto"),
        ("silenced", "kim"),
        ("unsilenced", "kim"),
        ("resolved", "kim"),
    ]
    with sqlite3.connect(tmp_path / "a.db") as conn:
        assert conn.execute("SELECT event, actor FROM alert_outbox WHERE alert_id = 2 ORDER BY id").fetchall() == [
            ("firing", "auto"),
            ("silenced", "kim"),
            ("unsilenced", "kim"),
            ("resolved", "kim"),
        ]  # the collector will announce the hand resolve (and mirror the silence to Alertmanager, if any)


def test_errors_are_one_line_exit_1_and_change_nothing(tmp_path):
    db = seed(tmp_path)
    assert run_cli(tmp_path, *db, "alerts", "resolve", "1").returncode == 0
    before = dump(tmp_path)
    for args, says, code in [
        (("ack", "1"), "alert #1 cannot be acknowledged: it is already resolved by", 1),
        (("silence", "1", "--for", "1h"), "cannot be silenced: it is already resolved", 1),
        (("resolve", "42"), "no alert #42; `llmpulse alerts --all` lists them", 1),
        (("show", "42"), "no alert #42", 1),
        (("unsilence", "2"), "alert #2 is not silenced", 1),
        (("silence", "2", "--for", "soon"), "--for: found 'soon'; expected a duration like 30m, 2h or 1d", 2),
        (("ack", "x"), "invalid int value", 2),
    ]:
        out = run_cli(tmp_path, *db, "alerts", *args)
        assert out.returncode == code and says in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) <= 2 and "Traceback" not in out.stderr  # argparse: usage + error
        assert out.stdout == ""
    assert dump(tmp_path) == before


def test_two_processes_ack_the_same_alert(tmp_path):
    db = seed(tmp_path, [DOWN])
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "llmpulse.core.cli", *db, "alerts", "ack", "1", "--by", who],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("alice", "bob")
    ]
    results = {who: (p.wait(timeout=30), p.stdout.read(), p.stderr.read()) for who, p in zip(("alice", "bob"), procs)}
    assert sorted(r[0] for r in results.values()) == [0, 1], results
    winner = next(who for who, r in results.items() if r[0] == 0)
    loser = next(r for r in results.values() if r[0] == 1)
    assert loser[2].strip() == (
        f"llmpulse: error: alert #1 cannot be acknowledged: it is already acknowledged by "
        f"{winner}; only a firing alert can be acknowledged"
    )
    with sqlite3.connect(tmp_path / "a.db") as conn:
        assert conn.execute("SELECT actor FROM alert_transitions WHERE event = 'acknowledged'").fetchall() == [
            (winner,)
        ]
        assert conn.execute("SELECT acked_by FROM alerts WHERE id = 1").fetchone() == (winner,)
