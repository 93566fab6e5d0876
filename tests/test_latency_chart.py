"""Issue 13 §4: the provider's latency chart is bucketed by time over its whole range, a stretch with no
answer is a gap (not a zero), the p95 beside it is of the same data; the Providers panel's sparklines
share one scale."""

from __future__ import annotations

import pytest

from llmpulse.core.health_settings import HealthSettings
from llmpulse.core.health_state import latency_history, record_probe_results
from llmpulse.core.probe import ProbeResult
from llmpulse.core.store import Store
from llmpulse.tui import format as fmt
from llmpulse.tui.screens.provider import latency_chart
from tests.snapshot_apps.fixed import fixed_app
from tests.tui_helpers import ready, shown, wait_for

SETTINGS = HealthSettings(window=900, failure_threshold=3, cooldown=60)
T0 = 1_800_000_000.0 - 1_800_000_000.0 % 3600  # on the hour: minutes and buckets line up


async def test_buckets_cover_the_range_with_gaps_where_nothing_answered(tmp_path):
    store = await Store.open(tmp_path / "h.db")
    try:
        # Two hours, 12 buckets of 10 minutes. A probe every minute except 30-60 min (nothing ran) and
        # 60-70 min (every probe failed, no latency). Latency = 100 ms + the minute number.
        latencies = {}
        for minute in range(120):
            if 30 <= minute < 60:
                continue
            at = T0 + minute * 60 + 5
            failed = 60 <= minute < 70
            r = ProbeResult(
                "p",
                "p",
                at,
                "failed" if failed else "healthy",
                "timeout" if failed else None,
                None,
                None if failed else 100.0 + minute,
                None if failed else 200,
            )
            await record_probe_results(store, [r], SETTINGS, at)
            if not failed:
                latencies[minute] = 100.0 + minute
        history = await latency_history(store, "p", T0, T0 + 7200, 12)
    finally:
        await store.close()
    assert len(history.buckets) == 12
    for b, value in enumerate(history.buckets):
        inside = [latencies[m] for m in range(b * 10, b * 10 + 10) if m in latencies]
        if inside:
            assert value == pytest.approx(sum(inside) / len(inside)), b
        else:
            assert value is None, b  # buckets 3, 4, 5 (nothing ran) and 6 (all failed)
    assert [b for b, v in enumerate(history.buckets) if v is None] == [3, 4, 5, 6]
    ordered = sorted(latencies.values())
    assert history.p95_ms == ordered[int(0.95 * len(ordered) + 0.999) - 1]
    assert history.samples == 120 - 30 and history.failed == 10


def test_the_chart_draws_gaps_as_blank_columns_and_bars_from_zero():
    chart = latency_chart([100.0, None, 400.0, 200.0], rows=2).plain.split("\n")
    assert len(chart) == 2 and all(len(line) == 4 for line in chart)
    assert chart[0][1] == " " and chart[1][1] == " "  # the gap
    assert chart[0][2] == "█" and chart[1][2] == "█"  # the highest fills both rows
    assert chart[0][3] == " " and chart[1][3] == "█"  # half of it: the bottom row only
    assert chart[0][0] == " " and chart[1][0] == fmt.SPARK_CHARS[3]  # a quarter: half a cell


def test_sparklines_share_one_scale():
    scale = fmt.common_scale([[100.0, 200.0], [1000.0, 2000.0]])
    low, high = fmt.sparkline([100.0, 200.0], 2, scale), fmt.sparkline([1000.0, 2000.0], 2, scale)
    assert low == fmt.SPARK_CHARS[0] * 2  # small beside the slow provider, not its own full height
    assert high[-1] == fmt.SPARK_CHARS[-1]
    assert fmt.sparkline([100.0, 200.0], 2) == fmt.SPARK_CHARS[0] + fmt.SPARK_CHARS[-1]  # alone: own range


async def test_provider_screen_shows_the_range_and_p95_and_t_changes_it():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("1", "enter")
        assert await wait_for(pilot, lambda: "p95" in shown(app, "#provider-chart-label"))
        label = str(app.screen.query_one("#provider-chart-label").render())
        assert "last 24h" in label and "p95 1.3s" in label
        chart = str(app.screen.query_one("#provider-chart").render()).split("\n")
        width = len(chart[0])
        assert width > 40 and chart[-1][width // 3 : width // 2].strip() == ""  # the fixed gap stays blank
        await pilot.press("t")
        assert await wait_for(pilot, lambda: "last 7d" in shown(app, "#provider-chart-label"))
        assert "last 7d" in str(app.screen.query_one("#provider-chart-label").render())
