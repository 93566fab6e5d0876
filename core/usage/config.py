"""`[budget]`, `[[budgets]]`, `[prices]` and `[usage_api]`: what spend is allowed, and what a token costs when the price
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


BUCKET_WIDTHS = {"1m": 60.0, "1h": 3600.0, "1d": 86400.0}
BUDGET_SOURCES = ("recorded", "usage_api")


@dataclass(frozen=True)
class Attribution:
    """Who a provider project or API key stands for."""

    department: str | None = None
    agent: str | None = None


@dataclass(frozen=True)
class ProviderUsageApi:
    """`[usage_api.<provider>]`: which source budgets count for this provider, and who its projects
    (OpenAI project ids, Anthropic workspace ids) and API key ids stand for."""

    budgets: str = "recorded"  # recorded: the calls llmpulse records; usage_api: the provider's own report
    projects: dict[str, Attribution] = field(default_factory=dict)
    api_keys: dict[str, Attribution] = field(default_factory=dict)


@dataclass(frozen=True)
class UsageApiConfig:
    """`[usage_api]`: pulling the providers' own usage reports with an admin key."""

    bucket_width: str = "1h"  # 1m | 1h | 1d
    backfill_days: int = 7  # how far back the first pull goes
    late_days: float = 2.0  # every pull fetches this far back again: providers fill buckets in late
    interval: float = 900.0  # seconds between pulls (the collector's slow timer)
    providers: dict[str, ProviderUsageApi] = field(default_factory=dict)

    def budget_source(self, provider_id: str) -> str:
        entry = self.providers.get(provider_id)
        return entry.budgets if entry is not None else "recorded"

    @property
    def usage_api_budgets(self) -> frozenset[str]:
        """Providers whose budgets count the provider's usage report instead of recorded calls."""
        return frozenset(pid for pid, p in self.providers.items() if p.budgets == "usage_api")


@dataclass(frozen=True)
class UsageConfig:
    timezone: str = "UTC"
    budgets: tuple[BudgetConfig, ...] = ()
    prices: PriceConfig = field(default_factory=PriceConfig)
    usage_api: UsageApiConfig = field(default_factory=UsageApiConfig)

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
        limit = sec.number("limit_usd", minimum=None)  # 0 and below: one message, "> 0"
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
    return UsageConfig(
        timezone=timezone,
        budgets=tuple(budgets),
        prices=PriceConfig(auto_update, overrides, reference),
        usage_api=_parse_usage_api(root),
    )


def _attributions(sec: Section) -> dict[str, Attribution]:
    out = {}
    for ident in list(sec.data):
        entry = sec.table(ident)
        out[ident] = Attribution(entry.string("department", None), entry.string("agent", None))
        entry.done()
    sec.done()
    return out


def _parse_usage_api(root: Section) -> UsageApiConfig:
    sec = root.table("usage_api")
    d = UsageApiConfig()
    width = sec.string("bucket_width", d.bucket_width, choices=BUCKET_WIDTHS)
    backfill = sec.integer("backfill_days", d.backfill_days, minimum=0)
    late = sec.number("late_days", d.late_days, minimum=0.0, maximum=31.0)
    interval = sec.duration("interval", d.interval, minimum=60.0)
    providers = {}
    for pid in [k for k, v in sec.data.items() if isinstance(v, dict)]:
        p = sec.table(pid)
        providers[pid] = ProviderUsageApi(
            budgets=p.string("budgets", "recorded", choices=BUDGET_SOURCES),
            projects=_attributions(p.table("projects")),
            api_keys=_attributions(p.table("api_keys")),
        )
        p.done()
    sec.done()
    return UsageApiConfig(width, backfill, float(late), interval, providers)
