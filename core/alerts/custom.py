"""Your own alert rules: a threshold on any figure llmpulse keeps, for one scope, over a window.

```toml
[[alerts.rules]]
name = "marketing-spend-hour"
metric = "cost_usd"              # cost_usd requests tokens input_tokens output_tokens errors error_rate p95_latency_ms fallbacks
scope = "department:Marketing"   # total, or provider: model: department: agent: user: task_type: category:
window = "1h"
above = 50                       # or below = ...
severity = "warning"
```

The figures come from the usage roll-ups (the same numbers as `report`), read by the collector once
per round; the conditions then go through the same lifecycle as the built-in rules (dedupe, ack,
silence, escalation, notices). A rate or a p95 over fewer than `[alerts] min_requests` calls says
nothing and fires nothing — but neither does it resolve an open alert: the rule is then not judged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmpulse.core.alerts import SEVERITIES
from llmpulse.core.durations import format_duration
from llmpulse.core.validate import ConfigError, Section
from llmpulse.core.vocabulary import Severity

if TYPE_CHECKING:  # the config parses rules without loading the usage queries (and the price table)
    from llmpulse.core.store import Store
    from llmpulse.core.usage.queries import GroupRow

METRICS = (
    "cost_usd",
    "requests",
    "tokens",
    "input_tokens",
    "output_tokens",
    "errors",
    "error_rate",
    "p95_latency_ms",
    "fallbacks",
)
RATE_METRICS = frozenset({"error_rate", "p95_latency_ms"})  # need min_requests calls to mean anything
SCOPE_DIMS = ("provider", "model", "department", "agent", "user", "task_type", "category")
MAX_WINDOW_S = 31 * 86400.0


@dataclass(frozen=True)
class CustomRule:
    name: str
    metric: str
    dim: str  # a roll-up dimension: total, provider, model, ...
    key: str  # "*" for total
    window: float  # seconds
    above: float | None
    below: float | None
    severity: Severity

    @property
    def scope(self) -> str:
        return "total" if self.dim == "total" else f"{self.dim}:{self.key}"


def parse_rules(sections: Sequence[Section], builtin: Iterable[str]) -> tuple[CustomRule, ...]:
    """Read `[[alerts.rules]]`; ConfigError naming the first wrong key."""
    taken = set(builtin)
    rules: list[CustomRule] = []
    for sec in sections:
        name = sec.string("name")
        if not name.strip() or len(name) > 80:
            raise sec.error("name", name, "a rule name of 1 to 80 characters")
        if name in taken:
            raise sec.error("name", name, "a name no built-in or other rule has")
        taken.add(name)
        metric = sec.string("metric", choices=METRICS)
        scope = sec.string("scope", "total")
        if scope == "total":
            dim, key = "total", "*"
        else:
            dim, _, key = scope.partition(":")
            if dim not in SCOPE_DIMS or not key:
                raise sec.error("scope", scope, "total, or one of " + ", ".join(f"{d}:NAME" for d in SCOPE_DIMS))
        window = sec.duration("window", 3600.0, minimum=60.0, maximum=MAX_WINDOW_S)
        above = sec.number("above", None, minimum=None)
        below = sec.number("below", None, minimum=None)
        if (above is None) == (below is None):
            raise ConfigError(sec.source, sec.key("above"), "both or neither of above/below", "exactly one of them")
        for bound_name, bound in (("above", above), ("below", below)):
            if bound is not None and not math.isfinite(bound):
                raise sec.error(bound_name, bound, "a finite number")
        if metric == "error_rate" and not 0.0 <= (above if above is not None else below) <= 1.0:  # type: ignore[operator]
            raise sec.error("above" if above is not None else "below", above or below, "a rate from 0 to 1 (0.05 = 5%)")
        severity = sec.string("severity", "warning", choices=SEVERITIES)
        sec.done()
        rules.append(CustomRule(name, metric, dim, key, window, above, below, severity))
    return tuple(rules)


def figure(rule: CustomRule, row: GroupRow, min_requests: int) -> float | None:
    """The rule's metric from one group's totals; None when it cannot be judged (too few calls)."""
    if rule.metric in RATE_METRICS and row.requests < min_requests:
        return None
    match rule.metric:
        case "cost_usd":
            return row.cost_usd
        case "requests":
            return float(row.requests)
        case "tokens":
            return float(row.input_tokens + row.output_tokens)
        case "input_tokens":
            return float(row.input_tokens)
        case "output_tokens":
            return float(row.output_tokens)
        case "errors":
            return float(row.errors)
        case "error_rate":
            return row.errors / row.requests
        case "p95_latency_ms":
            return row.p95_ms
        case "fallbacks":
            return float(row.fallbacks)
    raise ValueError(f"unknown metric {rule.metric!r}")


async def custom_figures(
    store: Store, rules: Sequence[CustomRule], now: float, min_requests: int
) -> dict[str, float | None]:
    """Each rule's current figure (None: not judged this round). Read only."""
    from llmpulse.core.usage.queries import total

    out: dict[str, float | None] = {}
    for rule in rules:
        row = await total(store, now - rule.window, now, rule.dim, rule.key, latency=rule.metric == "p95_latency_ms")
        out[rule.name] = figure(rule, row, min_requests)
    return out


def _show(metric: str, value: float) -> str:
    if metric == "cost_usd":
        return f"${value:,.2f}"
    if metric == "error_rate":
        return f"{value * 100:.1f}%"
    if metric == "p95_latency_ms":
        return f"{value:,.0f} ms"
    return f"{value:,.0f}"


def custom_conditions(rules: Sequence[CustomRule], figures: Mapping[str, float | None]) -> list[tuple[CustomRule, str]]:
    """(rule, message) for every rule whose figure crosses its bound now."""
    out: list[tuple[CustomRule, str]] = []
    for rule in rules:
        value = figures.get(rule.name)
        if value is None:
            continue
        if rule.above is not None and value > rule.above:
            bound = f"above {_show(rule.metric, rule.above)}"
        elif rule.below is not None and value < rule.below:
            bound = f"below {_show(rule.metric, rule.below)}"
        else:
            continue
        window = format_duration(rule.window)
        out.append(
            (rule, f"{rule.name}: {rule.metric} of {rule.scope} over {window} is {_show(rule.metric, value)}, {bound}")
        )
    return out


def judged(rules: Sequence[CustomRule], figures: Mapping[str, float | None] | None) -> set[str]:
    """The custom rules really judged this round: only their alerts may be auto-resolved."""
    if figures is None:
        return set()
    return {r.name for r in rules if figures.get(r.name) is not None}
