"""Budgets: for each `[[budgets]]` entry, what was spent this calendar period (in the `[budget]` time
zone), how fast it burns, what the period will end at, and when the limit will be hit at this pace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmpulse.core.store import Store
from llmpulse.core.usage.config import BudgetConfig, UsageConfig
from llmpulse.core.usage.queries import period_end, period_start, total

MIN_ELAPSED_S = 3600.0  # burn rate over less than an hour of a period is noise: use at least an hour


@dataclass
class BudgetStatus:
    name: str  # "total/month", "provider:openai/day"
    scope: str
    period: str
    limit_usd: float
    spent_usd: float
    utilization: float  # spent / limit
    burn_rate_usd_per_day: float
    projected_usd: float  # at period end, at the current burn rate
    exhaust_at: float | None  # when the limit is reached at this pace; None: not this period
    period_start: float
    period_end: float
    warn_at: list[float] = field(default_factory=list)
    crossed: list[float] = field(default_factory=list)
    unknown_price_count: int = 0  # records in scope whose cost is unknown (not in spent_usd)

    @property
    def exceeded(self) -> bool:
        return self.spent_usd >= self.limit_usd

    @property
    def projected_to_exceed(self) -> bool:
        return not self.exceeded and self.projected_usd > self.limit_usd

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "exceeded": self.exceeded, "projected_to_exceed": self.projected_to_exceed}


def project(budget: BudgetConfig, spent: float, start: float, end: float, now: float, unknown: int = 0) -> BudgetStatus:
    elapsed = max(MIN_ELAPSED_S, now - start)
    burn_per_s = spent / elapsed
    projected = spent + burn_per_s * max(0.0, end - now)
    if spent >= budget.limit_usd:
        exhaust_at: float | None = now
    elif burn_per_s > 0:
        at = now + (budget.limit_usd - spent) / burn_per_s
        exhaust_at = at if at < end else None
    else:
        exhaust_at = None
    utilization = spent / budget.limit_usd
    return BudgetStatus(
        name=budget.name,
        scope=budget.scope,
        period=budget.period,
        limit_usd=budget.limit_usd,
        spent_usd=spent,
        utilization=utilization,
        burn_rate_usd_per_day=burn_per_s * 86400.0,
        projected_usd=projected,
        exhaust_at=exhaust_at,
        period_start=start,
        period_end=end,
        warn_at=list(budget.warn_at),
        crossed=[w for w in budget.warn_at if utilization >= w],
        unknown_price_count=unknown,
    )


async def budget_status(
    store: Store, budget: BudgetConfig, tz: Any, now: float, usage_api: frozenset[str] = frozenset()
) -> BudgetStatus:
    """`usage_api`: providers whose budgets count their own usage report ([usage_api.<id>] budgets =
    "usage_api") instead of their recorded calls — the report's cost in this budget's scope replaces the
    recorded calls' (queries.usage_api_deltas, as in every breakdown), so the same traffic counts once.
    A report bucket counts in the period its start falls in."""
    start = period_start(now, budget.period, tz)
    end = period_end(start, budget.period, tz)
    row = await total(store, start, now, budget.dim, budget.key, usage_api=usage_api)
    return project(budget, row.cost_usd, start, end, now, row.unknown_price_count)


async def budget_statuses(store: Store, usage: UsageConfig | None, now: float) -> list[BudgetStatus]:
    if usage is None:
        return []
    sources = usage.usage_api.usage_api_budgets
    return [await budget_status(store, b, usage.tz, now, sources) for b in usage.budgets]
