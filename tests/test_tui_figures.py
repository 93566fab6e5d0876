"""What the dashboard shows for money: a model of unknown price reads `price unknown`, never $0.00; the
header's budget figure says which budget it is."""

from __future__ import annotations

from llmpulse.core.config import load_context
from llmpulse.core.snapshot import build_snapshot
from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.queries import GroupRow
from llmpulse.core.usage.records import record_from_mapping
from llmpulse.core.usage.rollup import ingest
from llmpulse.tui.header import header_text
from llmpulse.tui.panels.base import View
from llmpulse.tui.screens.costs import CostsScreen
from tests.snapshot_apps.fixed import NOW, FixedBackend, fixed_app
from tests.tui_helpers import ready, wait_for


class UnknownPriceBackend(FixedBackend):
    async def breakdown(self, by, since, until):
        row = {
            "errors": 0,
            "fallbacks": 0,
            "input_tokens": 1000,
            "output_tokens": 10,
            "cache_read_tokens": 0,
            "success_rate": 1.0,
            "p95_ms": 1.0,
        }
        return [
            GroupRow(key="openai/mystery", requests=40, cost_usd=0.0, unknown_price_count=40, **row),
            GroupRow(key="openai/gpt-4o", requests=10, cost_usd=2.5, unknown_price_count=0, **row),
        ]


async def test_costs_screen_says_price_unknown_not_zero():
    app = fixed_app(backend=UnknownPriceBackend())
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot)
        await pilot.press("2", "enter")
        screen = app.screen
        assert isinstance(screen, CostsScreen)
        assert await wait_for(pilot, lambda: screen.table.row_count == 2)
        cells = [c.plain for c in screen.table.get_row("openai/mystery")]
        assert "price unknown" in cells and "$0.00" not in cells


async def test_header_names_the_budget_it_shows(tmp_path):
    (tmp_path / "llmpulse.toml").write_text(
        '[[budgets]]\nscope = "total"\nperiod = "month"\nlimit_usd = 1000\n'
        '[[budgets]]\nscope = "provider:openai"\nperiod = "day"\nlimit_usd = 1\n'
    )
    ctx = load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "h.db"), environ={})
    store = await Store.open(ctx.db_path)
    try:
        rec = {"ts": NOW - 60, "provider": "openai", "model": "gpt-4o", "input_tokens": 200_000}
        await ingest(store, [record_from_mapping(rec, NOW)], Pricing(), now=NOW)
        spent = Pricing().cost("openai", "gpt-4o", 200_000, 0)
        snap = await build_snapshot(store, ctx, NOW)
    finally:
        await store.close()
    # the daily openai budget ($1) is nearest its limit, not the monthly total ($1,000)
    assert snap.header.budget_name == "provider:openai/day"
    assert abs(snap.header.budget_utilization - spent / 1.0) < 1e-9
    line = header_text(snap, View(now=NOW), paused=False, interval=1.0, time_range="24h").plain
    assert "budget provider:openai/day" in line


def test_header_says_when_nothing_collects():
    import dataclasses

    from llmpulse.core.snapshot import CollectorInfo
    from tests.snapshot_apps.fixed import fixed_snapshot

    idle = CollectorInfo(
        holder=None, alive=False, last_round_at=NOW - 240, summary="no collector since 09:12 — data 4m old"
    )
    snap = dataclasses.replace(fixed_snapshot(), collector=idle)
    line = header_text(snap, View(now=NOW), paused=False, interval=1.0, time_range="24h", width=80).plain
    assert "no collector since 09:12 — data 4m old" in line
    alive = header_text(fixed_snapshot(), View(now=NOW), paused=False, interval=1.0, time_range="24h").plain
    assert "collector" not in alive
