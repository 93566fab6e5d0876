"""Panel 2: cost against each budget — a bar, spent / limit and %, the projected period-end spend and
the day the budget runs out at the current burn rate; the price-unknown count when there is one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text

from llmpulse.tui import format as fmt
from llmpulse.tui.backend import BudgetStatus, Snapshot
from llmpulse.tui.panels.base import Panel, View


class CostsPanel(Panel[BudgetStatus]):
    number = 2
    title = "Cost vs budget"
    columns = (
        ("name", "Budget"),
        ("used", "Used"),
        ("spent", "Spent/limit"),
        ("projected", "Projected"),
        ("runs_out", "Runs out"),
    )
    # At 80 columns the names ("department:Engineering/month") and the bar pushed "Runs out" past the
    # edge: the name gives way (cut with "…") and a narrow box shows the percentage without its bar.
    flex_column = "name"
    flex_max = 32
    narrow_below = 90

    sort_by = {
        "name": lambda b: b.name.lower(),
        "used": lambda b: b.utilization,
        "spent": lambda b: b.spent_usd,
        "projected": lambda b: b.projected_usd,
        "runs_out": lambda b: b.exhaust_at,
    }

    def items(self, snapshot: Snapshot, view: View) -> list[BudgetStatus]:
        # The budget closest to (or furthest past) its limit first.
        shown = [b for b in snapshot.budgets if fmt.matches(view.filter, b.name, b.scope, b.period)]
        return sorted(shown, key=lambda b: -(b.utilization or 0.0))

    def key(self, b: BudgetStatus) -> str:
        return str(b.name)

    def cells(self, b: BudgetStatus, view: View) -> Sequence[Any]:
        projected_style = "bold red" if b.limit_usd and b.projected_usd > b.limit_usd else ""
        return (
            Text(b.name),
            Text.assemble(
                "" if self.narrow else fmt.budget_bar(b.utilization, 8),
                "" if self.narrow else " ",
                (f"{fmt.pct(b.utilization):>4}", fmt.usage_style(b.utilization)),
            ),
            Text(f"{fmt.money(b.spent_usd)}/{fmt.money(b.limit_usd)}", justify="right"),
            Text(fmt.money(b.projected_usd), style=projected_style, justify="right"),
            Text(fmt.day(b.exhaust_at, view.tz), style="bold") if b.exhaust_at else Text("—", style="dim"),
        )

    def subtitle(self, snapshot: Snapshot, view: View) -> str:
        unknown, period = unknown_price_count(snapshot)
        if not unknown:
            return ""
        # The period is said: the prices alert counts another one (24h) and both can be on screen.
        return f"⚠ {fmt.count(unknown)} {fmt.plural(unknown, 'request')}{period} with unknown price"


def unknown_price_count(snapshot: Snapshot) -> tuple[int, str]:
    """Requests we could not price, and the period counted (" this month" from the usage summary; the
    budgets' own periods, unsaid, as a fallback)."""
    usage = getattr(snapshot, "usage", None)
    if usage is not None and getattr(usage, "unknown_price_count", None) is not None:
        return int(usage.unknown_price_count), " this month"
    return max((b.unknown_price_count for b in snapshot.budgets), default=0), ""
