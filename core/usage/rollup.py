"""Ingest: price, store and roll up usage records in one transaction.

Every record is added to per-minute, per-hour and per-day roll-ups for each dimension (total, provider,
model, provider/model, department, agent, user, task_type, and fallback pairs). A batch is first
aggregated in memory, so a thousand records for the same hour cost one upsert, not a thousand.
Latency goes into fixed histogram buckets (columns l0..l15), which is how p95 comes from roll-ups.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Sequence

from core.store import Store
from core.usage.pricing import Pricing
from core.usage.records import UsageRecord

LATENCY_BOUNDS_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000, 30000)
BUCKETS = len(LATENCY_BOUNDS_MS) + 1
GRAINS = {"m": 60.0, "h": 3600.0, "d": 86400.0}
DIMS = ("total", "provider", "model", "provider_model", "department", "agent", "user", "task_type", "fallback")
COUNTERS = ("requests", "errors", "fallbacks", "input_tokens", "output_tokens", "cache_read_tokens",
            "cache_write_tokens", "cost_usd", "unknown_price") + tuple(f"l{i}" for i in range(BUCKETS))
UPSERT = (
    f"INSERT INTO usage_rollups (grain, start, dim, key, {', '.join(COUNTERS)}) "
    f"VALUES (?, ?, ?, ?, {', '.join('?' for _ in COUNTERS)}) "
    "ON CONFLICT (grain, dim, start, key) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in COUNTERS)
)
RECORD_COLUMNS = ("dedupe_key", "ts", "provider", "model", "input_tokens", "output_tokens", "cache_read_tokens",
                  "cache_write_tokens", "latency_ms", "status", "error_kind", "is_fallback", "fallback_from",
                  "department", "agent", "user", "task_type", "category", "endpoint", "request_id", "cost_usd")
INSERT_RECORD = (f"INSERT INTO usage_records ({', '.join(RECORD_COLUMNS)}) "
                 f"VALUES ({', '.join('?' for _ in RECORD_COLUMNS)})")


def latency_bucket(ms: float) -> int:
    return bisect.bisect_left(LATENCY_BOUNDS_MS, ms)


def dimension_keys(r: UsageRecord) -> list[tuple[str, str]]:
    keys = [("total", "*"), ("provider", r.provider), ("model", r.model),
            ("provider_model", f"{r.provider}/{r.model}")]
    for dim in ("department", "agent", "user", "task_type"):
        value = getattr(r, dim)
        if value:
            keys.append((dim, value))
    if r.is_fallback and r.fallback_from:
        keys.append(("fallback", f"{r.fallback_from}>{r.provider}"))
    return keys


def _counters(r: UsageRecord) -> list[float]:
    row = [1, int(r.status == "error"), int(r.is_fallback), r.input_tokens, r.output_tokens, r.cache_read_tokens,
           r.cache_write_tokens, r.cost_usd or 0.0, int(r.cost_usd is None)] + [0] * BUCKETS
    if r.latency_ms is not None:
        row[9 + latency_bucket(r.latency_ms)] = 1
    return row


def aggregate(records: Iterable[UsageRecord]) -> list[tuple]:
    """The roll-up upserts for a batch, summed in memory first."""
    sums: dict[tuple[str, float, str, str], list[float]] = {}
    for r in records:
        counters = _counters(r)
        for grain, width in GRAINS.items():
            start = r.ts - (r.ts % width)
            for dim, key in dimension_keys(r):
                acc = sums.get((grain, start, dim, key))
                if acc is None:
                    sums[(grain, start, dim, key)] = list(counters)
                else:
                    for i, v in enumerate(counters):
                        if v:
                            acc[i] += v
    return [(*k, *v) for k, v in sums.items()]


@dataclass
class IngestResult:
    stored: int
    duplicates: int
    unknown_price: int


async def ingest(store: Store, records: Sequence[UsageRecord], pricing: Pricing) -> IngestResult:
    """Price and store records, skipping ones already stored (same dedupe key), and roll them up —
    all in one transaction, so a crash leaves either the whole batch or none of it."""
    unique: dict[str, UsageRecord] = {}
    for r in records:
        unique.setdefault(r.dedupe_key(), r)
    for r in unique.values():
        if r.cost_usd is None:
            r.cost_usd = pricing.cost(r.provider, r.model, r.input_tokens, r.output_tokens,
                                      r.cache_read_tokens, r.cache_write_tokens)
    async with store.transaction() as conn:
        keys = list(unique)
        seen: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            async with conn.execute(f"SELECT dedupe_key FROM usage_records WHERE dedupe_key IN "
                                    f"({', '.join('?' for _ in chunk)})", chunk) as cur:
                seen.update(row[0] for row in await cur.fetchall())
        fresh = [r for k, r in unique.items() if k not in seen]
        await conn.executemany(INSERT_RECORD, [
            (r.dedupe_key(), r.ts, r.provider, r.model, r.input_tokens, r.output_tokens, r.cache_read_tokens,
             r.cache_write_tokens, r.latency_ms, r.status, r.error_kind, int(r.is_fallback), r.fallback_from,
             r.department, r.agent, r.user, r.task_type, r.category, r.endpoint, r.request_id, r.cost_usd)
            for r in fresh])
        await conn.executemany(UPSERT, aggregate(fresh))
    return IngestResult(stored=len(fresh), duplicates=len(records) - len(fresh),
                        unknown_price=sum(1 for r in fresh if r.cost_usd is None))
