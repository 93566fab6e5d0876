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
# A record whose dedupe key is already stored (or twice in one batch) is ignored by the UNIQUE index;
# the rows that did go in are exactly those above the largest id before the batch.
INSERT_RECORDS = (f"INSERT OR IGNORE INTO usage_records ({', '.join(RECORD_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in RECORD_COLUMNS)})")


def _latency_bucket_sql(i: int) -> str:
    """COUNT of rows whose latency falls in bucket i, the same buckets as latency_bucket()."""
    if i == 0:
        cond = f"latency_ms <= {LATENCY_BOUNDS_MS[0]}"
    elif i < len(LATENCY_BOUNDS_MS):
        cond = f"latency_ms > {LATENCY_BOUNDS_MS[i - 1]} AND latency_ms <= {LATENCY_BOUNDS_MS[i]}"
    else:
        cond = f"latency_ms > {LATENCY_BOUNDS_MS[-1]}"
    return f"COUNT(CASE WHEN {cond} THEN 1 END)"


# First pass: the batch summed per minute and full combination of dimensions (live traffic collapses a
# lot: one minute, a handful of providers, models and teams). The 27 roll-up statements then read this
# small table instead of every record.
AGG_KEYS = ("provider", "model", "department", "agent", "user", "task_type", "fallback_from", "is_fallback")
CREATE_AGG = (f"CREATE TEMP TABLE IF NOT EXISTS usage_agg (m, {', '.join(AGG_KEYS)}, {', '.join(COUNTERS)})")
AGG_SQL = (
    f"INSERT INTO usage_agg SELECT CAST(ts AS INTEGER) - CAST(ts AS INTEGER) % 60, {', '.join(AGG_KEYS)}, "
    "COUNT(*), COUNT(CASE WHEN status = 'error' THEN 1 END), TOTAL(is_fallback), TOTAL(input_tokens), "
    "TOTAL(output_tokens), TOTAL(cache_read_tokens), TOTAL(cache_write_tokens), TOTAL(cost_usd), "
    "COUNT(CASE WHEN cost_usd IS NULL THEN 1 END), "
    + ", ".join(_latency_bucket_sql(i) for i in range(BUCKETS))
    + f" FROM usage_records WHERE id > ? GROUP BY {', '.join(str(i) for i in range(1, len(AGG_KEYS) + 2))}")
SUMS = ", ".join(f"SUM({c})" for c in COUNTERS)


def bucket_start(width: float) -> str:
    """SQL for the start of a minute's bucket. SQLite's % works on integers (it truncates a REAL first),
    so `ts - ts % w` on a raw timestamp would keep its fraction and scatter one hour over thousands of
    "buckets": the first pass already cut timestamps to whole minutes (m)."""
    return f"(m - m % {int(width)})"


def rollup_statements() -> list[str]:
    """One INSERT ... SELECT per grain and dimension over the first pass, then an upsert.
    Minute roll-ups are only kept for the last MINUTE_KEEP_S (parameter 1: the oldest minute to keep)."""
    out = []
    for grain, width in GRAINS.items():
        for dim, (key, where) in DIM_SQL.items():
            recent = " AND m >= ?1" if grain == "m" else " AND ?1 IS NOT NULL"
            out.append(
                f"INSERT INTO usage_rollups (grain, start, dim, key, {', '.join(COUNTERS)}) "
                f"SELECT '{grain}', {bucket_start(width)}, '{dim}', {key}, {SUMS} FROM usage_agg "
                f"WHERE {where}{recent} GROUP BY 2, 4 "
                "ON CONFLICT (grain, dim, start, key) DO UPDATE SET "
                + ", ".join(f"{c} = {c} + excluded.{c}" for c in COUNTERS))
    return out


ROLLUP_SQL = rollup_statements()


def record_row(r: UsageRecord, pricing: Pricing) -> tuple:
    """A record as the row stored (priced now if it has no cost yet)."""
    cost = r.cost_usd if r.cost_usd is not None else pricing.cost(
        r.provider, r.model, r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens)
    r.cost_usd = cost
    return (r.dedupe_key(), r.ts, r.provider, r.model, r.input_tokens, r.output_tokens, r.cache_read_tokens,
            r.cache_write_tokens, r.latency_ms, r.status, r.error_kind, int(r.is_fallback), r.fallback_from,
            r.department, r.agent, r.user, r.task_type, r.category, r.endpoint, r.request_id, cost)


@dataclass
class IngestResult:
    stored: int
    duplicates: int
    unknown_price: int


async def ingest(store: Store, records: Sequence[UsageRecord], pricing: Pricing,
                 now: float | None = None) -> IngestResult:
    """Price and store records, skipping ones already stored (same dedupe key), and roll them up."""
    return await ingest_rows(store, [record_row(r, pricing) for r in records], now)


async def ingest_rows(store: Store, rows: Sequence[tuple], now: float | None = None) -> IngestResult:
    """Store priced rows (RECORD_COLUMNS order) and roll them up, in one transaction: a crash leaves the
    whole batch or none of it. Deduplication and summing run inside SQLite."""
    if not rows:
        return IngestResult(0, 0, 0)
    oldest_minute = (time.time() if now is None else now) - MINUTE_KEEP_S
    async with store.transaction() as conn:
        async with conn.execute("SELECT COALESCE(MAX(id), 0) FROM usage_records") as cur:
            (last_id,) = await cur.fetchone()
        await conn.executemany(INSERT_RECORDS, rows)
        async with conn.execute("SELECT COUNT(*), COUNT(CASE WHEN cost_usd IS NULL THEN 1 END) "
                                "FROM usage_records WHERE id > ?", (last_id,)) as cur:
            stored, unknown = await cur.fetchone()
        await conn.execute(CREATE_AGG)
        await conn.execute("DELETE FROM usage_agg")
        await conn.execute(AGG_SQL, (last_id,))
        for statement in ROLLUP_SQL:
            await conn.execute(statement, (oldest_minute,))
        await conn.execute("DELETE FROM usage_agg")
    return IngestResult(stored=stored, duplicates=len(rows) - stored, unknown_price=unknown)
