"""Disabling a provider closes its open alerts — never as a recovery.

Nothing judges a disabled provider any more, so its alerts must neither stay open forever nor be
auto-resolved ("condition cleared"), which would send on-call a false "resolved". They are closed with who
disabled it and where; the channels hear "closed, not recovered" (PagerDuty, whose only ending is
"resolve", hears nothing); alert history shows it. Enabled again, the provider is judged afresh.

End to end: a real fleet answering 401, the collector, the real `llmpulse providers disable` command in a
subprocess on the same database file (and `e` in the dashboard), and webhook, Slack and PagerDuty receivers
on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from llmpulse.core.alerts.alertmanager import alert_body
from llmpulse.core.alerts.config import ChannelConfig
from llmpulse.core.alerts.engine import AlertEngine
from llmpulse.core.alerts.rules import Condition
from llmpulse.core.alerts.stats import alert_stats
from llmpulse.core.clock import ManualClock
from llmpulse.core.collector import Collector
from llmpulse.core.config import load_context
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.store import Store
from llmpulse.tui.app import PulseApp
from llmpulse.tui.core_backend import CoreBackend
from tests.cli_helpers import run_cli
from tests.test_notify import Receiver
from tests.test_pagerduty import EventsApi
from tests.test_tui_live import context, wait_for

KEY = "sk-proj-DisabledProvider0123456789abcd"
PD_KEY = "R0UT1NGKEYdisabled00000000000000"
T0 = 1_800_000_000.0


def _config(tmp_path: Path, fleet: Fleet, receiver: Receiver, pd: EventsApi, *, openai_enabled: bool = True) -> Path:
    path = tmp_path / "llmpulse.toml"
    path.write_text(
        f'[probe]\ninterval = "30s"\ntimeout = "2s"\n'
        f'[providers.openai]\nbase_url = "{fleet.base_url("openai")}"\nenabled = {str(openai_enabled).lower()}\n'
        f'[providers.groq]\nbase_url = "{fleet.base_url("groq")}"\n'
        f'[[alerts.channels]]\nname = "hook"\ntype = "webhook"\nurl_env = "HOOK_URL"\nmin_severity = "info"\nretries = 0\n'
        f'[[alerts.channels]]\nname = "chat"\ntype = "slack"\nurl_env = "SLACK_URL"\nmin_severity = "info"\nretries = 0\n'
        f'[[alerts.channels]]\nname = "pd"\ntype = "pagerduty"\nrouting_key_env = "PD_ROUTING_KEY"\n'
        f'url = "{pd.url}"\nmin_severity = "info"\nretries = 0\n'
    )
    return path


def _environ(receiver: Receiver) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": KEY,
        "GROQ_API_KEY": KEY,
        "HOOK_URL": receiver.url("/hook"),
        "SLACK_URL": receiver.url("/slack"),
        "PD_ROUTING_KEY": PD_KEY,
    }


async def _rounds(collector: Collector, clock: ManualClock, n: int) -> list[str]:
    events: list[str] = []
    for _ in range(n):
        clock.advance(30)
        events += (await collector.run_round()).alert_events
    await collector.notifier.drain(10)
    return events


@dataclass
class Setup:
    fleet: Fleet
    receiver: Receiver  # the webhook (/hook) and Slack (/slack) channels
    pd: EventsApi
    config: Path
    db: Path
    store: Store
    clock: ManualClock
    collector: Collector


@asynccontextmanager
async def _running(tmp_path: Path, openai_behaviour: str) -> AsyncIterator[Setup]:
    """OpenAI failing as told and Groq healthy, a collector with webhook, Slack and PagerDuty channels."""
    with Fleet(
        [FakeProvider("openai", key=KEY, behaviour=openai_behaviour), FakeProvider("groq", kind="groq", key=KEY)]
    ) as fleet:
        async with Receiver() as receiver, EventsApi() as pd:
            config = _config(tmp_path, fleet, receiver, pd)
            db = tmp_path / "shared.db"
            ctx = load_context(str(config), str(db), environ=_environ(receiver))
            store = await Store.open(db)
            try:
                clock = ManualClock(T0)
                collector = Collector(ctx, store, clock, on_event=lambda _: None)
                yield Setup(fleet, receiver, pd, config, db, store, clock, collector)
            finally:
                await store.close()


async def _outbox(store: Store, alert_id: int) -> list[str]:
    rows = await store.fetchall("SELECT event FROM alert_outbox WHERE alert_id = ? ORDER BY id", (alert_id,))
    return [r["event"] for r in rows]


async def test_disabling_closes_its_alerts_without_a_recovery_notice(tmp_path: Path) -> None:
    async with _running(tmp_path, "bad_key") as s:
        store, clock, collector, receiver, pd = s.store, s.clock, s.collector, s.receiver, s.pd
        await _rounds(collector, clock, 1)
        (auth,) = [a for a in await collector.engine.open_alerts() if a.subject == "openai"]
        assert auth.rule == "provider_auth" and auth.state == "firing"
        assert [b["event"] for b in receiver.bodies("/hook")] == ["firing"]
        assert [e["event_action"] for e in pd.events] == ["trigger"]

        # Someone disables OpenAI with the real command, on the same database file.
        cli = ("--config", str(s.config), "--db", str(s.db))
        r = run_cli(tmp_path, *cli, "providers", "disable", "openai", "--by", "alice")
        assert r.returncode == 0, r.stderr
        assert f"closed 1 open alert (#{auth.id})" in r.stdout and "not a recovery" in r.stdout
        events = await _rounds(collector, clock, 3)  # the collector's rounds go on meanwhile
        assert not [e for e in events if "openai" in e], events

        closed = await collector.engine.get(auth.id)
        assert closed is not None and closed.state == "resolved"
        assert closed.resolved_by == "alice (llmpulse providers disable)"
        assert closed.closed_reason is not None and "provider disabled by alice" in closed.closed_reason
        assert "not a recovery" in closed.closed_reason
        assert not [a for a in await collector.engine.open_alerts() if a.subject == "openai"]

        # The notices: "closed", never "resolved" — to every channel but PagerDuty, which hears nothing.
        assert await _outbox(store, auth.id) == ["firing", "closed"]
        hook = receiver.bodies("/hook")
        assert [b["event"] for b in hook] == ["firing", "closed"]
        assert "provider disabled by alice" in hook[-1]["transition"]["detail"]
        slack = [b["text"] for b in receiver.bodies("/slack")]
        assert len(slack) == 2 and "CLOSED, NOT RECOVERED" in slack[1] and "RESOLVED*" not in slack[1]
        assert "provider disabled by alice" in slack[1]
        assert [e["event_action"] for e in pd.events] == ["trigger"]  # no "resolve": it did not recover

        # History says what happened and who did it, in the real `alerts show`.
        show = run_cli(tmp_path, *cli, "alerts", "show", str(auth.id))
        assert show.returncode == 0, show.stderr
        assert "state: closed, not recovered" in show.stdout
        assert "closed (firing → resolved)" in show.stdout and "alice (llmpulse providers disable)" in show.stdout
        listed = run_cli(tmp_path, *cli, "alerts", "--all", "--json")
        (row,) = [a for a in json.loads(listed.stdout)["alerts"] if a["id"] == auth.id]
        assert row["closed_reason"] == closed.closed_reason
        # A closing is not a time to resolve: it stays out of the statistics' figure.
        stats = await alert_stats(store, T0 - 1, clock.now() + 1)
        assert stats.time_to_resolve.count == 0

        # Enabled again, it is judged afresh: still refusing the key, a new alert opens and is announced.
        r = run_cli(tmp_path, *cli, "providers", "enable", "openai")
        assert r.returncode == 0, r.stderr
        await _rounds(collector, clock, 1)
        (again,) = [a for a in await collector.engine.open_alerts() if a.subject == "openai"]
        assert again.id != auth.id and again.rule == "provider_auth" and again.closed_reason is None
        assert [b["event"] for b in receiver.bodies("/hook")] == ["firing", "closed", "firing"]


async def test_a_provider_disabled_in_the_config_is_closed_by_the_collector(tmp_path: Path) -> None:
    async with _running(tmp_path, "server_error") as s:
        await _rounds(s.collector, s.clock, 3)
        down = [a for a in await s.collector.engine.open_alerts() if a.subject == "openai"]
        assert "provider_down" in {a.rule for a in down}

        # The config now says enabled = false; the daemon reloads it (SIGHUP does this).
        config = _config(tmp_path, s.fleet, s.receiver, s.pd, openai_enabled=False)
        s.collector.reload(load_context(str(config), str(s.db), environ=_environ(s.receiver)))
        events = await _rounds(s.collector, s.clock, 2)
        assert {e.split()[1] for e in events if "openai" in e} == {"#" + str(a.id) for a in down}
        assert all(" closed " in e for e in events if "openai" in e), events
        for a in down:
            now = await s.collector.engine.get(a.id)
            assert now is not None and now.state == "resolved"
            assert now.resolved_by == f"config ({config})"
            assert await _outbox(s.store, a.id) == ["firing", "closed"]
        assert "resolved" not in {b["event"] for b in s.receiver.bodies("/hook")}
        assert "resolve" not in {e["event_action"] for e in s.pd.events}


async def test_an_alert_closed_in_alertmanager_says_it_did_not_recover(tmp_path: Path) -> None:
    """Alertmanager ends an alert whose re-sends stop, whatever llmpulse does: the last push says why."""
    store = await Store.open(tmp_path / "am.db")
    try:
        clock = ManualClock(T0)
        engine = AlertEngine(store, None, clock)
        await engine.process([Condition("provider_auth", "xai", "critical", "xAI rejects its API key")])
        (alert,) = await engine.open_alerts()
        clock.advance(60)
        await engine.close_disabled({"xai": "bob (dashboard)"})
        closed = await engine.get(alert.id)
        assert closed is not None
        body = alert_body(closed, ChannelConfig(name="am", type="alertmanager", url="http://127.0.0.1:1"), T0 + 90, 240)
        assert body["annotations"]["llmpulse_state"] == "closed"
        assert "provider disabled by bob (dashboard)" in body["annotations"]["llmpulse_closed"]
        assert body["endsAt"].startswith("2027-01-15T08:01:00")  # ended when it was closed: T0 + 60
    finally:
        await store.close()


async def test_disabling_from_the_dashboard_closes_with_who_did_it(tmp_path: Path) -> None:
    with Fleet([FakeProvider("openai", key=KEY), FakeProvider("groq", kind="groq", key=KEY)]) as fleet:
        ctx = context(tmp_path, fleet)
        store = await Store.open(ctx.db_path)
        try:
            await AlertEngine(store).process(
                [Condition("provider_auth", "openai", "critical", "OpenAI rejects its API key")]
            )
        finally:
            await store.close()
        app = PulseApp(CoreBackend(ctx), tz=UTC, actor="ops", refresh=0.2, collect=False, watch_terminal=False)
        async with app.run_test(size=(120, 40)) as pilot:
            assert await wait_for(pilot, lambda: app.polls >= 1)
            providers, alerts = app.dashboard.panels[1].table, app.dashboard.panels[3].table
            assert await wait_for(pilot, lambda: "1" in [r.key.value for r in alerts.ordered_rows])
            await pilot.press("1")
            providers.move_cursor(row=providers.get_row_index("openai"))
            await pilot.press("e", "y")
            # The closed alert leaves the Alerts panel: it is no longer open.
            assert await wait_for(pilot, lambda: "1" not in [r.key.value for r in alerts.ordered_rows])
        store = await Store.open(ctx.db_path)
        try:
            engine = AlertEngine(store)
            closed = await engine.get(1)
            assert closed is not None and closed.state == "resolved" and closed.resolved_by == "ops (dashboard)"
            assert closed.closed_reason is not None and "provider disabled by ops (dashboard)" in closed.closed_reason
            assert [t.event for t in await engine.transitions(1)] == ["opened", "closed"]
            assert await _outbox(store, 1) == ["firing", "closed"]
        finally:
            await store.close()
