"""Measured traffic: the share on the new model, and the before/after comparison of the two sides.

Progress is measured, not declared: the share of requests (and of tokens) in a trailing window that went
to the target model, out of old + new. The pure functions work on `ModelTraffic` rows; the two queries at
the end read those rows from the usage roll-ups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from llmpulse.core.migration.config import MigrationConfig
from llmpulse.core.migration.matching import model_side
from llmpulse.core.store import Store
from llmpulse.core.usage.queries import breakdown, daily_by


@dataclass(frozen=True)
class ModelTraffic:
    """What usage says about one model over some window (from the usage breakdown by model)."""

    model: str
    requests: int
    tokens: int
    cost_usd: float | None = None
    unknown_price_count: int = 0
    success_rate: float | None = None
    p95_ms: float | None = None


@dataclass(frozen=True)
class TrafficSplit:
    old_requests: int
    new_requests: int
    old_tokens: int
    new_tokens: int

    @property
    def share_requests(self) -> float | None:
        total = self.old_requests + self.new_requests
        return self.new_requests / total if total else None

    @property
    def share_tokens(self) -> float | None:
        total = self.old_tokens + self.new_tokens
        return self.new_tokens / total if total else None


def traffic_split(rows: Iterable[ModelTraffic], cfg: MigrationConfig) -> TrafficSplit:
    old_r = new_r = old_t = new_t = 0
    for row in rows:
        side = model_side(row.model, cfg)
        if side == "new":
            new_r += row.requests
            new_t += row.tokens
        elif side == "old":
            old_r += row.requests
            old_t += row.tokens
    return TrafficSplit(old_r, new_r, old_t, new_t)


@dataclass(frozen=True)
class SideStats:
    """One side of the before/after comparison: the old models together, or the new one."""

    requests: int
    tokens: int
    cost_usd: float | None
    cost_per_1k_tokens: float | None  # None when no token or no known price
    p95_ms: float | None
    error_rate: float | None
    unknown_price_count: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "cost_per_1k_tokens": self.cost_per_1k_tokens,
            "p95_ms": self.p95_ms,
            "error_rate": self.error_rate,
            "unknown_price_count": self.unknown_price_count,
        }


def side_stats(rows: Sequence[ModelTraffic]) -> SideStats | None:
    """Combine several models into one side. None when the side had no traffic.

    A roll-up cannot split tokens into priced and unpriced, so the cost per 1k tokens includes the
    unpriced requests' tokens (reported beside it as unknown_price_count); a side whose every request had
    an unknown price has no cost figure at all.
    p95 of several models is approximated by the request-weighted mean of their p95s (exact per model,
    close enough across a few models to compare old against new).
    """
    requests = sum(r.requests for r in rows)
    if requests == 0:
        return None
    tokens = sum(r.tokens for r in rows)
    unknown = sum(r.unknown_price_count for r in rows)
    costs = [r.cost_usd for r in rows if r.cost_usd is not None]
    cost = sum(costs) if costs else None
    if cost is not None and unknown >= requests:
        cost = None
    cost_per_1k = cost / tokens * 1000.0 if cost is not None and tokens else None
    with_p95 = [(r.p95_ms, r.requests) for r in rows if r.p95_ms is not None and r.requests]
    weight = sum(n for _, n in with_p95)
    p95 = sum(ms * n for ms, n in with_p95) / weight if weight else None
    with_sr = [(r.success_rate, r.requests) for r in rows if r.success_rate is not None and r.requests]
    sr_weight = sum(n for _, n in with_sr)
    error_rate = (sum((1.0 - sr) * n for sr, n in with_sr) / sr_weight) if sr_weight else None
    return SideStats(
        requests=requests,
        tokens=tokens,
        cost_usd=cost,
        cost_per_1k_tokens=cost_per_1k,
        p95_ms=p95,
        error_rate=error_rate,
        unknown_price_count=unknown,
    )


def compare_sides(rows: Iterable[ModelTraffic], cfg: MigrationConfig) -> tuple[SideStats | None, SideStats | None]:
    """(before, after): the old models against the new one."""
    old, new = [], []
    for row in rows:
        side = model_side(row.model, cfg)
        if side == "old":
            old.append(row)
        elif side == "new":
            new.append(row)
    return side_stats(old), side_stats(new)


async def window_traffic(store: Store, since: float, until: float) -> list[ModelTraffic]:
    """Per-model traffic in [since, until) from the usage roll-ups (issue 3's breakdown by model)."""
    # Histogram p95s (latency=False): the side p95 is a request-weighted mean of them anyway, and the
    # dashboard measures every migration on every refresh — exact percentiles would scan the raw calls.
    rows = await breakdown(store, "model", since, until, latency=False)
    return [
        ModelTraffic(
            model=str(r.key),
            requests=int(r.requests or 0),
            tokens=r.tokens,
            cost_usd=r.cost_usd,
            unknown_price_count=int(r.unknown_price_count or 0),
            success_rate=r.success_rate,
            p95_ms=r.p95_ms,
        )
        for r in rows
    ]


async def daily_shares(store: Store, cfg: MigrationConfig, since: float, until: float) -> list[tuple[float, float]]:
    """[(day_start_ts, share of requests on the new model)] for each day with old or new traffic."""
    per_day: dict[float, list[int]] = {}
    for day, key, requests, _, _ in await daily_by(store, "model", since, until):
        side = model_side(str(key), cfg)
        if side is None:
            continue
        counts = per_day.setdefault(float(day), [0, 0])
        counts[1 if side == "new" else 0] += int(requests or 0)
    return sorted((ts, new / (old + new)) for ts, (old, new) in per_day.items() if old + new)
