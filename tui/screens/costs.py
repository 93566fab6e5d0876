"""Costs grouped by provider, model, department, agent or user over 1h / 24h / 7d / 30d (`b` changes the
grouping, `t` the range). Figures come from the usage roll-ups, so this stays fast on millions of records."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Footer, Static

from llmpulse.tui import format as fmt
from llmpulse.tui.backend import GroupRow, Snapshot
from llmpulse.tui.header import HeaderLine
from llmpulse.tui.panels.base import View
from llmpulse.tui.screens.base import LiveScreen
from llmpulse.tui.table_sync import sync_rows
from llmpulse.tui.widgets import PanelTable

GROUPS = ("provider", "model", "department", "agent", "user")


class CostsScreen(LiveScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="costs.back", tooltip="Back to the dashboard"),
        Binding(
            "b", "next_group", "Group by", id="costs.group", tooltip="Group by provider, model, department, agent, user"
        ),
    ]

    def __init__(self, group: str = "provider") -> None:
        super().__init__()
        self.group = group
        self.table = PanelTable(id="costs-table")

    def compose(self) -> ComposeResult:
        yield HeaderLine()
        with Vertical(id="costs"):
            yield Static(id="costs-title")
            yield self.table
            yield Static(id="costs-total")
        yield Footer()

    def on_mount(self) -> None:
        for key, label in (
            ("key", "Group"),
            ("requests", "Requests"),
            ("input", "Input tok"),
            ("output", "Output tok"),
            ("cost", "Cost"),
            ("share", "Share"),
            ("unknown", "Unpriced"),
            ("success", "Success"),
            ("p95", "p95"),
        ):
            self.table.add_column(label, key=key)
        self.table.focus()
        self.pulse.draw()

    def fill(self, snapshot: Snapshot, view: View) -> None:
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
        rows = await self.pulse.backend.breakdown(self.group, since=view.now - seconds, until=view.now)
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
                        Text(fmt.count(r.input_tokens), justify="right"),
                        Text(fmt.count(r.output_tokens), justify="right"),
                        Text(_cost_cell(r), justify="right", style="yellow" if _price_unknown(r) else ""),
                        Text(fmt.pct((r.cost_usd or 0.0) / total_cost if total_cost else None), justify="right"),
                        Text(
                            fmt.count(r.unknown_price_count) if r.unknown_price_count else "",
                            style="yellow",
                            justify="right",
                        ),
                        Text(fmt.pct(r.success_rate, 1), justify="right"),
                        Text(fmt.ms(r.p95_ms), justify="right"),
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
        total = Text(f"Total {fmt.count(total_req)} requests, {fmt.money(total_cost)}")
        if unknown:
            total.append(f"  ⚠ {fmt.count(unknown)} requests with unknown price (not in the total)", style="yellow")
        self.query_one("#costs-total", Static).update(fmt.for_terminal(total))


def _price_unknown(row: GroupRow) -> bool:
    """Every request of the row has an unknown price: its cost is not known, not $0."""
    return bool(row.requests) and row.unknown_price_count >= row.requests


def _cost_cell(row: GroupRow) -> str:
    if _price_unknown(row):
        return "price unknown"
    if row.cost_usd and 0 < row.cost_usd < 0.005:
        return "<$0.01"  # cheap, not free
    return fmt.money(row.cost_usd)
