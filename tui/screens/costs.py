"""Costs grouped by provider, model, department, agent or user over 1h / 24h / 7d / 30d (`b` changes the
grouping, `t` the range), with what a request costs and takes per group (efficiency), each group's cost
per day as a column chart on one scale shared by every group, and the hour-of-day profile. Figures come
from the usage roll-ups, so this stays fast on millions of records."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Footer, Static

from llmpulse.tui import format as fmt
from llmpulse.tui.backend import WEEKDAYS, GroupRow, Patterns, Snapshot, Trend
from llmpulse.tui.header import HeaderLine
from llmpulse.tui.panels.base import View
from llmpulse.tui.screens.base import LiveScreen
from llmpulse.tui.table_sync import sync_rows
from llmpulse.tui.widgets import PanelTable

GROUPS = ("provider", "model", "department", "agent", "user")
COLUMN_BLOCKS = " ▁▂▃▄▅▆▇█"  # eighths of a cell, from empty to full
CHART_ROWS = 2  # each group's columns are two cells tall: 16 steps on the shared scale
RELOAD_S = 5.0
CHART_GROUPS = 8  # the most expensive groups get a chart row each
LABEL_WIDTH = 18


def column_steps(value: float, top: float, rows: int = CHART_ROWS) -> int:
    """How many eighth-cells tall a column is on a scale of 0..top: any spend shows at least one step (a
    cheap day is not a day without spend), none shows none."""
    if value <= 0 or top <= 0:
        return 0
    return max(1, min(8 * rows, math.ceil(8 * rows * value / top)))


def column_cells(steps: int, rows: int = CHART_ROWS) -> list[str]:
    """A column of `steps` eighths as its cells, top cell first."""
    return [COLUMN_BLOCKS[min(8, max(0, steps - 8 * level))] for level in reversed(range(rows))]


class ColumnChart(Widget):
    """Series drawn one above the other as columns on ONE scale (0 to the highest value of any series),
    so a taller column is more money whatever its row. Each series: a label, its values, a note."""

    DEFAULT_CSS = """
    ColumnChart { height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.series: list[tuple[str, Sequence[float], str]] = []
        self.axis: list[str] = []  # each column's name (day of month, hour), two characters at most
        self.top = 0.0
        self.cell_width = 2

    def show(self, series: list[tuple[str, Sequence[float], str]], axis: Sequence[str] = ()) -> None:
        self.series = series
        self.axis = list(axis)
        self.top = max((v for _, values, _ in series for v in values), default=0.0)
        self.refresh(layout=True)

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return max(1, CHART_ROWS * len(self.series) + (1 if self.series and self.axis else 0))

    def render(self) -> Text:
        text = Text()
        if not self.series:
            return Text("no traffic in this range", style="dim")
        longest = max(len(values) for _, values, _ in self.series)
        room = self.size.width - LABEL_WIDTH - 24
        # Three cells a column (two drawn, one apart) when they fit, else two, else one.
        self.cell_width = next((w for w in (3, 2) if longest and room >= w * longest), 1)
        drawn = 2 if self.cell_width == 3 else self.cell_width
        gap = " " * (self.cell_width - drawn)
        for label, values, note in self.series:
            cells = [column_cells(column_steps(v, self.top)) for v in values]
            for level in range(CHART_ROWS):
                head = label[: LABEL_WIDTH - 1].ljust(LABEL_WIDTH) if level == CHART_ROWS - 1 else " " * LABEL_WIDTH
                text.append(head)
                text.append("".join(c[level] * drawn + gap for c in cells), style="green")
                if level == CHART_ROWS - 1:
                    text.append(f"  {note}", style="dim")
                text.append("\n")
        if self.axis:
            # Each column's name under it where there is room: every one at three cells, every other
            # one at two, the first and the last at one.
            if self.cell_width == 3:
                names = "".join(a[:2].rjust(2) + " " for a in self.axis)
            elif self.cell_width == 2:
                names = "".join(a[:2].rjust(2) if i % 2 == 0 else "  " for i, a in enumerate(self.axis))
            else:
                names = self.axis[0] + self.axis[-1].rjust(len(self.axis) - len(self.axis[0]))
            text.append(" " * LABEL_WIDTH + names, style="dim")
        text.rstrip()
        return text


class CostsScreen(LiveScreen):
    DEFAULT_CSS = """
    #costs-table { height: auto; max-height: 14; }
    #costs-trend-title, #costs-hours-title { margin-top: 1; }
    """
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="costs.back", tooltip="Back to the dashboard"),
        Binding(
            "b", "next_group", "Group by", id="costs.group", tooltip="Group by provider, model, department, agent, user"
        ),
    ]

    def __init__(self, group: str = "provider") -> None:
        super().__init__()
        self.group = group
        self._loaded: tuple[tuple[str, str, str], float] | None = None  # what was read, and when (monotonic)
        self.table = PanelTable(id="costs-table")

    def compose(self) -> ComposeResult:
        yield HeaderLine()
        with VerticalScroll(id="costs"):
            yield Static(id="costs-title")
            yield self.table
            yield Static(id="costs-total")
            yield Static(id="costs-trend-title")
            yield ColumnChart(id="costs-trend")
            yield Static(id="costs-hours-title")
            yield ColumnChart(id="costs-hours")
            yield Static(id="costs-usage")
        yield Footer()

    def on_mount(self) -> None:
        for key, label in (
            ("key", "Group"),
            ("requests", "Requests"),
            ("tokens", "Tokens in/out"),
            ("cost", "Cost"),
            ("share", "Share"),
            ("unknown", "Unpriced"),
            ("success", "Success"),
            ("per_request", "$/req"),
            ("tokens_per_request", "Tok/req"),
            ("per_1k", "$/1k tok"),
            ("avg", "Avg"),
            ("p50", "p50"),
            ("p95", "p95"),
        ):
            self.table.add_column(label, key=key)
        self.table.focus()
        self.pulse.draw()

    def fill(self, snapshot: Snapshot, view: View) -> None:
        # The range's figures read the raw calls (exact percentiles, averages): on a large database that
        # is a scan, so the same grouping, range and filter are read again at most every RELOAD_S.
        what = (self.group, self.pulse.time_range[0], view.filter)
        now = time.monotonic()
        if self._loaded is not None and self._loaded[0] == what and now - self._loaded[1] < RELOAD_S:
            return
        self._loaded = (what, now)
        self.load(view)

    def range_changed(self) -> None:
        self.pulse.draw()

    def action_next_group(self) -> None:
        self.group = GROUPS[(GROUPS.index(self.group) + 1) % len(GROUPS)]
        self.table.clear()  # a new grouping is a new set of rows; the refresh after it goes by key
        self.pulse.draw()

    @work(group="costs", exclusive=True, exit_on_error=False)
    async def load(self, view: View) -> None:
        label, seconds = self.pulse.time_range
        since = view.now - seconds
        rows = await self.pulse.backend.breakdown(self.group, since=since, until=view.now)
        patterns = await self.pulse.backend.usage_patterns(self.group, since=since, until=view.now)
        spend_unknown = await self.pulse.backend.spend_unknown(since)
        total_cost = sum(r.cost_usd or 0.0 for r in rows)
        total_req = sum(r.requests for r in rows)
        unknown = sum(r.unknown_price_count for r in rows)
        table_rows = []
        for r in sorted(rows, key=lambda r: -(r.cost_usd or 0.0)):
            key = r.key if r.key not in (None, "") else "(none)"
            if not fmt.matches(view.filter, key):
                continue
            table_rows.append(
                (
                    key,
                    (
                        Text(key),
                        Text(fmt.count(r.requests), justify="right"),
                        Text(f"{fmt.count(r.input_tokens)}/{fmt.count(r.output_tokens)}", justify="right"),
                        Text(_cost_cell(r), justify="right", style="yellow" if _price_unknown(r) else ""),
                        Text(fmt.pct((r.cost_usd or 0.0) / total_cost if total_cost else None), justify="right"),
                        Text(
                            fmt.count(r.unknown_price_count) if r.unknown_price_count else "",
                            style="yellow",
                            justify="right",
                        ),
                        Text(fmt.pct(r.success_rate, 1), justify="right"),
                        Text(fine_money(r.cost_per_request), justify="right"),
                        Text(
                            fmt.count(round(r.tokens_per_request)) if r.tokens_per_request is not None else fmt.DASH,
                            justify="right",
                        ),
                        Text(fine_money(r.usd_per_1k_tokens), justify="right"),
                        Text(fmt.ms(r.avg_latency_ms), justify="right"),
                        Text(fmt.approx_ms(r.p50_ms, r.p95_exact), justify="right"),
                        Text(fmt.approx_ms(r.p95_ms, r.p95_exact), justify="right"),
                    ),
                )
            )
        sync_rows(self.table, table_rows)
        self.query_one("#costs-title", Static).update(
            fmt.for_terminal(
                Text.assemble(
                    ("Costs ", "bold"), f"by {self.group}, last {label}", ("   b: group by   t: range", "dim")
                )
            )
        )
        # A provider whose usage report counts but is not known is left out: the total is a lower bound.
        at_least = "≥" if spend_unknown else ""
        total = Text(
            f"Total {at_least}{fmt.count(total_req)} {fmt.plural(total_req, 'request')}, "
            f"{at_least}{fmt.money(total_cost)}"
        )
        for pid, reason in spend_unknown.items():
            total.append(f"\n⚠ {pid} spend unknown, not in the figures: {reason}", style="yellow")
        if unknown:
            total.append(
                f"  ⚠ {fmt.count(unknown)} {fmt.plural(unknown, 'request')} with unknown price (not in the total)",
                style="yellow",
            )
        self.query_one("#costs-total", Static).update(fmt.for_terminal(total))
        self.draw_patterns(patterns, view)

    def draw_patterns(self, patterns: Patterns, view: View) -> None:
        trends = [t for t in patterns.trends if fmt.matches(view.filter, t.key or "(none)")][:CHART_GROUPS]
        days = trends[0].days if trends else []
        span = f"{fmt.day(days[0])} → {fmt.day(days[-1])}, " if days else ""
        top = max((c for t in trends for c in t.cost_usd), default=0.0)
        self.query_one("#costs-trend-title", Static).update(
            fmt.for_terminal(
                Text.assemble(
                    ("Cost per day ", "bold"),
                    f"by {self.group} ({span}UTC days)",
                    (f"   one scale for every row: full column = {fmt.money(top)}/day", "dim"),
                )
            )
        )
        self.query_one("#costs-trend", ColumnChart).show(
            [_trend_series(t) for t in trends], [fmt.day(d)[-2:] for d in days]
        )
        hours = patterns.by_hour
        busiest = sorted((h for h in hours if h.requests), key=lambda h: -h.requests)[:3]
        self.query_one("#costs-hours-title", Static).update(
            fmt.for_terminal(
                Text.assemble(
                    ("Requests by hour of day ", "bold"),
                    f"({patterns.timezone}, 00 → 23)",
                    (
                        "   busiest: "
                        + (", ".join(f"{h.slot:02d}:00 {fmt.count(h.requests)}" for h in busiest) or fmt.DASH),
                        "dim",
                    ),
                )
            )
        )
        series: list[tuple[str, Sequence[float], str]] = [
            (
                "requests",
                [float(h.requests) for h in hours],
                f"peak {fmt.count(max((h.requests for h in hours), default=0))}",
            )
        ]
        self.query_one("#costs-hours", ColumnChart).show(
            series if any(h.requests for h in hours) else [], [f"{h.slot:02d}" for h in hours]
        )
        self.query_one("#costs-usage", Static).update(fmt.for_terminal(usage_text(patterns)))


def usage_text(patterns: Patterns) -> Text:
    """By weekday, the most used models and the fastest growing (second half of the range against the first)."""
    text = Text()
    if not any(d.requests for d in patterns.by_weekday):
        return text
    text.append("By weekday  ", style="bold")
    text.append("  ".join(f"{WEEKDAYS[d.slot]} {fmt.count(d.requests)}" for d in patterns.by_weekday))
    if patterns.most_used:
        text.append("\nMost used   ", style="bold")
        text.append(", ".join(f"{m.model} {fmt.count(m.requests)}" for m in patterns.most_used))
    if patterns.fastest_growing:
        text.append("\nGrowing     ", style="bold")
        text.append(
            ", ".join(
                f"{m.model} {'new' if m.growth is None else f'+{m.growth:.0%}'} "
                f"({fmt.count(m.first_half)} → {fmt.count(m.second_half)})"
                for m in patterns.fastest_growing
            )
        )
    return text


def _trend_series(trend: Trend) -> tuple[str, Sequence[float], str]:
    return (trend.key or "(none)", trend.cost_usd, f"{fmt.money(sum(trend.cost_usd))} total")


def fine_money(usd: float | None) -> str:
    """A per-request or per-1k-token price: small amounts keep four decimals ($0.0023), not $0.00."""
    if usd is None:
        return fmt.DASH
    return f"${usd:.4f}" if abs(usd) < 1 else fmt.money(usd)


def _price_unknown(row: GroupRow) -> bool:
    """Every request of the row has an unknown price: its cost is not known, not $0."""
    return bool(row.requests) and row.unknown_price_count >= row.requests


def _cost_cell(row: GroupRow) -> str:
    if _price_unknown(row):
        return "price unknown"
    if row.cost_usd and 0 < row.cost_usd < 0.005:
        return "<$0.01"  # cheap, not free
    return fmt.money(row.cost_usd)
