"""`[budget]`, `[[budgets]]` and `[prices]`: what spend is allowed, and what a token costs when the price
table is not the whole truth (negotiated rates)."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from llmpulse.core.validate import Section

SCOPE_KINDS = ("provider", "model", "department", "agent", "user", "task_type", "category")
PERIODS = ("day", "week", "month")
MAX_WARN_FRACTION = 3.0  # a warning at 300% of a budget is already late; above, it is a percentage typo


@dataclass(frozen=True)
class BudgetConfig:
    scope: str  # "total" or "<kind>:<value>"
    period: str  # day | week | month
    limit_usd: float
    warn_at: tuple[float, ...] = (0.8, 1.0)

    @property
    def name(self) -> str:
        return f"{self.scope}/{self.period}"

    @property
    def dim(self) -> str:
        return "total" if self.scope == "total" else self.scope.split(":", 1)[0]

    @property
    def key(self) -> str:
        return "*" if self.scope == "total" else self.scope.split(":", 1)[1]


@dataclass(frozen=True)
class PriceOverride:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


@dataclass(frozen=True)
class PriceConfig:
    auto_update: bool = False  # genai-prices may fetch newer prices; off: never touch the network
    overrides: dict[tuple[str, str], PriceOverride] = field(default_factory=dict)
    reference_model: str | None = None  # "provider/model" the savings report compares against


@dataclass(frozen=True)
class UsageConfig:
    timezone: str = "UTC"
    budgets: tuple[BudgetConfig, ...] = ()
    prices: PriceConfig = field(default_factory=PriceConfig)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _split_model_ref(sec: Section, name: str, value: str) -> tuple[str, str]:
    if "/" not in value or value.startswith("/") or value.endswith("/"):
        raise sec.error(name, value, 'a "provider/model" reference like "openai/gpt-4o"')
    provider, model = value.split("/", 1)
    return provider, model


def parse(root: Section) -> UsageConfig:
    budget = root.table("budget")
    timezone = budget.string("timezone", "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise budget.error("timezone", timezone, 'an IANA time zone like "UTC" or "Europe/Berlin"') from None
    budget.done()

    budgets: list[BudgetConfig] = []
    for sec in root.tables("budgets"):
        scope = sec.string("scope", "total")
        if scope != "total":
            kind, _, value = scope.partition(":")
            if kind not in SCOPE_KINDS or not value:
                raise sec.error(
                    "scope",
                    scope,
                    '"total" or "<kind>:<value>" with kind one of '
                    + ", ".join(SCOPE_KINDS)
                    + ' (e.g. "provider:openai")',
                )
        period = sec.string("period", "month", choices=PERIODS)
        limit = sec.number("limit_usd")
        if limit <= 0:
            raise sec.error("limit_usd", limit, "a number of dollars > 0")
        warn_at = sec.number_list("warn_at", [0.8, 1.0])
        if not warn_at or any(w <= 0 for w in warn_at) or warn_at != sorted(warn_at):
            raise sec.error("warn_at", warn_at, "ascending fractions of the limit > 0, like [0.8, 1.0]")
        if any(w > MAX_WARN_FRACTION for w in warn_at):
            # [80, 100] would warn at 80 times the budget: never.
            raise sec.error(
                "warn_at",
                warn_at,
                f"fractions of the limit (at most {MAX_WARN_FRACTION:g}), like [0.8, 1.0] for 80% and 100% — "
                "not percentages",
            )
        sec.done()
        b = BudgetConfig(scope, period, float(limit), tuple(warn_at))
        if any(o.name == b.name for o in budgets):
            raise sec.error("scope", scope, f"one budget per scope and period ({b.name} is already set)")
        budgets.append(b)

    prices = root.table("prices")
    auto_update = prices.boolean("auto_update", False)
    reference = prices.string("reference_model", None)
    if reference is not None:
        _split_model_ref(prices, "reference_model", reference)
    overrides: dict[tuple[str, str], PriceOverride] = {}
    over = prices.table("overrides")
    for ref in list(over.data):
        rate = over.table(ref)
        provider, model = _split_model_ref(over, ref, ref)
        overrides[(provider, model)] = PriceOverride(
            input=rate.number("input"),
            output=rate.number("output"),
            cache_read=rate.number("cache_read", None),
            cache_write=rate.number("cache_write", None),
        )
        rate.done()
    over.done()
    prices.done()
    return UsageConfig(timezone=timezone, budgets=tuple(budgets), prices=PriceConfig(auto_update, overrides, reference))
