"""What the traffic would have cost elsewhere, and suggestions with numbers.

- Reference cost: the same tokens priced on a reference model (`[prices] reference_model`, default the
  priciest model in use), so "what did local models and cheaper routes save us" has a figure — the
  seeds' "hypothetical Claude cost". Traffic whose own price is unknown is left out of both sides (its
  actual cost is not $0, so pricing it on the reference would count it as saved); how many requests
  were left out is part of the result.
- Suggestions: for each model that cost real money in the range, the cheapest model in use elsewhere
  that would have cost much less for the same tokens; and providers whose p95 latency is several times
  the fastest provider's. Prices from the same offline table as everything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.queries import GroupRow, breakdown

MIN_SAVING = 0.3  # suggest a cheaper model only when it saves at least this share
MIN_COST_USD = 0.01  # ...and the model cost at least this much in the range
SLOW_RATIO = 2.0  # a provider this many times slower (p95) than the fastest is worth a line
MIN_REQUESTS = 20  # latency comparisons need this many requests behind the p95
MAX_EACH = 5  # at most this many cost lines and this many latency lines: the worst first


@dataclass
class Savings:
    reference: str | None  # "provider/model"
    actual_usd: float
    reference_usd: float | None  # the same tokens on the reference model
    saved_usd: float | None
    local_requests: int
    local_reference_usd: float | None  # what the local providers' tokens would have cost on the reference
    suggestions: list[str] = field(default_factory=list)
    left_out_requests: int = 0  # requests of a provider/model with unknown prices: not compared
    left_out_models: list[str] = field(default_factory=list)
    compared_requests: int = 0  # requests of known price (local ones included)
    days: float = 0.0  # the period's length in days

    @property
    def saved_pct(self) -> float | None:
        """What was saved as a share of what the reference would have cost."""
        if self.saved_usd is None or not self.reference_usd:
            return None
        return self.saved_usd / self.reference_usd

    @property
    def remote_requests(self) -> int:
        return self.compared_requests - self.local_requests

    @property
    def cost_per_day(self) -> float | None:
        return self.actual_usd / self.days if self.days > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "saved_pct": self.saved_pct,
            "remote_requests": self.remote_requests,
            "cost_per_day": self.cost_per_day,
        }


def _split(key: str) -> tuple[str, str]:
    provider, _, model = key.partition("/")
    return provider, model


def _price(pricing: Pricing, ref: str, g: GroupRow) -> float | None:
    """A group's tokens priced on another model, as that many requests of the average size (priced as
    one giant request, long-context price tiers would kick in that no real request reached)."""
    provider, model = _split(ref)
    n = max(1, g.requests)
    one = pricing.cost(provider, model, g.input_tokens // n, g.output_tokens // n, g.cache_read_tokens // n, 0)
    return None if one is None else one * n


def priciest(pricing: Pricing, groups: list[GroupRow]) -> str | None:
    """The model in use with the highest price for a typical mix (1M in + 1M out)."""
    best, best_price = None, -1.0
    for g in groups:
        provider, model = _split(g.key)
        if provider in pricing.local:
            continue
        price = pricing.cost(provider, model, 1_000_000, 1_000_000)
        if price is not None and price > best_price:
            best, best_price = g.key, price
    return best


async def savings_report(store: Store, pricing: Pricing, since: float, until: float, window_label: str) -> Savings:
    groups = await breakdown(store, "provider_model", since, until, latency=False)
    reference = pricing.prices.reference_model or priciest(pricing, groups)
    # Only traffic with a known actual cost can be compared: an unknown price is not a $0 cost.
    compared = [g for g in groups if not g.unknown_price_count]
    left_out = [g for g in groups if g.unknown_price_count]
    actual = sum(g.cost_usd for g in compared)
    ref_total, local_requests, local_ref = (0.0 if reference else None), 0, (0.0 if reference else None)
    for g in compared:
        provider, _ = _split(g.key)
        priced = _price(pricing, reference, g) if reference else None
        if priced is not None and ref_total is not None:
            ref_total += priced
        if provider in pricing.local:
            local_requests += g.requests
            if priced is not None and local_ref is not None:
                local_ref += priced
    result = Savings(
        reference=reference,
        actual_usd=actual,
        reference_usd=ref_total,
        saved_usd=None if ref_total is None else ref_total - actual,
        local_requests=local_requests,
        local_reference_usd=local_ref,
        left_out_requests=sum(g.requests for g in left_out),
        left_out_models=sorted(g.key for g in left_out),
        compared_requests=sum(g.requests for g in compared),
        days=(until - since) / 86400.0,
    )
    result.suggestions = suggestions(pricing, groups, await breakdown(store, "provider", since, until), window_label)
    return result


def suggestions(pricing: Pricing, models: list[GroupRow], providers: list[GroupRow], window: str) -> list[str]:
    out: list[str] = []
    candidates = [g.key for g in models if _split(g.key)[0] not in pricing.local]
    for g in sorted(models, key=lambda g: -g.cost_usd):
        if g.cost_usd < MIN_COST_USD or _split(g.key)[0] in pricing.local:
            continue
        best, best_cost = None, None
        for other in candidates:
            if other == g.key:
                continue
            cost = _price(pricing, other, g)
            if cost is not None and (best_cost is None or cost < best_cost):
                best, best_cost = other, cost
        if best is not None and best_cost is not None and best_cost <= g.cost_usd * (1 - MIN_SAVING):
            saving = 1 - best_cost / g.cost_usd
            if sum(1 for line in out if " cost $" in line) >= MAX_EACH:
                break
            out.append(
                f"{g.key} cost ${g.cost_usd:,.2f} in {window}; the same tokens on {best} would cost "
                f"${best_cost:,.2f} ({saving:.0%} less)"
            )
    timed = [(p.p95_ms, p.key) for p in providers if p.p95_ms is not None and p.requests >= MIN_REQUESTS]
    if len(timed) >= 2:
        fastest_ms, fastest_key = min(timed, key=lambda t: t[0])
        for p95_ms, key in sorted(timed, key=lambda t: -t[0])[:MAX_EACH]:
            ratio = p95_ms / fastest_ms if fastest_ms else 0
            if ratio >= SLOW_RATIO:
                out.append(
                    f"{key} p95 {p95_ms / 1000:.1f} s, {ratio:.0f}x the fastest provider "
                    f"({fastest_key}, {fastest_ms / 1000:.1f} s)"
                )
    return out
