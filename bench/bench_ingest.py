"""Usage ingest and query benchmark (issue 3 §9).

- Ingest through the batched Recorder, pricing included: target at least 200,000 records/s. Baseline,
  measured in the same run: raw sqlite3 executemany of the same rows into a plain table in one
  transaction.
- With N million records stored (default 10): everything the dashboard needs (totals, budgets,
  breakdowns for 24h) in under 20 ms; the database size per million records.

    python bench/bench_ingest.py [--records 200000] [--stored 10000000] [--db PATH]

The N-million database is built once (it takes a while) and reused from --db on later runs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmpulse.core.store import Store
from llmpulse.core.usage.budgets import budget_statuses
from llmpulse.core.usage.config import BudgetConfig, UsageConfig
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.queries import breakdown, provider_request_stats, usage_summary
from llmpulse.core.usage.recorder import Recorder

PROVIDERS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4.1"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"),
    ("groq", "llama-3.3-70b-versatile"),
    ("gemini", "gemini-2.5-flash"),
    ("ollama", "llama3.2"),
]
DEPTS = ["Eng", "Support", "Research", "Sales"]


def calls(n: int, start: float, span: float, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        provider, model = PROVIDERS[i % len(PROVIDERS)]
        out.append(
            {
                "ts": start + span * i / n,
                "provider": provider,
                "model": model,
                "input_tokens": rng.randint(100, 4000),
                "output_tokens": rng.randint(10, 800),
                "latency_ms": rng.uniform(80, 4000),
                "department": DEPTS[i % 4],
                "agent": f"agent-{i % 20}",
                "user": f"user-{i % 50}",
                "task_type": "chat",
            }
        )
    return out


async def ingest_rate(db: Path, n: int) -> tuple[float, float]:
    now = time.time()
    data = calls(n, now - 600, 600)  # live traffic: the last ten minutes
    store = await Store.open(db)
    try:
        started = time.perf_counter()
        # As an application uses it: record() on every call, the event loop free now and then; full
        # batches flush as a job on the database thread. (With the loop this busy, CPython's GIL hands
        # that thread little time until the loop stops: the figure is close to record() + SQL, serial.)
        async with Recorder(store, Pricing(local_providers=["ollama"]), batch_size=10000, flush_interval=1.0) as rec:
            for i, fields in enumerate(data):
                rec.record(**fields)
                if i % 1000 == 0:
                    await asyncio.sleep(0)
        ours = time.perf_counter() - started
    finally:
        await store.close()
    raw_db = db.with_suffix(".raw")
    conn = sqlite3.connect(raw_db)
    cols = list(data[0])
    conn.execute(f"CREATE TABLE raw ({', '.join(cols)})")
    rows = [tuple(d[c] for c in cols) for d in data]
    started = time.perf_counter()
    with conn:
        conn.executemany(f"INSERT INTO raw VALUES ({', '.join('?' for _ in cols)})", rows)
    raw = time.perf_counter() - started
    conn.close()
    raw_db.unlink()
    return n / ours, n / raw


async def build_stored(db: Path, n: int) -> None:
    now = time.time()
    store = await Store.open(db)
    try:
        async with Recorder(store, Pricing(local_providers=["ollama"]), batch_size=20000, flush_interval=3600) as rec:
            step = 100_000
            for part in range(0, n, step):
                for fields in calls(
                    min(step, n - part), now - 30 * 86400 + 30 * 86400 * part / n, 30 * 86400 * step / n, seed=part
                ):
                    rec.record(**fields)
                await rec.flush()
                print(f"  {part + step:,} stored", flush=True, end="\r")
    finally:
        await store.close()


async def dashboard_ms(db: Path) -> float:
    cfg = UsageConfig(
        budgets=(
            BudgetConfig("total", "month", 100000.0),
            BudgetConfig("provider:openai", "day", 500.0),
            BudgetConfig("department:Eng", "week", 5000.0),
        )
    )
    store = await Store.open(db)
    try:

        async def once():
            now = time.time()
            await usage_summary(store, now, "UTC")
            await budget_statuses(store, cfg, now)
            await provider_request_stats(store, now - 900, now)
            for by in ("provider", "model", "department"):
                await breakdown(store, by, now - 86400, now)

        await once()
        started = time.perf_counter()
        for _ in range(10):
            await once()
        return (time.perf_counter() - started) / 10 * 1000
    finally:
        await store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--stored", type=int, default=10_000_000)
    ap.add_argument("--db", default=str(Path(tempfile.gettempdir()) / "llmpulse-bench-10m.db"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours, raw = asyncio.run(ingest_rate(Path(tmp) / "ingest.db", args.records))
    ok_ingest = ours >= 200_000
    print(
        f"ingest through the Recorder, pricing included: {ours:,.0f} records/s (target >= 200,000) "
        f"{'OK' if ok_ingest else 'MISSED'}; raw executemany of the same rows: {raw:,.0f} rows/s; "
        f"ratio {raw / ours:.1f}x slower than raw"
    )
    # The figures (200,000/s where raw runs about 560,000/s) are a ratio of 2.8x: what this
    # run's ratio would give on that machine.
    print(
        f"  on a machine where raw executemany runs 560,000 rows/s this ratio means about "
        f"{560_000 * ours / raw:,.0f} records/s (ratio target 2.8x: {'OK' if raw / ours <= 2.8 else 'MISSED'})"
    )
    db = Path(args.db)
    have = 0
    if db.exists():
        conn = sqlite3.connect(db)
        have = conn.execute("SELECT COUNT(*) FROM usage_records").fetchone()[0]
        conn.close()
    if have < args.stored:
        for p in db.parent.glob(db.name + "*"):
            p.unlink()
        print(f"building {db} with {args.stored:,} records (once) ...", flush=True)
        started = time.perf_counter()
        asyncio.run(build_stored(db, args.stored))
        print(f"\nbuilt in {time.perf_counter() - started:.0f} s")
        have = args.stored
    ms = asyncio.run(dashboard_ms(db))
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 2**20
    ok_query = ms < 20
    print(
        f"with {have:,} records stored: dashboard queries (summary, 3 budgets, provider stats, 3 breakdowns "
        f"for 24h) {ms:.1f} ms (target < 20 ms) {'OK' if ok_query else 'MISSED'}"
    )
    print(f"database size: {size:,.0f} MB, {size / (have / 1e6):,.1f} MB per million records")
    return 0 if ok_ingest and ok_query else 1


if __name__ == "__main__":
    sys.exit(main())
