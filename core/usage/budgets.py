"""Budgets: for each `[[budgets]]` entry, what was spent this calendar period (in the `[budget]` time
zone), how fast it burns, what the period will end at, and when the limit will be hit at this pace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmpulse.core.store import Store
from llmpulse.core.usage.config import BudgetConfig, UsageApiConfig, UsageConfig
from llmpulse.core.usage.queries import period_end, period_start, total
from llmpulse.core.usage.report_gaps import report_gaps

MIN_ELAPSED_S = 3600.0  # burn rate over less than an hour of a period is noise: use at least an hour


@dataclass
class BudgetStatus:
    name: str  # "total/month", "provider:openai/day"
    scope: str
    period: str
    limit_usd: float
    spent_usd: float  # partial: what is known, a lower bound
    utilization: float  # spent / limit (partial: a lower bound)
    burn_rate_usd_per_day: float | None  # None: partial, the pace is not known
    projected_usd: float | None  # at period end, at the current burn rate; None: partial, not known
    exhaust_at: float | None  # when the limit is reached at this pace; None: not this period (or not known)
    period_start: float
    period_end: float
    warn_at: list[float] = field(default_factory=list)
    crossed: list[float] = field(default_factory=list)
    unknown_price_count: int = 0  # records in scope whose cost is unknown (not in spent_usd)
    # Providers in scope whose budgets count their own usage report while llmpulse does not know it
    # (never pulled, last pull failed, report too short), each with why: spent_usd leaves them out.
    spend_unknown: dict[str, str] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """Some of the spend in scope is unknown: spent and utilization are lower bounds, no projection."""
        return bool(self.spend_unknown)

    @property
    def exceeded(self) -> bool:
        return self.spent_usd >= self.limit_usd  # a lower bound past the limit is past it too

    @property
    def projected_to_exceed(self) -> bool | None:
        if self.exceeded:
            return False
        return None if self.projected_usd is None else self.projected_usd > self.limit_usd

    def to_json(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "partial": self.partial,
            "exceeded": self.exceeded,
            "projected_to_exceed": self.projected_to_exceed,
        }


def project(
    budget: BudgetConfig,
    spent: float,
    start: float,
    end: float,
    now: float,
    unknown: int = 0,
    spend_unknown: dict[str, str] | None = None,
) -> BudgetStatus:
    """`spend_unknown`: providers in scope whose spend is not known (see BudgetStatus): `spent` is then a
    lower bound, and no pace, projection or exhaustion time is claimed from it."""
    partial = bool(spend_unknown)
    elapsed = max(MIN_ELAPSED_S, now - start)
    burn_per_s = spent / elapsed
    projected = spent + burn_per_s * max(0.0, end - now)
    if spent >= budget.limit_usd:
        exhaust_at: float | None = now
    elif burn_per_s > 0 and not partial:
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
        burn_rate_usd_per_day=None if partial else burn_per_s * 86400.0,
        projected_usd=None if partial else projected,
        exhaust_at=exhaust_at,
        period_start=start,
        period_end=end,
        warn_at=list(budget.warn_at),
        crossed=[w for w in budget.warn_at if utilization >= w],
        unknown_price_count=unknown,
        spend_unknown=dict(spend_unknown or {}),
    )


def counts_report_of(budget: BudgetConfig, provider_id: str, cfg: UsageApiConfig) -> bool:
    """Whether this budget's scope takes in `provider_id`'s usage report (queries.usage_api_deltas): the
    total and a model always (any model may be the provider's), the provider itself, a department or
    agent its [usage_api.<provider>] projects or API keys map to. A user, task type or category never:
    a report knows none, so that provider's part there is nothing by construction, not unknown."""
    dim, key = budget.dim, budget.key
    if dim in ("total", "model"):
        return True
    if dim == "provider":
        return key == provider_id
    if dim in ("department", "agent"):
        entry = cfg.providers.get(provider_id)
        mapped = [*entry.projects.values(), *entry.api_keys.values()] if entry is not None else []
        return any(getattr(who, dim) == key for who in mapped)
    return False


async def budget_status(
    store: Store,
    budget: BudgetConfig,
    tz: Any,
    now: float,
    usage_api: frozenset[str] = frozenset(),
    usage_api_cfg: UsageApiConfig | None = None,
) -> BudgetStatus:
    """`usage_api`: providers whose budgets count their own usage report ([usage_api.<id>] budgets =
    "usage_api") instead of their recorded calls — the report's cost in this budget's scope replaces the
    recorded calls' (queries.usage_api_deltas, as in every breakdown), so the same traffic counts once.
    A report bucket counts in the period its start falls in. With `usage_api_cfg`, a report in scope
    llmpulse does not know for the period (report_gaps) makes the budget partial."""
    start = period_start(now, budget.period, tz)
    end = period_end(start, budget.period, tz)
    row = await total(store, start, now, budget.dim, budget.key, usage_api=usage_api)
    unknown: dict[str, str] = {}
    if usage_api_cfg is not None:
        for gap in await report_gaps(store, usage_api_cfg, start):
            if counts_report_of(budget, gap.provider_id, usage_api_cfg):
                unknown[gap.provider_id] = gap.reason
    return project(budget, row.cost_usd, start, end, now, row.unknown_price_count, unknown)


async def budget_statuses(store: Store, usage: UsageConfig | None, now: float) -> list[BudgetStatus]:
    if usage is None:
        return []
    sources = usage.usage_api.usage_api_budgets
    return [await budget_status(store, b, usage.tz, now, sources, usage.usage_api) for b in usage.budgets]
