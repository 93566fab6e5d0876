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
        "projected": lambda b: b.projected_usd if b.projected_usd is not None else -1.0,
        "runs_out": lambda b: b.exhaust_at,
    }

    def items(self, snapshot: Snapshot, view: View) -> list[BudgetStatus]:
        # The budget closest to (or furthest past) its limit first.
        shown = [b for b in snapshot.budgets if fmt.matches(view.filter, b.name, b.scope, b.period)]
        return sorted(shown, key=lambda b: -(b.utilization or 0.0))

    def key(self, b: BudgetStatus) -> str:
        return str(b.name)

    def cells(self, b: BudgetStatus, view: View) -> Sequence[Any]:
        projected = b.projected_usd
        projected_style = "bold red" if b.limit_usd and projected is not None and projected > b.limit_usd else ""
        # Partial (a usage report in scope not known): what is known is a lower bound, "≥"; the pace,
        # and so the projection and the day it runs out, are not known: "?".
        at_least = "≥" if b.spend_unknown else ""
        if b.spend_unknown and not b.exceeded:
            runs_out = Text("?", style="bold", justify="center")
        elif b.exhaust_at:
            runs_out = Text(fmt.day(b.exhaust_at, view.tz), style="bold")
        else:
            runs_out = Text("—", style="dim")
        return (
            Text(b.name),
            Text.assemble(
                "" if self.narrow else fmt.budget_bar(b.utilization, 8),
                "" if self.narrow else " ",
                (f"{at_least + fmt.pct(b.utilization):>4}", fmt.usage_style(b.utilization)),
            ),
            Text(f"{at_least}{fmt.money(b.spent_usd)}/{fmt.money(b.limit_usd)}", justify="right"),
            Text("?" if projected is None else fmt.money(projected), style=projected_style, justify="right"),
            runs_out,
        )

    def subtitle(self, snapshot: Snapshot, view: View) -> str:
        notes = []
        gaps = unknown_spend(snapshot)
        if gaps:
            # Which provider's spend is not known, and why (the budgets marked ≥ leave it out).
            pid, reason = next(iter(gaps.items()))
            more = f" (+{len(gaps) - 1})" if len(gaps) > 1 else ""
            notes.append(f"⚠ {pid} spend unknown: {reason}{more}")
        unknown, period = unknown_price_count(snapshot)
        if unknown:
            # The period is said: the prices alert counts another one (24h) and both can be on screen.
            notes.append(f"⚠ {fmt.count(unknown)} {fmt.plural(unknown, 'request')}{period} with unknown price")
        return "  ".join(notes)


def unknown_spend(snapshot: Snapshot) -> dict[str, str]:
    """Providers whose spend is not known (usage report not pulled), from the budgets and this month."""
    out: dict[str, str] = {}
    for b in snapshot.budgets:
        out.update(getattr(b, "spend_unknown", None) or {})
    usage = getattr(snapshot, "usage", None)
    out.update(getattr(usage, "spend_unknown", None) or {})
    return out


def unknown_price_count(snapshot: Snapshot) -> tuple[int, str]:
    """Requests we could not price, and the period counted (" this month" from the usage summary; the
    budgets' own periods, unsaid, as a fallback)."""
    usage = getattr(snapshot, "usage", None)
    if usage is not None and getattr(usage, "unknown_price_count", None) is not None:
        return int(usage.unknown_price_count), " this month"
    return max((b.unknown_price_count for b in snapshot.budgets), default=0), ""
