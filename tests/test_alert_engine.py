"""The alert lifecycle on a real SQLite file with a ManualClock: dedupe, every transition with its actor,
auto-resolve, silence, escalation and repeat timing, the outbox, and two writers acking at once."""

from __future__ import annotations

import asyncio
import tomllib

import pytest

from llmpulse.core.alerts.config import parse as parse_alerts
from llmpulse.core.alerts.engine import AlertEngine, AlertError, AlertNotFound, AlertStateError
from llmpulse.core.alerts.rules import Condition
from llmpulse.core.clock import ManualClock
from llmpulse.core.store import Store
from llmpulse.core.validate import Section

T0 = 1_795_000_000.0
DOWN = Condition("provider_down", "groq", "critical", "Groq down: 3 failed probes in a row (timeout)")
SLOW = Condition("latency_p95", "anthropic", "warning", "Anthropic p95 latency 6.20s")


def alerts_cfg(text: str = ""):
    return parse_alerts(Section(tomllib.loads(text), "t.toml"))


@pytest.fixture
async def env(tmp_path):
    store = await Store.open(tmp_path / "a.db")
    clock = ManualClock(T0)
    engine = AlertEngine(store, alerts_cfg('[alerts]\nescalate_after = "15m"\nrepeat_interval = "4h"\n'), clock)
    yield store, engine, clock
    await store.close()


async def outbox(store):
    return [
        (r["alert_id"], r["event"], r["actor"])
        for r in await store.fetchall("SELECT alert_id, event, actor FROM alert_outbox ORDER BY id")
    ]


async def test_dedupe_update_and_auto_resolve(env):
    store, engine, clock = env
    [opened] = await engine.process([DOWN])
    assert opened.event == "opened"
    clock.advance(30)
    assert await engine.process([DOWN]) == []  # same fingerprint: updated, not reopened
    [alert] = await engine.open_alerts()
    assert (alert.count, alert.last_seen, alert.first_seen, alert.state) == (2, T0 + 30, T0, "firing")
    # a rule not judged this round (its data is missing) leaves its alert alone
    assert await engine.process([], covered={"budget_warning"}) == []
    clock.advance(30)
    [resolved] = await engine.process([], covered={"provider_down"})
    assert resolved.event == "resolved"
    gone = await engine.get(alert.id)
    assert (gone.state, gone.resolved_by, gone.resolved_at) == ("resolved", "auto", T0 + 60)
    clock.advance(30)
    [again] = await engine.process([DOWN])
    assert again.event == "opened" and again.alert_id != alert.id  # a trigger after resolve: a new alert
    assert [t.event for t in await engine.transitions(alert.id)] == ["opened", "resolved"]
    assert await outbox(store) == [(1, "firing", "auto"), (1, "resolved", "auto"), (2, "firing", "auto")]
    assert [a.id for a in await engine.history()] == [2, 1]


async def test_every_transition_with_its_actor_and_wrong_states(env):
    store, engine, clock = env
    await engine.process([DOWN, SLOW])
    down, slow = await engine.open_alerts()
    clock.advance(10)
    acked = await engine.ack(down.id, "ops", "looking")
    assert (acked.state, acked.acked_by, acked.acked_at, acked.note) == ("acknowledged", "ops", T0 + 10, "looking")
    with pytest.raises(AlertStateError, match=r"alert #1 cannot be acknowledged: it is already acknowledged by ops"):
        await engine.ack(down.id, "bob")
    silenced = await engine.silence(slow.id, 3600, "ops")
    assert silenced.silenced(clock.now()) and silenced.state == "firing" and silenced.silenced_by == "ops"
    assert (await engine.unsilence(slow.id, "kim")).silenced_until is None
    with pytest.raises(AlertStateError, match="not silenced"):
        await engine.unsilence(slow.id, "ops")
    with pytest.raises(AlertError, match="positive duration"):
        await engine.silence(slow.id, 0, "ops")
    resolved = await engine.resolve(down.id, "ops")
    assert (resolved.state, resolved.resolved_by) == ("resolved", "ops")
    before = await store.fetchall("SELECT * FROM alerts ORDER BY id")
    for action in (engine.ack(down.id, "ops"), engine.resolve(down.id, "ops"), engine.silence(down.id, 60, "ops")):
        with pytest.raises(AlertStateError, match="already resolved by ops"):
            await action
    with pytest.raises(AlertNotFound, match="no alert #999"):
        await engine.resolve(999, "ops")
    assert [tuple(r) for r in await store.fetchall("SELECT * FROM alerts ORDER BY id")] == [tuple(r) for r in before]
    assert [(t.event, t.from_state, t.to_state, t.actor, t.detail) for t in await engine.transitions(down.id)] == [
        ("opened", None, "firing", "auto", DOWN.message),
        ("acknowledged", "firing", "acknowledged", "ops", "looking"),
        ("resolved", "acknowledged", "resolved", "ops", None),
    ]
    assert [(t.event, t.actor) for t in await engine.transitions(slow.id)] == [
        ("opened", "auto"),
        ("silenced", "ops"),
        ("unsilenced", "kim"),
    ]
    assert (1, "resolved", "ops") in await outbox(store)  # a hand resolve is announced too


async def test_worse_than_acknowledged_fires_again(env):
    store, engine, clock = env
    await engine.process([SLOW])
    await engine.ack(1, "ops")
    assert await engine.process([SLOW]) == [] and (await engine.get(1)).state == "acknowledged"
    clock.advance(60)
    worse = Condition("latency_p95", "anthropic", "critical", "Anthropic p95 latency 12s")
    [change] = await engine.process([worse])
    alert = await engine.get(1)
    assert change.event == "worse" and (alert.state, alert.severity, alert.acked_by) == ("firing", "critical", None)
    assert alert.message == "Anthropic p95 latency 12s" and alert.firing_since == T0 + 60
    # milder again: the alert follows without a notice
    assert await engine.process([SLOW]) == [] and (await engine.get(1)).severity == "warning"
    # the ack is queued too: only channels that mirror the lifecycle (PagerDuty, Alertmanager) act on it
    assert [e for _, e, _ in await outbox(store)] == ["firing", "acknowledged", "severity"]


async def test_escalation_and_repeat_timing(env):
    store, engine, clock = env
    await engine.process([DOWN, SLOW])
    clock.advance(15 * 60 - 1)
    assert await engine.process([DOWN, SLOW]) == []
    clock.advance(1)
    changes = await engine.process([DOWN, SLOW])
    assert [(c.event, c.fingerprint) for c in changes] == [("escalated", "provider_down:groq")]  # critical only
    assert (await engine.get(1)).escalated and (await engine.get(1)).escalated_at == T0 + 900
    clock.advance(4 * 3600 - 900)
    assert sorted(c.event for c in await engine.process([DOWN, SLOW])) == ["repeated", "repeated"]
    await engine.ack(1, "ops")
    clock.advance(4 * 3600)
    assert [c.fingerprint for c in await engine.process([DOWN, SLOW])] == ["latency_p95:anthropic"]  # acked: quiet
    assert [(a, e) for a, e, _ in await outbox(store)] == [
        (1, "firing"),
        (2, "firing"),
        (1, "escalated"),
        (1, "repeat"),
        (2, "repeat"),
        (1, "acknowledged"),
        (2, "repeat"),
    ]


async def test_escalation_clock_starts_when_it_turns_critical_and_waits_for_a_silence(env):
    _store, engine, clock = env
    warning = Condition("error_rate", "openai", "warning", "OpenAI error rate 6%")
    critical = Condition("error_rate", "openai", "critical", "OpenAI error rate 14%", stage=1)
    await engine.process([warning])
    clock.advance(3600)  # a warning for an hour, then critical:
    await engine.process([critical])
    clock.advance(14 * 60)
    assert await engine.process([critical]) == []  # ...gets the full 15 minutes, not zero
    await engine.silence(1, 3600, "ops")
    clock.advance(30 * 60)
    assert await engine.process([critical]) == []  # silenced: someone knows, no escalation
    clock.advance(31 * 60)  # the silence ran out
    events = [c.event for c in await engine.process([critical])]
    assert events == ["escalated"]
    assert [(t.event, t.actor) for t in await engine.transitions(1)][-2:] == [
        ("unsilenced", "auto"),
        ("escalated", "auto"),
    ]


async def test_redacted_messages_and_the_notifier_is_handed_the_outbox(env):
    store, engine, _clock = env

    class Recorder:  # a stand-in notifier that only records being called
        calls = 0

        async def dispatch(self):
            Recorder.calls += 1

    engine.notifier = Recorder()
    leak = Condition("provider_auth", "openai", "critical", "OpenAI rejects key sk-proj-abcdefghijklmnopqrstu")
    await engine.process([leak])
    await engine.resolve(1, "ops")
    assert Recorder.calls == 2
    rows = await store.fetchall("SELECT message FROM alerts UNION ALL SELECT detail FROM alert_transitions")
    assert all("abcdefghijklmnop" not in (r[0] or "") for r in rows) and "***" in rows[0][0]


async def test_two_writers_ack_the_same_alert_at_once(tmp_path):
    path = tmp_path / "race.db"
    stores = [await Store.open(path) for _ in range(4)]
    try:
        clock = ManualClock(T0)
        engines = [AlertEngine(s, alerts_cfg(), clock) for s in stores]
        await engines[0].process([DOWN])
        results = await asyncio.gather(*(e.ack(1, f"user{i}") for i, e in enumerate(engines)), return_exceptions=True)
        winners = [r for r in results if not isinstance(r, Exception)]
        losers = [r for r in results if isinstance(r, Exception)]
        assert len(winners) == 1 and len(losers) == 3
        assert all(
            isinstance(e, AlertStateError) and f"already acknowledged by {winners[0].acked_by}" in str(e)
            for e in losers
        )
        acks = [t for t in await engines[0].transitions(1) if t.event == "acknowledged"]
        assert [t.actor for t in acks] == [winners[0].acked_by]
    finally:
        for s in stores:
            await s.close()


async def test_prune_keeps_history_and_anything_still_due(env):
    store, engine, _clock = env
    from llmpulse.core.alerts.engine import prune_alert_notices

    await engine.process([DOWN])  # outbox #1, not dispatched yet
    await store.execute(
        "INSERT INTO alert_outbox (alert_id, event, at, actor, dispatched_at) VALUES (1, 'repeat', ?, 'auto', ?)",
        (T0, T0),
    )  # old, sent: goes
    for status, held_reported in (("sent", 0), ("failed", 0), ("held", 0), ("held", 7), ("sending", 0)):
        await store.execute(
            "INSERT INTO alert_deliveries (alert_id, channel, event, status, created_at, updated_at, "
            "held_reported) VALUES (1, 'c', 'firing', ?, ?, ?, ?)",
            (status, T0, T0, held_reported),
        )
    assert await prune_alert_notices(store, T0 + 10, keep_s=30 * 86400) == 0
    assert await prune_alert_notices(store, T0 + 31 * 86400, keep_s=30 * 86400) == 4
    left = [(r["status"], r["held_reported"]) for r in await store.fetchall("SELECT * FROM alert_deliveries")]
    assert left == [("held", 0), ("sending", 0)]  # still to be counted / still in flight
    assert [r["event"] for r in await store.fetchall("SELECT event FROM alert_outbox")] == ["firing"]
    assert len(await engine.transitions(1)) == 1 and await engine.get(1) is not None


async def test_a_failing_notifier_does_not_undo_or_hide_the_change(env):
    store, engine, _clock = env

    class Broken:
        async def dispatch(self):
            raise OSError("disk full")

    engine.notifier = Broken()
    [change] = await engine.process([DOWN])
    assert change.event == "opened" and (await engine.get(1)).state == "firing"
    assert [r["dispatched_at"] for r in await store.fetchall("SELECT dispatched_at FROM alert_outbox")] == [None]
