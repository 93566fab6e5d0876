"""Ingest: price, store and roll up usage records in one transaction.

Every record is added to per-minute, per-hour and per-day roll-ups for each dimension (total, provider,
model, provider/model, department, agent, user, task_type, and fallback pairs). A batch goes into a
temporary table and SQLite sums it per bucket in one INSERT ... SELECT per grain and dimension, so a
thousand records for the same hour cost one upsert, and the summing runs in C, not Python.
Latency goes into fixed histogram buckets (columns l0..l15), which is how p95 comes from roll-ups.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from core.store import Store
from core.usage.pricing import Pricing
from core.usage.records import UsageRecord

LATENCY_BOUNDS_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000, 30000)
BUCKETS = len(LATENCY_BOUNDS_MS) + 1
GRAINS = {"m": 60.0, "h": 3600.0, "d": 86400.0}
MINUTE_KEEP_S = 2 * 86400.0      # minute roll-ups cover only this much recent time (hours and days: all)
DIMS = ("total", "provider", "model", "provider_model", "department", "agent", "user", "task_type", "fallback")
COUNTERS = ("requests", "errors", "fallbacks", "input_tokens", "output_tokens", "cache_read_tokens",
            "cache_write_tokens", "cost_usd", "unknown_price") + tuple(f"l{i}" for i in range(BUCKETS))
RECORD_COLUMNS = ("dedupe_key", "ts", "provider", "model", "input_tokens", "output_tokens", "cache_read_tokens",
                  "cache_write_tokens", "latency_ms", "status", "error_kind", "is_fallback", "fallback_from",
                  "department", "agent", "user", "task_type", "category", "endpoint", "request_id", "cost_usd")
INSERT_RECORD = (f"INSERT INTO usage_records ({', '.join(RECORD_COLUMNS)}) "
                 f"VALUES ({', '.join('?' for _ in RECORD_COLUMNS)})")


def latency_bucket(ms: float) -> int:
    return bisect.bisect_left(LATENCY_BOUNDS_MS, ms)


# How each dimension's key is read from a record (SQL over the batch table), and which rows have one.
DIM_SQL = {
    "total": ("'*'", "1"),
    "provider": ("provider", "1"),
    "model": ("model", "1"),
    "provider_model": ("provider || '/' || model", "1"),
    "department": ("department", "department IS NOT NULL"),
    "agent": ("agent", "agent IS NOT NULL"),
    "user": ("user", "user IS NOT NULL"),
    "task_type": ("task_type", "task_type IS NOT NULL"),
    "fallback": ("fallback_from || '>' || provider", "is_fallback AND fallback_from IS NOT NULL"),
}
BATCH_COLUMNS = ("ts", "provider", "model", "department", "agent", "user", "task_type", "is_fallback",
                 "fallback_from", "is_error", "input_tokens", "output_tokens", "cache_read_tokens",
                 "cache_write_tokens", "cost_usd", "unknown_price", "lat_bucket")
CREATE_BATCH = (f"CREATE TEMP TABLE IF NOT EXISTS usage_batch ({', '.join(BATCH_COLUMNS)})")
SUMS = ("COUNT(*), SUM(is_error), SUM(is_fallback), SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), "
        "SUM(cache_write_tokens), SUM(cost_usd), SUM(unknown_price), "
        + ", ".join(f"SUM(lat_bucket IS {i})" for i in range(BUCKETS)))   # IS: never NULL


def rollup_statements() -> list[str]:
    """One INSERT ... SELECT per grain and dimension: SQLite sums the batch in C, then upserts.
    Minute roll-ups are only kept for the last MINUTE_KEEP_S (parameter 1: the oldest minute to keep)."""
    out = []
    for grain, width in GRAINS.items():
        for dim, (key, where) in DIM_SQL.items():
            recent = " AND ts >= ?1" if grain == "m" else " AND ?1 IS NOT NULL"
            out.append(
                f"INSERT INTO usage_rollups (grain, start, dim, key, {', '.join(COUNTERS)}) "
                f"SELECT '{grain}', ts - (ts % {width}), '{dim}', {key}, {SUMS} FROM usage_batch "
                f"WHERE {where}{recent} GROUP BY 2, 4 "
                "ON CONFLICT (grain, dim, start, key) DO UPDATE SET "
                + ", ".join(f"{c} = {c} + excluded.{c}" for c in COUNTERS))
    return out


ROLLUP_SQL = rollup_statements()


def batch_row(r: UsageRecord) -> tuple:
    return (r.ts, r.provider, r.model, r.department, r.agent, r.user, r.task_type, int(r.is_fallback),
            r.fallback_from, int(r.status == "error"), r.input_tokens, r.output_tokens, r.cache_read_tokens,
            r.cache_write_tokens, r.cost_usd or 0.0, int(r.cost_usd is None),
            None if r.latency_ms is None else latency_bucket(r.latency_ms))


@dataclass
class IngestResult:
    stored: int
    duplicates: int
    unknown_price: int


async def ingest(store: Store, records: Sequence[UsageRecord], pricing: Pricing,
                 now: float | None = None) -> IngestResult:
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
        await conn.execute(CREATE_BATCH)
        await conn.execute("DELETE FROM usage_batch")
        await conn.executemany(f"INSERT INTO usage_batch VALUES ({', '.join('?' for _ in BATCH_COLUMNS)})",
                               [batch_row(r) for r in fresh])
        oldest_minute = (time.time() if now is None else now) - MINUTE_KEEP_S
        for statement in ROLLUP_SQL:
            await conn.execute(statement, (oldest_minute,))
        await conn.execute("DELETE FROM usage_batch")
    return IngestResult(stored=len(fresh), duplicates=len(records) - len(fresh),
                        unknown_price=sum(1 for r in fresh if r.cost_usd is None))
