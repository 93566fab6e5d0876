"""Synthetic traffic for the benchmarks that need a database full of real-looking calls (bench_tui,
bench_metrics): one generator of usage records and one way to put them in, the real ingest (pricing,
dedupe, roll-ups), so both benchmarks measure the same kind of database.

Imported by name from a benchmark run as a script (`python bench/bench_tui.py` puts bench/ on sys.path).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from llmpulse.core.catalog import CATALOG

if TYPE_CHECKING:
    from llmpulse.core.store import Store
    from llmpulse.core.usage.pricing import Pricing
    from llmpulse.core.usage.records import UsageRecord

KEY = "sk-bench-0000000000000000000000"  # every fake provider's key in the benchmarks
DAY = 86400.0
# A remote catalog provider -> the variable its key is read from (the first its SDK reads).
KEY_ENVS = {s.id: s.key_envs[0] for s in CATALOG if s.key_envs and not s.local}
DEPARTMENTS = ("Eng", "Support", "Research", "Sales")
TASK_TYPES = ("chat", "summarize", "classify")
INGEST_BATCH = 20_000


def usage_records(
    n: int,
    *,
    providers: Sequence[str],
    models: Sequence[str],
    days: float,
    seed: int,
    id_prefix: str,
    now: float | None = None,
) -> Iterator[UsageRecord]:
    """`n` calls spread evenly over the last `days`: 2% errors, a third with a 512-token cache read,
    20 agents and 50 users in four departments; request ids `<id_prefix><i>`. The same seed gives the
    same calls."""
    from llmpulse.core.usage.records import UsageRecord

    rng = random.Random(seed)
    now = time.time() if now is None else now
    for i in range(n):
        yield UsageRecord(
            ts=now - rng.random() * days * DAY,
            provider=rng.choice(providers),
            model=rng.choice(models),
            input_tokens=rng.randint(100, 4000),
            output_tokens=rng.randint(10, 800),
            cache_read_tokens=rng.choice((0, 0, 512)),
            latency_ms=rng.uniform(80, 4000),
            status="error" if rng.random() < 0.02 else "ok",
            department=rng.choice(DEPARTMENTS),
            agent=f"agent-{rng.randint(1, 20)}",
            user=f"user-{rng.randint(1, 50)}",
            task_type=rng.choice(TASK_TYPES),
            request_id=f"{id_prefix}{i}",
        )


async def ingest_records(store: Store, records: Iterable[UsageRecord], pricing: Pricing) -> float:
    """Store the records through the real ingest, in batches as a busy collector would; the seconds it took."""
    from llmpulse.core.usage.rollup import ingest

    started = time.perf_counter()
    batch: list[UsageRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) == INGEST_BATCH:
            await ingest(store, batch, pricing)
            batch = []
    if batch:
        await ingest(store, batch, pricing)
    return time.perf_counter() - started
