"""The alert lifecycle and notifications: a ManualClock for time, a real SQLite file, and real
receivers on 127.0.0.1 (core.fleet routes) for webhooks, Slack and Discord, plus a tiny SMTP server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tomllib

import pytest

from core.alerts.config import parse as parse_alerts
from core.alerts.engine import AlertEngine, AlertNotFound, AlertStateError
from core.alerts.notify import Notifier
from core.alerts.rules import Condition, RuleInputs, covered_rules, evaluate_rules
from core.clock import ManualClock
from core.fleet import FakeProvider, Fleet, Response
from core.store import Store
from core.validate import ConfigError, Section
from tests.cli_helpers import run_cli

T0 = 1_795_000_000.0
DOWN = Condition("provider_down", "groq", "critical", "Groq down: 3 failed probes in a row (timeout)")
SLOW = Condition("latency_p95", "anthropic", "warning", "Anthropic p95 latency 6.20s")


def alerts_cfg(text: str = ""):
    return parse_alerts(Section(tomllib.loads(text), "t.toml"))


async def open_engine(tmp_path, cfg=None, clock=None):
    store = await Store.open(tmp_path / "a.db")
    clock = clock or ManualClock(T0)
    return store, AlertEngine(store, cfg or alerts_cfg(), clock), clock


async def test_dedupe_update_and_auto_resolve(tmp_path):
    store, engine, clock = await open_engine(tmp_path)
    try:
        [opened] = await engine.process([DOWN])
        assert opened.event == "opened"
        clock.advance(30)
        assert await engine.process([DOWN]) == []                 # same fingerprint: updated, not reopened
        [alert] = await engine.open_alerts()
        assert (alert.count, alert.last_seen, alert.first_seen) == (2, T0 + 30, T0)
        clock.advance(30)
        [resolved] = await engine.process([], covered={"provider_down"})
        assert resolved.event == "resolved" and (await engine.get(alert.id)).resolved_by == "auto"
        clock.advance(30)
        [again] = await engine.process([DOWN])
        assert again.event == "opened" and again.alert_id != alert.id   # a trigger after resolve: new alert
        # a rule not judged this round (no data) leaves its alert alone
        assert await engine.process([], covered={"budget_warning"}) == []
        events = [t.event for t in await engine.transitions(alert.id)]
        assert events == ["opened", "resolved"]
    finally:
        await store.close()


async def test_every_transition_and_wrong_state_errors(tmp_path):
    store, engine, clock = await open_engine(tmp_path)
    try:
        await engine.process([DOWN, SLOW])
        down, slow = await engine.open_alerts()
        acked = await engine.ack(down.id, "ops", "looking")
        assert (acked.state, acked.acked_by, acked.note) == ("acknowledged", "ops", "looking")
        with pytest.raises(AlertStateError, match="already acknowledged by ops"):
            await engine.ack(down.id, "bob")
        silenced = await engine.silence(slow.id, 3600, "ops")
        assert silenced.silenced(clock.now()) and silenced.state == "firing"
        assert (await engine.unsilence(slow.id, "ops")).silenced_until is None
        with pytest.raises(AlertStateError, match="not silenced"):
            await engine.unsilence(slow.id, "ops")
        resolved = await engine.resolve(down.id, "ops")
        assert resolved.state == "resolved" and resolved.resolved_by == "ops"
        with pytest.raises(AlertStateError, match="cannot be acknowledged: it is already resolved"):
            await engine.ack(down.id, "ops")
        with pytest.raises(AlertNotFound, match="no alert #999"):
            await engine.resolve(999, "ops")
        assert [(t.event, t.actor) for t in await engine.transitions(down.id)] == \
            [("opened", "auto"), ("acknowledged", "ops"), ("resolved", "ops")]
        # worse than what was acknowledged: firing again
        await engine.process([SLOW])
        await engine.ack(slow.id, "ops")
        worse = Condition("latency_p95", "anthropic", "critical", "Anthropic p95 latency 12s")
        [change] = await engine.process([worse])
        assert change.event == "worse" and (await engine.get(slow.id)).state == "firing"
    finally:
        await store.close()


async def test_escalation_and_repeat_timing(tmp_path):
    store, engine, clock = await open_engine(tmp_path, alerts_cfg('[alerts]\nescalate_after = "15m"\n'
                                                                  'repeat_interval = "4h"\n'))
    try:
        await engine.process([DOWN, SLOW])
        clock.advance(14 * 60)
        assert await engine.process([DOWN, SLOW]) == []
        clock.advance(61)
        changes = await engine.process([DOWN, SLOW])
        assert [(c.event, c.fingerprint) for c in changes] == [("escalated", "provider_down:groq")]
        clock.advance(4 * 3600)
        events = sorted(c.event for c in await engine.process([DOWN, SLOW]))
        assert events == ["repeated", "repeated"]
        down = next(a for a in await engine.open_alerts() if a.rule == "provider_down")
        await engine.ack(down.id, "ops")
        clock.advance(4 * 3600 + 1)
        assert [c.fingerprint for c in await engine.process([DOWN, SLOW])] == ["latency_p95:anthropic"]  # acked: no repeat
        outbox = [r["event"] for r in await store.fetchall("SELECT event FROM alert_outbox ORDER BY id")]
        assert outbox == ["firing", "firing", "escalated", "repeat", "repeat", "repeat"]
    finally:
        await store.close()


def test_two_processes_ack_the_same_alert(tmp_path):
    async def seed():
        store, engine, _ = await open_engine(tmp_path)
        await engine.process([DOWN])
        await store.close()
    asyncio.run(seed())
    db = ["--db", str(tmp_path / "a.db")]
    procs = [subprocess.Popen([sys.executable, "-m", "core.cli", *db, "alerts", "ack", "1", "--by", who],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("alice", "bob")]
    results = [(p.wait(timeout=30), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    assert "already acknowledged by" in loser[2] and "Traceback" not in loser[2]


def test_alerts_cli_list_and_errors(tmp_path):
    async def seed():
        store, engine, _ = await open_engine(tmp_path)
        await engine.process([DOWN, SLOW])
        await store.close()
    asyncio.run(seed())
    db = ["--db", str(tmp_path / "a.db")]
    listed = run_cli(tmp_path, *db, "alerts", "--json")
    assert [a["rule"] for a in json.loads(listed.stdout)["alerts"]] == ["provider_down", "latency_p95"]
    sil = run_cli(tmp_path, *db, "alerts", "silence", "2", "--for", "1h", "--by", "ops")
    assert sil.returncode == 0 and "silenced by ops until" in sil.stdout
    bad_for = run_cli(tmp_path, *db, "alerts", "silence", "2", "--for", "soon")
    assert bad_for.returncode == 2 and "expected a duration" in bad_for.stderr
    missing = run_cli(tmp_path, *db, "alerts", "resolve", "42")
    assert missing.returncode == 1 and "no alert #42" in missing.stderr
    table = run_cli(tmp_path, *db, "alerts")
    assert "silenced" in table.stdout and "Groq down" in table.stdout
    assert run_cli(tmp_path, *db, "alerts", "resolve", "1").returncode == 0
    again = run_cli(tmp_path, *db, "alerts", "ack", "1")
    assert again.returncode == 1 and "already resolved" in again.stderr
    assert "Groq down" in run_cli(tmp_path, *db, "alerts", "--all").stdout


def test_rules_from_health_budgets_and_migrations():
    from types import SimpleNamespace as NS
    health = [NS(provider_id="groq", name="Groq", status="failed", error_kind="timeout", error="no answer",
                 consecutive_failures=3, enabled=True, configured=True, samples=10, error_rate=0.3, p95_ms=None,
                 p50_ms=None, latency_series=[], rate_limit=NS(headroom=0.05, requests_remaining=5,
                                                               requests_limit=100, tokens_remaining=None,
                                                               tokens_limit=None, reset_s=20)),
              NS(provider_id="deepseek", name="DeepSeek", status="failed", error_kind="auth", error="HTTP 401",
                 consecutive_failures=1, enabled=True, configured=True, samples=1, error_rate=1.0, p95_ms=None,
                 p50_ms=None, latency_series=[], rate_limit=None)]
    budgets = [NS(name="total/month", limit_usd=100.0, spent_usd=85.0, utilization=0.85, warn_at=[0.8, 1.0],
                  projected_usd=140.0, period_end=T0 + 86400 * 5, exhaust_at=T0 + 86400 * 2)]
    migrations = [NS(name="gpt-4.1", risk="at risk", share_requests=0.3, projected_share_at_deadline=0.7,
                     days_left=20.0, deadline="2026-12-20", phase="testing", to_model="gpt-4.1")]
    inputs = RuleInputs(now=T0, health=health, budgets=budgets, migrations=migrations, request_stats={},
                        unknown_prices=[("acme", "in-house", 12)])
    rules = {c.fingerprint: c for c in evaluate_rules(inputs, alerts_cfg())}
    assert rules["provider_down:groq"].severity == "critical"
    assert rules["provider_auth:deepseek"].severity == "critical"          # its own rule: a different person
    assert "error_rate:groq" in rules and "rate_limit_headroom:groq" in rules
    assert rules["budget_warning:total/month"].message.startswith("budget total/month passed 80%")
    assert "budget_projected:total/month" in rules and "migration_deadline:gpt-4.1" in rules
    assert rules["prices_unknown:prices"].severity == "info"
    assert "provider_down" in covered_rules(inputs, alerts_cfg())
    with pytest.raises(ConfigError, match="url_env"):
        alerts_cfg('[[alerts.channels]]\ntype = "slack"\nurl_env = "https://hooks.slack.com/x"\n')


# -- notifications ---------------------------------------------------------------------------------

CHANNELS = '''
[alerts]
escalate_after = "15m"
[[alerts.channels]]
name = "hook"
type = "webhook"
url_env = "HOOK_URL"
min_severity = "info"
rate_limit_per_hour = 3
retries = 0
[[alerts.channels]]
name = "slack"
type = "slack"
url_env = "SLACK_URL"
min_severity = "critical"
retries = 0
[[alerts.channels]]
name = "discord"
type = "discord"
url_env = "DISCORD_URL"
escalation = true
retries = 0
[[alerts.channels]]
name = "broken"
type = "webhook"
url_env = "BROKEN_URL"
retries = 2
backoff = "10ms"
timeout = "300ms"
[[alerts.channels]]
name = "hanging"
type = "webhook"
url_env = "HANG_URL"
retries = 0
timeout = "300ms"
'''


def receivers():
    fleet = Fleet([FakeProvider("hooks", key=None), FakeProvider("hang", key=None, behaviour="hang")])
    for path in ("/hook", "/slack", "/discord"):
        fleet.add_route("hooks", "POST", path, lambda f, req: Response(204 if req.path == "/discord" else 200, b"ok"))
    fleet.add_route("hooks", "POST", "/broken", lambda f, req: Response(500, b"upstream exploded"))
    return fleet


def bodies(fleet, path):
    return [json.loads(r.body) for r in fleet.requests("hooks") if r.path == path]


async def test_channels_payloads_failures_and_rate_limit(tmp_path):
    with receivers() as fleet:
        root = fleet.base_url("hooks")
        env = {"HOOK_URL": root + "/hook", "SLACK_URL": root + "/slack", "DISCORD_URL": root + "/discord",
               "BROKEN_URL": root + "/broken", "HANG_URL": fleet.base_url("hang") + "/x"}
        cfg = alerts_cfg(CHANNELS)
        store, engine, clock = await open_engine(tmp_path, cfg)
        notifier = Notifier(cfg, store, clock, env)
        try:
            await engine.process([DOWN, SLOW])
            started = asyncio.get_running_loop().time()
            await notifier.dispatch()
            assert asyncio.get_running_loop().time() - started < 0.2   # dispatch never waits on a channel
            await notifier.drain(5)
            [webhook1, webhook2] = bodies(fleet, "/hook")
            assert webhook1["event"] == "firing" and webhook1["alert"]["rule"] == "provider_down"
            assert set(webhook1["transition"]) == {"event", "at", "actor", "detail"}
            [slack] = bodies(fleet, "/slack")                          # critical only
            assert slack == {"text": slack["text"]} and "Groq down" in slack["text"]
            assert bodies(fleet, "/discord") == []                     # escalation channel: not yet
            rows = {(r["channel"], r["alert_id"]): r for r in await store.fetchall("SELECT * FROM alert_deliveries")}
            broken = rows[("broken", 1)]
            assert (broken["status"], broken["attempts"]) == ("failed", 3) and "HTTP 500" in broken["error"]
            hanging = rows[("hanging", 1)]
            assert hanging["status"] == "failed" and "no answer within 0.3s" in hanging["error"]
            assert "delivery_failed" in [t.event for t in await engine.transitions(1)]

            # escalation reaches the escalation channel with Discord's shape
            clock.advance(16 * 60)
            await engine.process([DOWN, SLOW])
            await notifier.dispatch()
            await notifier.drain(5)
            [discord] = bodies(fleet, "/discord")
            assert discord["content"].startswith("ESCALATED") and discord["embeds"][0]["color"] == 0xD0021B

            # rate limit 3/hour on "hook": the 4th and 5th notices are held, then reported in the next message
            await engine.resolve(2, "ops")
            a3 = Condition("budget_warning", "total/month", "warning", "budget total/month passed 80%")
            await engine.process([DOWN, a3])
            await notifier.dispatch()
            await notifier.drain(5)
            held = await store.fetchall("SELECT * FROM alert_deliveries WHERE channel = 'hook' AND status = 'held'")
            assert len(held) == 2 and len(bodies(fleet, "/hook")) == 3
            clock.advance(3601)
            await engine.process([], covered={"budget_warning", "provider_down", "latency_p95"})
            await notifier.dispatch()
            await notifier.drain(5)
            later = bodies(fleet, "/hook")[3]
            assert later["held_back"] == 2 and later["event"] == "resolved"
        finally:
            await notifier.drain(5)
            await store.close()
    for r in await_all_rows(tmp_path):
        assert "HOOK_URL" not in (r or "")


def await_all_rows(tmp_path):
    import sqlite3
    with sqlite3.connect(tmp_path / "a.db") as db:
        return [r[0] for r in db.execute("SELECT error FROM alert_deliveries")]


async def test_resolved_notice_is_sent_after_a_silence(tmp_path):
    with receivers() as fleet:
        env = {"HOOK_URL": fleet.base_url("hooks") + "/hook"}
        cfg = alerts_cfg('[[alerts.channels]]\nname = "hook"\ntype = "webhook"\nurl_env = "HOOK_URL"\n'
                         'min_severity = "info"\n')
        store, engine, clock = await open_engine(tmp_path, cfg)
        notifier = Notifier(cfg, store, clock, env)
        try:
            await engine.process([SLOW])
            await engine.silence(1, 3600, "ops")
            await notifier.dispatch()                    # the firing notice was queued before the silence...
            clock.advance(4 * 3600 + 10)
            await engine.process([SLOW])                 # ...silence expired: the repeat goes out
            await notifier.dispatch()
            await engine.silence(1, 8 * 3600, "ops")
            clock.advance(4 * 3600 + 10)
            await engine.process([SLOW])                 # silenced: the repeat is not even queued
            await engine.process([], covered={"latency_p95"})
            await notifier.dispatch()
            await notifier.drain(5)
            events = [b["event"] for b in bodies(fleet, "/hook")]
            assert events == ["repeat", "resolved"]
        finally:
            await store.close()


async def test_email_channel_over_smtp(tmp_path):
    received: list[bytes] = []

    async def smtp(reader, writer):
        writer.write(b"220 test ESMTP\r\n")
        data_mode = False
        buf = b""
        while True:
            line = await reader.readline()
            if not line:
                break
            if data_mode:
                if line == b".\r\n":
                    received.append(buf)
                    data_mode = False
                    writer.write(b"250 queued\r\n")
                else:
                    buf += line
                continue
            cmd = line.split(b" ")[0].strip().upper()
            if cmd in (b"EHLO", b"HELO"):
                writer.write(b"250 test\r\n")
            elif cmd == b"DATA":
                data_mode, buf = True, b""
                writer.write(b"354 go\r\n")
            elif cmd == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(smtp, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = alerts_cfg(f'[[alerts.channels]]\ntype = "email"\nhost = "127.0.0.1"\nport = {port}\nstarttls = false\n'
                     'from = "llmpulse@example.com"\nto = ["oncall@example.com"]\nmin_severity = "critical"\n')
    store, engine, clock = await open_engine(tmp_path, cfg)
    notifier = Notifier(cfg, store, clock, {})
    try:
        await engine.process([DOWN])
        await notifier.dispatch()
        await notifier.drain(10)
        [row] = await store.fetchall("SELECT status, error FROM alert_deliveries")
        assert row["status"] == "sent", row["error"]
        assert b"Subject: [FIRING] critical" in received[0] and b"Groq down" in received[0]
    finally:
        server.close()
        await store.close()


async def test_latency_anomaly_against_the_learned_baseline(tmp_path):
    from types import SimpleNamespace as NS
    from core.alerts.baseline import load_latency_baselines, record_latency_samples
    cfg = alerts_cfg('[alerts]\nlatency_sample_every = "60s"\nlatency_min_samples = 10\n')
    store = await Store.open(tmp_path / "b.db")
    try:
        def health(ms):
            return NS(provider_id="openai", name="OpenAI", status="healthy", error_kind=None, error=None,
                      consecutive_failures=0, enabled=True, configured=True, samples=30, error_rate=0.0,
                      p95_ms=ms, p50_ms=ms, latency_series=[ms] * 5, rate_limit=None)
        for i in range(30):                          # a day of ~400 ms
            await record_latency_samples(store, [health(400 + (i % 5) * 10)], cfg, T0 + i * 120)
        now = T0 + 30 * 120 + 1000
        baselines = await load_latency_baselines(store, cfg, now, exclude_recent=900)
        assert baselines["openai"].samples == 30 and 400 <= baselines["openai"].mean_ms <= 440
        quiet = evaluate_rules(RuleInputs(now=now, health=[health(430)], latency_baselines=baselines), cfg)
        assert not [c for c in quiet if c.rule == "latency_anomaly"]
        slow = evaluate_rules(RuleInputs(now=now, health=[health(1300)], latency_baselines=baselines), cfg)
        [anomaly] = [c for c in slow if c.rule == "latency_anomaly"]
        assert "its usual" in anomaly.message and anomaly.severity == "warning"
    finally:
        await store.close()
