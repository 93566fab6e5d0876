"""The dashboard shows issue 17's answers where they belong, on the real core and a real database file:
efficiency per group and the cost trend chart on the costs screen, alert statistics (`S`), each
migration phase against its own date, and ctrl+r reloading the config (a broken one refused, the
running one kept). Every figure is checked against one this test computes from the data it stored."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from datetime import UTC
from pathlib import Path

from llmpulse.core.alerts.engine import AlertEngine
from llmpulse.core.alerts.rules import Condition
from llmpulse.core.clock import ManualClock
from llmpulse.core.config import load_context
from llmpulse.core.store import Store
from llmpulse.core.usage.recorder import pricing_for
from llmpulse.core.usage.records import record_from_mapping
from llmpulse.core.usage.rollup import ingest
from llmpulse.tui.app import PulseApp
from llmpulse.tui.core_backend import CoreBackend
from llmpulse.tui.screens.alert_stats import AlertStatsScreen
from llmpulse.tui.screens.costs import CHART_ROWS, COLUMN_BLOCKS, LABEL_WIDTH, ColumnChart, CostsScreen
from llmpulse.tui.screens.migration import MigrationScreen
from tests.tui_helpers import ready, wait_for

NOW = 1_768_471_200.0  # 2026-01-15T10:00:00Z
DAY = 86400.0
PRICES = {"openai/gpt-4o": (2.5, 10.0), "anthropic/claude-sonnet-4": (3.0, 15.0)}
PRICE_CONFIG = "".join(f'[prices.overrides."{m}"]\ninput = {i}\noutput = {o}\n' for m, (i, o) in PRICES.items())


def context(tmp_path: Path, extra: str = ""):
    (tmp_path / "llmpulse.toml").write_text(PRICE_CONFIG + extra)
    return load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "t.db"), environ={})


def app_for(ctx, **backend_kwargs) -> PulseApp:
    clock = ManualClock(NOW)
    backend = CoreBackend(ctx, clock=clock, **backend_kwargs)
    return PulseApp(backend, clock=clock, tz=UTC, actor="ops", collect=False, watch_terminal=False)


def calls() -> list[dict]:
    """Three days of traffic: openai growing day by day, anthropic steady, at known hours."""
    out = []
    for ago, per_day in ((2, 4), (1, 9), (0, 14)):
        for i in range(per_day):
            out.append(
                {
                    "ts": NOW - ago * DAY - 3600 * (i % 3) - 7 * i - 60,
                    "provider": "openai",
                    "model": "gpt-4o",
                    "input_tokens": 4000 + 137 * i,
                    "output_tokens": 60 + 5 * i,
                    "latency_ms": 200.0 + 31 * i + 3 * ago,
                    "request_id": f"o{ago}-{i}",
                }
            )
        for i in range(5):
            out.append(
                {
                    "ts": NOW - ago * DAY - 5 * 3600 - 11 * i,
                    "provider": "anthropic",
                    "model": "claude-sonnet-4",
                    "input_tokens": 9000 + 71 * i,
                    "output_tokens": 120 + i,
                    "latency_ms": 700.0 + 50 * i,
                    "request_id": f"a{ago}-{i}",
                }
            )
    return out


def price(c: dict) -> float:
    i, o = PRICES[f"{c['provider']}/{c['model']}"]
    return (c["input_tokens"] * i + c["output_tokens"] * o) / 1e6


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


async def store_calls(ctx, data: list[dict]) -> None:
    store = await Store.open(ctx.db_path)
    try:
        await ingest(store, [record_from_mapping(c, NOW) for c in data], pricing_for(ctx), now=NOW)
    finally:
        await store.close()


def drawn_steps(chart: ColumnChart, label: str, days: int) -> list[int]:
    """The eighths drawn in each of a series' columns, read back from the chart's text."""
    lines = chart.render().plain.split("\n")
    bottom = next(i for i, line in enumerate(lines) if line.startswith(label))
    rows = lines[bottom - CHART_ROWS + 1 : bottom + 1]
    width = chart.cell_width
    steps = [0] * days
    for row in rows:
        cells = row[LABEL_WIDTH : LABEL_WIDTH + days * width].ljust(days * width)
        for d in range(days):
            steps[d] += COLUMN_BLOCKS.index(cells[d * width])
    return steps


async def test_costs_screen_shows_efficiency_the_daily_cost_chart_and_the_hours(tmp_path):
    ctx = context(tmp_path)
    data = calls()
    await store_calls(ctx, data)
    app = app_for(ctx)
    async with app.run_test(size=(160, 50)) as pilot:
        await ready(pilot)
        await pilot.press("t")  # 24h -> 7d
        app.action_costs()  # as the command palette's "Costs by group" does (no budget row to open here)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CostsScreen)
        assert await wait_for(pilot, lambda: screen.table.row_count == 2)
        chart = screen.query_one("#costs-trend", ColumnChart)
        assert await wait_for(pilot, lambda: len(chart.series) == 2)
        await pilot.pause()

        for provider in ("openai", "anthropic"):
            mine = [c for c in data if c["provider"] == provider]
            n = len(mine)
            cost = sum(price(c) for c in mine)
            tokens = sum(c["input_tokens"] + c["output_tokens"] for c in mine)
            latencies = [c["latency_ms"] for c in mine]
            cell = {key: screen.table.get_cell(provider, key).plain for key in ("per_request", "tokens_per_request")}
            cell |= {key: screen.table.get_cell(provider, key).plain for key in ("per_1k", "avg", "p50", "p95")}
            assert cell["per_request"] == f"${cost / n:.4f}", provider
            assert cell["tokens_per_request"] == f"{round(tokens / n):,}", provider
            assert cell["per_1k"] == f"${cost / tokens * 1000:.4f}", provider
            assert cell["avg"] == f"{sum(latencies) / n:.0f}ms", provider
            assert cell["p50"] == f"{nearest_rank(latencies, 0.5):.0f}ms", provider
            assert cell["p95"] == f"{nearest_rank(latencies, 0.95):.0f}ms", provider

        # The chart: one column per UTC day of the 7 days, every row on the same scale (the highest day).
        first_day = (NOW - 7 * DAY) // DAY * DAY
        days = [first_day + DAY * i for i in range(8)]
        per_day = {p: [0.0] * len(days) for p in ("openai", "anthropic")}
        for c in data:
            per_day[c["provider"]][int((c["ts"] - first_day) // DAY)] += price(c)
        top = max(max(v) for v in per_day.values())
        for provider, costs in per_day.items():
            wanted = [0 if v == 0 else max(1, math.ceil(8 * CHART_ROWS * v / top)) for v in costs]
            assert drawn_steps(chart, provider, len(days)) == wanted, provider
        assert per_day["openai"][-1] == top and drawn_steps(chart, "openai", len(days))[-1] == 8 * CHART_ROWS
        title = str(screen.query_one("#costs-trend-title").render())
        assert f"${top:.2f}/day" in title

        # Hour of day (UTC here): the busiest hour and its request count.
        by_hour = Counter(dt.datetime.fromtimestamp(c["ts"], UTC).hour for c in data)
        hour, count = by_hour.most_common(1)[0]
        hours_title = str(screen.query_one("#costs-hours-title").render())
        assert f"busiest: {hour:02d}:00 {count}" in hours_title
        hours_chart = screen.query_one("#costs-hours", ColumnChart)
        assert list(hours_chart.series[0][1]) == [float(by_hour.get(h, 0)) for h in range(24)]
        weekdays = Counter(dt.datetime.fromtimestamp(c["ts"], UTC).weekday() for c in data)
        usage = str(screen.query_one("#costs-usage").render())
        names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
        assert "  ".join(f"{names[d]} {weekdays.get(d, 0)}" for d in range(7)) in usage
        per_model = Counter(f"{c['provider']}/{c['model']}" for c in data)
        assert "Most used   " + ", ".join(f"{m} {n}" for m, n in per_model.most_common()) in usage
        assert drawn_steps(hours_chart, "requests", 24) == [
            0 if not by_hour.get(h) else max(1, math.ceil(8 * CHART_ROWS * by_hour[h] / count)) for h in range(24)
        ]


async def test_alert_statistics_view_shows_the_last_30_days(tmp_path):
    ctx = context(tmp_path)
    clock = ManualClock(NOW - 3 * DAY)
    store = await Store.open(ctx.db_path)
    acks, resolves = [], []
    try:
        engine = AlertEngine(store, None, clock)
        # Opened 40 days ago: outside the 30 days, must not count.
        clock.set(NOW - 40 * DAY)
        old = Condition("provider_down", "old", "critical", "old outage")
        await engine.process([old], covered=[old.fingerprint])
        await engine.resolve(1, "ops")
        plan = [("provider_down", "openai", "critical", 120, 600), ("provider_down", "groq", "critical", 300, None)]
        plan += [
            ("budget_warning", "total/month", "warning", 45, 3600),
            ("provider_auth", "xai", "critical", None, None),
        ]
        for i, (rule, subject, severity, ack_after, resolve_after) in enumerate(plan):
            opened = NOW - (10 - i) * DAY
            clock.set(opened)
            condition = Condition(rule, subject, severity, f"{rule} {subject}")
            await engine.process([condition], covered=[condition.fingerprint])  # the others stay open
            alert_id = next(a.id for a in await engine.open_alerts() if a.subject == subject)
            if ack_after is not None:
                clock.set(opened + ack_after)
                await engine.ack(alert_id, "ops")
                acks.append(float(ack_after))
            if resolve_after is not None:
                clock.set(opened + resolve_after)
                await engine.resolve(alert_id, "ops")
                resolves.append(float(resolve_after))
        # Notices as the notifier stores them; the one 40 days old is outside the period.
        deliveries = [("slack", "sent", 5), ("slack", "sent", 4), ("slack", "failed", 3), ("pagerduty", "held", 2)]
        deliveries += [("pagerduty", "failed", 1), ("slack", "failed", 40)]
        for channel, status, days_ago in deliveries:
            at = NOW - days_ago * DAY
            await store.execute(
                "INSERT INTO alert_deliveries (alert_id, channel, event, status, attempts, created_at, updated_at) "
                "VALUES (2, ?, 'firing', ?, 1, ?, ?)",
                (channel, status, at, at),
            )
    finally:
        await store.close()

    app = app_for(ctx)
    async with app.run_test(size=(120, 50)) as pilot:
        await ready(pilot)
        await pilot.press("S")
        assert await wait_for(pilot, lambda: isinstance(app.screen, AlertStatsScreen)), app.screen
        widget = app.screen.query_one("#alert-stats-text")
        assert await wait_for(pilot, lambda: "alerts opened" in str(widget.render()))
        text = str(widget.render())
    assert f"{len(plan)} alerts opened" in text
    from llmpulse.core.durations import format_duration

    assert f"median {format_duration(nearest_rank(acks, 0.5))}  p90 {format_duration(nearest_rank(acks, 0.9))}" in text
    assert f"({len(acks)} acknowledged)" in text
    assert f"median {format_duration(nearest_rank(resolves, 0.5))}" in text and f"({len(resolves)} resolved)" in text
    rules = Counter(rule for rule, *_ in plan)
    for rule, n in rules.items():
        assert any(line.split()[:2] == [rule, str(n)] for line in text.splitlines()), rule
    assert "old" not in text.split()  # the 40-day-old alert is outside the period
    recent = [(c, st) for c, st, days_ago in deliveries if days_ago < 30]
    for channel in ("slack", "pagerduty"):
        counts = [sum(1 for c, st in recent if c == channel and st == want) for want in ("sent", "failed", "held")]
        line = next(line for line in text.splitlines() if line.split()[:1] == [channel])
        assert line.split()[1:4] == [str(n) for n in counts], line


async def migration_screen_text(ctx) -> str:  # type: ignore[no-untyped-def]
    """What the migration screen (4, enter) says about the first migration."""
    app = app_for(ctx)
    async with app.run_test(size=(120, 50)) as pilot:
        await ready(pilot)
        await pilot.press("4", "enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, MigrationScreen)), app.screen
        await pilot.pause()
        return str(app.screen.query_one("#migration-text").render())


async def test_migration_screen_shows_each_phase_against_its_date(tmp_path):
    today = dt.datetime.fromtimestamp(NOW, UTC).date()

    def day(offset: int) -> dt.date:
        return today + dt.timedelta(days=offset)

    migration = (
        f'[[migrations]]\nname = "gpt41"\nfrom = ["gpt-4o"]\nto = "gpt-4.1"\nstart = {day(-20)}\n'
        f'deadline = {day(40)}\nwindow = "1d"\nphases = [{{ name = "preparation", share = 0.0 }}, '
        f'{{ name = "testing", share = 0.05, by = {day(-3)} }}, {{ name = "rollout", share = 0.5, by = {day(5)} }}, '
        '{ name = "completed", share = 1.0 }]\n'
    )
    ctx = context(tmp_path, migration)
    text = await migration_screen_text(ctx)
    # No traffic has moved: testing is past its date (the end of that UTC day), rollout will miss its own.
    due = dt.datetime.combine(day(-3) + dt.timedelta(days=1), dt.time(), UTC).timestamp()
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ") and " by 20" in line}
    assert f"by {day(-3)}" in lines["testing"] and f"late by {(NOW - due) / DAY:.1f} days" in lines["testing"]
    assert f"by {day(5)}" in lines["rollout"] and "at risk" in lines["rollout"] and "50%" in lines["rollout"]
    assert "preparation" not in lines and "completed" not in lines  # no date of their own


async def test_ctrl_r_reloads_the_config_and_refuses_a_broken_one(tmp_path):
    budget = '[[budgets]]\nscope = "total"\nperiod = "month"\nlimit_usd = {}\n'
    ctx = context(tmp_path, budget.format(100))
    path = tmp_path / "llmpulse.toml"

    def reload_context():
        return load_context(config_path=str(path), db_path=str(tmp_path / "t.db"), environ={})

    app = app_for(ctx, reload_context=reload_context)
    backend = app.backend
    notes: list[tuple[str, str]] = []
    app.notify = lambda message, *a, severity="information", **k: notes.append((message, severity))  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        path.write_text(PRICE_CONFIG + budget.format(250))
        await pilot.press("ctrl+r")
        assert await wait_for(pilot, lambda: len(notes) == 1)
        assert notes[0][1] == "information" and "config loaded" in notes[0][0]
        assert await wait_for(pilot, lambda: [b.limit_usd for b in app.latest.budgets] == [250])

        path.write_text(PRICE_CONFIG + '[[budgets]]\nscope = "total"\nperiod = "fortnight"\nlimit_usd = 5\n')
        await pilot.press("ctrl+r")
        assert await wait_for(pilot, lambda: len(notes) == 2)
        message, severity = notes[1]
        assert severity == "error" and "refused" in message and "fortnight" in message and "\n" not in message
        assert backend.ctx.config.usage.budgets[0].limit_usd == 250  # the running config stays
        app.refresh_now()
        await pilot.pause(0.1)
        assert [b.limit_usd for b in app.latest.budgets] == [250]


async def test_ctrl_r_hands_the_new_config_to_the_collector_running_in_the_dashboard(tmp_path):
    """The dashboard's own collector (no provider to probe, a round a second) takes the new config at its
    next round; the alert left open before the reload stays open, not re-announced."""
    config = '[probe]\ninterval = "1s"\n[alerts]\nerror_rate_warning = {}\n'
    path = tmp_path / "llmpulse.toml"
    path.write_text(config.format(0.05))
    ctx = load_context(config_path=str(path), db_path=str(tmp_path / "c.db"), environ={})
    store = await Store.open(ctx.db_path)
    try:
        condition = Condition("provider_down", "openai", "critical", "OpenAI is down")
        await AlertEngine(store).process([condition], covered=[condition.fingerprint])
    finally:
        await store.close()

    backend = CoreBackend(
        ctx, reload_context=lambda: load_context(config_path=str(path), db_path=str(ctx.db_path), environ={})
    )
    app = PulseApp(backend, tz=UTC, actor="ops", refresh=0.2, collect=True, watch_terminal=False)
    notes: list[tuple[str, str]] = []
    app.notify = lambda message, *a, severity="information", **k: notes.append((message, severity))  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: backend._collector is not None and backend._collector.rounds >= 1)
        collector = backend._collector
        path.write_text(config.format(0.08))
        await pilot.press("ctrl+r")
        assert await wait_for(pilot, lambda: bool(notes))
        assert notes[0] == ("config loaded; it applies from the collector's next round", "information")
        assert await wait_for(pilot, lambda: collector.ctx.config.alerts.error_rate_warning == 0.08)
        assert [(a.id, a.state) for a in app.latest.alerts] == [(1, "firing")]


async def test_migration_screen_shows_a_phase_reached_late_and_one_on_track(tmp_path):
    """Traffic moving 4.5 points a day for ten days (45% today): the collector records testing reached
    now, after its date three days ago; rollout (50%) is due in five days and the trend gets there."""
    from llmpulse.core.migration import migration_statuses

    today = dt.datetime.fromtimestamp(NOW, UTC).date()

    def day(offset: int) -> dt.date:
        return today + dt.timedelta(days=offset)

    ctx = context(
        tmp_path,
        f'[[migrations]]\nname = "gpt41"\nfrom = ["gpt-4o"]\nto = "gpt-4.1"\nstart = {day(-20)}\n'
        f'deadline = {day(40)}\nwindow = "1d"\nphases = [{{ name = "preparation", share = 0.0 }}, '
        f'{{ name = "testing", share = 0.05, by = {day(-3)} }}, {{ name = "rollout", share = 0.5, by = {day(5)} }}, '
        '{ name = "completed", share = 1.0 }]\n',
    )
    data = []
    for ago in range(11):
        moved = round(100 * 0.045 * (10 - ago))
        for i in range(100):
            model = "gpt-4.1" if i < moved else "gpt-4o"
            data.append({"ts": NOW - ago * DAY - 6 * 3600 - i, "provider": "openai", "model": model})
            data[-1] |= {"input_tokens": 100, "output_tokens": 10, "request_id": f"m{ago}-{i}"}
    await store_calls(ctx, data)
    store = await Store.open(ctx.db_path)
    try:
        await migration_statuses(store, ctx.config, NOW, record=True)  # what the collector does each round
    finally:
        await store.close()

    text = await migration_screen_text(ctx)
    due = dt.datetime.combine(day(-3) + dt.timedelta(days=1), dt.time(), UTC).timestamp()
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ") and " by 20" in line}
    assert f"reached {(NOW - due) / DAY:.1f} days late" in lines["testing"]
    assert f"by {day(5)}" in lines["rollout"] and "on track" in lines["rollout"]
