"""`llmpulse alerts stats`: a lifecycle played through the real engine on a real file, then the real command
in a subprocess; every figure is checked against what the test itself knows it played."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

from llmpulse.core.alerts.engine import AlertEngine
from llmpulse.core.alerts.rules import Condition
from llmpulse.core.clock import ManualClock
from llmpulse.core.store import Store
from tests.cli_helpers import run_cli

DAY = 86400.0
GROQ_DOWN = Condition("provider_down", "groq", "critical", "Groq down")
OPENAI_DOWN = Condition("provider_down", "openai", "critical", "OpenAI down")
SLOW = Condition("latency_p95", "anthropic", "warning", "Anthropic p95 latency 6.20s")
BUDGET = Condition("budget_warning", "team", "warning", "team at 85% of $500")
OLD = Condition("error_rate", "groq", "critical", "Groq 40% errors")

# (condition, opened at +s, re-fires, ack after s or None, resolve after s or None)
PLAYED = [
    (GROQ_DOWN, 0, 0, 60, 600),
    (SLOW, 100, 0, 300, None),
    (OPENAI_DOWN, 200, 0, None, 1200),
    (BUDGET, 300, 3, 30, None),
]


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


def play(db: Path, start: float) -> None:
    async def go() -> None:
        store = await Store.open(db)
        clock = ManualClock(start - 40 * DAY)
        engine = AlertEngine(store, None, clock)
        [old] = await engine.process([OLD])  # opened 40 days ago: outside a 30-day period
        await engine.resolve(old.alert_id, "me")
        events: list[tuple[float, str, Condition, float | None]] = []
        for cond, opened, refires, ack, resolve in PLAYED:
            events.append((start + opened, "open", cond, None))
            for i in range(refires):
                events.append((start + opened + 5 * (i + 1), "fire", cond, None))
            if ack is not None:
                events.append((start + opened + ack, "ack", cond, None))
            if resolve is not None:
                events.append((start + opened + resolve, "resolve", cond, None))
        ids: dict[str, int] = {}
        for at, what, cond, _ in sorted(events, key=lambda e: e[0]):
            clock.set(at)
            if what in ("open", "fire"):
                for change in await engine.process([cond], covered=[]):
                    ids[cond.subject] = change.alert_id
            elif what == "ack":
                await engine.ack(ids[cond.subject], "oncall")
            else:
                await engine.resolve(ids[cond.subject], "oncall")
        deliveries = [("slack", "sent", start), ("slack", "sent", start + 1), ("slack", "failed", start + 2)]
        deliveries += [("pagerduty", "held", start + 3), ("slack", "failed", start - 40 * DAY)]
        for channel, status, at in deliveries:
            await store.execute(
                "INSERT INTO alert_deliveries (alert_id, channel, event, status, attempts, created_at, updated_at) "
                "VALUES (1, ?, 'firing', ?, 1, ?, ?)",
                (channel, status, at, at),
            )
        await store.close()

    asyncio.run(go())


def test_alert_stats_counts_quantiles_noise_and_deliveries(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    play(db, time.time() - 3 * DAY)
    proc = run_cli(tmp_path, "--db", str(db), "alerts", "stats", "--since", "30d", "--json")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)

    assert stats["alerts"] == len(PLAYED)
    by_rule = {g["key"]: (g["alerts"], g["fired"]) for g in stats["by_rule"]}
    expected_rules: dict[str, tuple[int, int]] = {}
    for cond, _, refires, _, _ in PLAYED:
        alerts, fired = expected_rules.get(cond.rule, (0, 0))
        expected_rules[cond.rule] = (alerts + 1, fired + 1 + refires)
    assert by_rule == expected_rules
    severities = {g["key"]: g["alerts"] for g in stats["by_severity"]}
    assert severities == {s: sum(1 for c, *_ in PLAYED if c.severity == s) for s in {c.severity for c, *_ in PLAYED}}

    acks = [float(ack) for _, _, _, ack, _ in PLAYED if ack is not None]
    resolves = [float(res) for _, _, _, _, res in PLAYED if res is not None]
    assert stats["time_to_ack"] == {
        "count": len(acks),
        "median_s": nearest_rank(acks, 0.5),
        "p90_s": nearest_rank(acks, 0.9),
    }
    assert stats["time_to_resolve"]["median_s"] == nearest_rank(resolves, 0.5)
    assert stats["time_to_resolve"]["p90_s"] == nearest_rank(resolves, 0.9)
    by_fires = sorted(expected_rules, key=lambda rule: (-expected_rules[rule][1], -expected_rules[rule][0], rule))
    assert [g["key"] for g in stats["noisiest_rules"]] == by_fires

    channels = {d["channel"]: (d["sent"], d["failed"], d["held"]) for d in stats["deliveries"]}
    assert channels == {"slack": (2, 1, 0), "pagerduty": (0, 0, 1)}


def test_alert_stats_table_and_bad_period(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    play(db, time.time() - 3 * DAY)
    proc = run_cli(tmp_path, "--db", str(db), "alerts", "stats", "--since", "7d")
    assert proc.returncode == 0, proc.stderr
    assert "4 alerts opened in the last 7d" in proc.stdout
    assert "noisiest rules: budget_warning (4 fires), provider_down (2 fires)" in proc.stdout
    assert "time to acknowledge: median 1m" in proc.stdout

    bad = run_cli(tmp_path, "--db", str(db), "alerts", "stats", "--since", "forever")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--since" in bad.stderr and "Traceback" not in bad.stderr
