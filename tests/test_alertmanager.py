"""The alertmanager channel against the real Alertmanager (Debian's prometheus-alertmanager on 127.0.0.1),
checked through Alertmanager's own API: GET /api/v2/alerts and /api/v2/silences.

Alertmanager judges endsAt against its own (real) clock, so the ManualClock starts two minutes in the
past: a re-send a minute later is still in the past, and a resolve's endsAt is already over for it."""

from __future__ import annotations

import datetime as dt
import time
import tomllib

import httpx
import pytest
from thirdparty import running_alertmanager

from llmpulse.core.alerts.config import parse as parse_alerts
from llmpulse.core.alerts.engine import AlertEngine
from llmpulse.core.alerts.notify import Notifier
from llmpulse.core.alerts.rules import Condition
from llmpulse.core.clock import ManualClock
from llmpulse.core.store import Store
from llmpulse.core.validate import ConfigError, Section

DOWN = Condition("provider_down", "groq", "critical", "Groq down: 3 failed probes in a row (timeout)")
SLOW = Condition("latency_p95", "anthropic", "warning", "Anthropic p95 latency 6.20s")
BUDGET = Condition("budget_warning", "team-a", "info", "budget team-a passed 50%: $50.00 of $100.00 (50%)")


@pytest.fixture(scope="module")
def am(tmp_path_factory):
    with running_alertmanager(tmp_path_factory.mktemp("am")) as url:
        yield url


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def am_alerts(url: str, **labels: str) -> list[dict]:
    """Alertmanager's current (not yet ended) alerts carrying these labels."""
    found = httpx.get(f"{url}/api/v2/alerts", timeout=5).json()
    return [a for a in found if all(a["labels"].get(k) == v for k, v in labels.items())]


def am_silences(url: str, comment_part: str, env: str) -> list[dict]:
    """Silences whose comment has `comment_part` and that match label env=`env` (one test's alerts)."""
    found = httpx.get(f"{url}/api/v2/silences", timeout=5).json()
    return [
        s
        for s in found
        if comment_part in s["comment"] and {(m["name"], m["value"]) for m in s["matchers"]} >= {("env", env)}
    ]


async def make(tmp_path, am_url: str, extra: str = ""):
    text = (
        f'[[alerts.channels]]\ntype = "alertmanager"\nurl = "{am_url}"\nmin_severity = "info"\n'
        f'retries = 0\nresend_interval = "1m"\n{extra}'
    )
    cfg = parse_alerts(Section(tomllib.loads(text), "t.toml"))
    store = await Store.open(tmp_path / "am.db")
    clock = ManualClock(time.time() - 120)
    notifier = Notifier(cfg, store, clock, {}, round_interval=30)
    return store, AlertEngine(store, cfg, clock, notifier), notifier, clock


async def test_alerts_are_pushed_resent_silenced_and_ended_in_the_real_alertmanager(tmp_path, am):
    store, engine, notifier, clock = await make(tmp_path, am, 'labels = { env = "test-1" }\n')
    try:
        t0 = clock.now()
        await engine.process([DOWN, SLOW, BUDGET])
        await notifier.drain(10)
        down = am_alerts(am, alertname="provider_down", env="test-1")
        assert [a["labels"] for a in down] == [
            {
                "alertname": "provider_down",
                "severity": "critical",
                "provider": "groq",
                "source": "llmpulse",
                "env": "test-1",
            }
        ]
        [down] = down
        assert DOWN.message in down["annotations"]["summary"] and down["status"]["state"] == "active"
        assert ts(down["startsAt"]) == pytest.approx(t0, abs=0.01)
        # valid for 4 re-sends of max(resend_interval, round interval) = 4 x 60 s
        assert ts(down["endsAt"]) == pytest.approx(t0 + 240, abs=0.01)
        [budget] = am_alerts(am, alertname="budget_warning", env="test-1")
        assert budget["labels"]["budget"] == "team-a" and budget["labels"]["severity"] == "info"
        deliveries = await store.fetchall("SELECT channel, event, status FROM alert_deliveries ORDER BY id")
        assert [tuple(r) for r in deliveries] == [("alertmanager-1", "firing", "sent")] * 3

        # Before resend_interval nothing is pushed again; after it, every open alert is, with a later endsAt.
        clock.advance(30)
        await notifier.dispatch()
        await notifier.drain(10)
        [down] = am_alerts(am, alertname="provider_down", env="test-1")
        assert ts(down["endsAt"]) == pytest.approx(t0 + 240, abs=0.01)
        clock.advance(31)
        await notifier.dispatch()
        await notifier.drain(10)
        [down] = am_alerts(am, alertname="provider_down", env="test-1")
        assert ts(down["endsAt"]) == pytest.approx(t0 + 61 + 240, abs=0.01)

        # An ack in llmpulse becomes a silence matching the alert (severity included): Alertmanager mutes it.
        await engine.ack(1, "kim", "upstream incident")
        await notifier.drain(10)
        [ack] = am_silences(am, "[llmpulse alert #1 ack]", "test-1")
        assert ack["status"]["state"] == "active" and ack["createdBy"] == "kim"
        assert "upstream incident" in ack["comment"]
        assert {m["name"]: m["value"] for m in ack["matchers"]} == {
            "alertname": "provider_down",
            "severity": "critical",
            "provider": "groq",
            "source": "llmpulse",
            "env": "test-1",
        }
        assert ts(ack["endsAt"]) == pytest.approx(clock.now() + 24 * 3600, abs=0.01)
        [down] = am_alerts(am, alertname="provider_down", env="test-1")
        assert down["status"]["state"] == "suppressed" and down["status"]["silencedBy"] == [ack["id"]]

        # A silence for 30 min: no severity matcher (it covers the alert whatever it becomes), ends when it does.
        await engine.silence(2, 1800, "lee")
        await notifier.drain(10)
        [quiet] = am_silences(am, "[llmpulse alert #2 silence]", "test-1")
        assert "severity" not in {m["name"] for m in quiet["matchers"]}
        assert ts(quiet["endsAt"]) == pytest.approx(clock.now() + 1800, abs=0.01)
        await engine.unsilence(2, "lee")
        await notifier.drain(10)
        [quiet] = am_silences(am, "[llmpulse alert #2 silence]", "test-1")
        assert quiet["status"]["state"] == "expired"

        # Worse: the warning label set ends, the critical one fires.
        worse = Condition("latency_p95", "anthropic", "critical", "Anthropic p95 latency 14s")
        await engine.process([DOWN, worse, BUDGET])
        await notifier.drain(10)
        slow = am_alerts(am, alertname="latency_p95", env="test-1")
        assert [a["labels"]["severity"] for a in slow] == ["critical"]

        # Resolved: pushed with endsAt = when it resolved (already past for Alertmanager), its ack silence expired.
        await engine.process([worse, BUDGET])
        await notifier.drain(10)
        assert am_alerts(am, alertname="provider_down", env="test-1") == []
        [ack] = am_silences(am, "[llmpulse alert #1 ack]", "test-1")
        assert ack["status"]["state"] == "expired"
        failed = await store.fetchall("SELECT event, error FROM alert_deliveries WHERE status != 'sent'")
        assert [tuple(r) for r in failed] == []
    finally:
        await notifier.drain(10)
        await store.close()


async def test_without_silences_an_ack_stays_in_llmpulse(tmp_path, am):
    store, engine, notifier, _clock = await make(tmp_path, am, 'silences = false\nlabels = { env = "test-2" }\n')
    try:
        await engine.process([DOWN])
        await engine.ack(1, "kim")
        await notifier.drain(10)
        assert am_silences(am, "[llmpulse alert #1 ack]", "test-2") == []
        [down] = am_alerts(am, alertname="provider_down", env="test-2")
        assert down["status"]["state"] == "active"
    finally:
        await notifier.drain(10)
        await store.close()


async def test_an_unreachable_alertmanager_is_a_recorded_failure_and_its_url_stays_secret(tmp_path):
    from thirdparty import free_port

    url = f"http://ops:hunter2-am-password@127.0.0.1:{free_port()}"
    text = '[[alerts.channels]]\ntype = "alertmanager"\nurl_env = "AM_URL"\nmin_severity = "info"\nretries = 0\n'
    cfg = parse_alerts(Section(tomllib.loads(text), "t.toml"))
    store = await Store.open(tmp_path / "am.db")
    notifier = Notifier(cfg, store, ManualClock(time.time()), {"AM_URL": url})
    engine = AlertEngine(store, cfg, notifier.clock, notifier)
    try:
        await engine.process([DOWN])
        await notifier.drain(10)
        [row] = await store.fetchall("SELECT status, error FROM alert_deliveries")
        assert row["status"] == "failed" and "ConnectError" in row["error"]
    finally:
        await store.close()
    assert b"hunter2-am-password" not in (tmp_path / "am.db").read_bytes()


def test_config_needs_exactly_one_address():
    def parse(body: str):
        return parse_alerts(Section(tomllib.loads('[[alerts.channels]]\ntype = "alertmanager"\n' + body), "t.toml"))

    with pytest.raises(ConfigError, match="either url"):
        parse("")
    with pytest.raises(ConfigError, match="either url"):
        parse('url = "http://a:9093"\nurl_env = "AM_URL"\n')
    with pytest.raises(ConfigError, match="http:// or https:// URL"):
        parse('url = "a:9093"\n')
    with pytest.raises(ConfigError, match="label names"):
        parse('url = "http://a:9093"\nlabels = { "bad-name" = "x" }\n')
    assert parse('url_env = "AM_URL"\n').channels[0].url_env == "AM_URL"
