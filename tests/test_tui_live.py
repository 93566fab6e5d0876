"""The dashboard on the real core: a real database, the real collector, fake providers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from datetime import UTC

from llmpulse.core.alerts.engine import AlertEngine
from llmpulse.core.alerts.rules import Condition
from llmpulse.core.config import load_context
from llmpulse.core.lease import DEFAULT_TTL, read_lease
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.store import Store
from llmpulse.tui.app import PulseApp
from llmpulse.tui.core_backend import CoreBackend
from tests.tui_helpers import wait_for

KEY = "sk-proj-TuiLiveSecret0123456789abcdefgh"


def context(tmp_path, fleet: Fleet, timeout: str = "3s"):
    lines = ["[probe]", 'interval = "1s"', f'timeout = "{timeout}"']
    for pid in fleet.providers:
        lines += [f"[providers.{pid}]", f'base_url = "{fleet.base_url(pid)}"']
    (tmp_path / "llmpulse.toml").write_text("\n".join(lines) + "\n")
    env = {f"{pid.upper()}_API_KEY": KEY for pid in fleet.providers}
    return load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "live.db"), environ=env)


def app_for(ctx, *, collect: bool) -> PulseApp:
    return PulseApp(CoreBackend(ctx), tz=UTC, actor="ops", refresh=0.2, collect=collect, watch_terminal=False)


async def seed_alerts(db_path) -> None:
    store = await Store.open(db_path)
    try:
        await AlertEngine(store).process(
            [
                Condition("provider_auth", "deepseek", "critical", "DeepSeek rejects its API key"),
                Condition("budget_warning", "total/month", "warning", "budget total/month passed 80%"),
            ]
        )
    finally:
        await store.close()


async def test_keys_change_the_database(tmp_path):
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        ctx = context(tmp_path, fleet)
        await seed_alerts(ctx.db_path)
        app = app_for(ctx, collect=False)
        async with app.run_test(size=(120, 40)) as pilot:
            assert await wait_for(pilot, lambda: app.polls >= 1)
            await pilot.press("3", "a")  # the first row: the critical one
            table = app.dashboard.panels[3].table
            assert await wait_for(pilot, lambda: table.get_cell("1", "state").plain.startswith("acked"))
            table.move_cursor(row=table.get_row_index("2"))  # rows re-sort as states change: pick by key
            await pilot.press("s", *"30m", "enter")
            assert await wait_for(pilot, lambda: "silenced" in table.get_cell("2", "state").plain)
            await pilot.press("r")
            assert await wait_for(pilot, lambda: "2" not in [r.key.value for r in table.ordered_rows])
        store = await Store.open(ctx.db_path)
        try:
            engine = AlertEngine(store)
            first, second = await engine.get(1), await engine.get(2)
            assert (first.state, first.acked_by) == ("acknowledged", "ops")
            assert second.state == "resolved" and second.resolved_by == "ops" and second.silenced_until is not None
            assert [t.event for t in await engine.transitions(2)] == ["opened", "silenced", "resolved"]
        finally:
            await store.close()


async def test_an_ack_elsewhere_shows_on_the_next_refresh(tmp_path):
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        ctx = context(tmp_path, fleet)
        await seed_alerts(ctx.db_path)
        app = app_for(ctx, collect=False)
        async with app.run_test(size=(120, 40)) as pilot:
            assert await wait_for(pilot, lambda: app.polls >= 1)
            other = await Store.open(ctx.db_path)  # another process's connection
            try:
                await AlertEngine(other).ack(1, "bob")
            finally:
                await other.close()
            table = app.dashboard.panels[3].table
            assert await wait_for(pilot, lambda: table.get_cell("1", "state").plain.startswith("acked"))


async def test_quit_does_not_wait_for_a_hanging_provider(tmp_path):
    with Fleet(
        [FakeProvider("openai", key=KEY), FakeProvider("groq", kind="groq", key=KEY, behaviour="hang")]
    ) as fleet:
        ctx = context(tmp_path, fleet, timeout="30s")
        app = app_for(ctx, collect=True)
        # groq's probe may wait 30 s for its answer: the whole session, quitting included, must end well
        # before that (the guard is the probe's timeout, not a stopwatch of how fast quitting is).
        async with asyncio.timeout(20):
            async with app.run_test(size=(120, 40)) as pilot:
                assert await wait_for(pilot, lambda: any(r.method == "GET" for r in fleet.requests("groq")))
                await pilot.press("j", "k", "3")  # keys still answer mid-probe
                await pilot.press("q")
        assert app.return_code is not None


async def test_lease_hand_over_between_two_dashboards(tmp_path):
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        ctx = context(tmp_path, fleet)
        first, second = app_for(ctx, collect=True), app_for(ctx, collect=True)
        store = await Store.open(ctx.db_path)
        try:
            async with first.run_test(size=(100, 30)) as p1:
                assert await wait_for(
                    p1, lambda: first.backend._collector is not None and first.backend._collector.rounds >= 1
                )
                async with second.run_test(size=(100, 30)) as p2:
                    await p2.pause(1.5)
                    holder = (await read_lease(store)).holder
                    assert second.backend._collector is not None and second.backend._collector.rounds == 0
                    await p1.press("q")  # the collecting dashboard leaves...
                    await p1.pause(0.1)
                    assert await wait_for(p2, lambda: second.backend._collector.rounds >= 1, DEFAULT_TTL - 2), (
                        # sooner than the lease runs out: the leaving one hands it over, it is not taken after a TTL
                        "the other dashboard must take the collector over within seconds"
                    )
                    assert (await read_lease(store)).holder != holder
        finally:
            await store.close()
