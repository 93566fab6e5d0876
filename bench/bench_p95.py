"""p95 accuracy benchmark (issue 18 §4): exact vs reported p95 over several latency distributions.

For each distribution, calls are stored through the real ingest path into a real SQLite file, then the
p95 that `llmpulse report` shows (usage.queries.breakdown) is compared with the exact nearest-rank p95
computed here from the generated latencies. The baseline, measured in the same run on the same calls,
is the histogram interpolation used before (usage.queries.p95_from_hist over the roll-up buckets) —
what is shown once raw calls are past retention. Also: the time a 30-day breakdown takes with exact
percentiles vs without them (latency=False), since exact percentiles read the raw calls.

The health window too: the same distributions, one provider each, `--calls` calls each in the last
15 minutes (100,000 in all, past the 10,000 where the health p95 was a histogram estimate): the p95
the collector publishes (usage.traffic_window, what the dashboard and `status` show) against exact, and
beside it the roll-ups' figure a viewer with no collector reads (marked ≈ there).

Target: reported within 1% of exact and never above the slowest call, for every group.

    python bench/bench_p95.py [--calls 20000] [--small 7]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.queries import BUCKETS, HIST, breakdown, p95_from_hist, provider_request_stats
from llmpulse.core.usage.records import record_from_mapping
from llmpulse.core.usage.rollup import ingest
from llmpulse.core.usage.traffic_window import TrafficWindow

DISTRIBUTIONS = {
    "lognormal(650ms)": lambda r: r.lognormvariate(6.5, 0.6),
    "bimodal 300ms/4.2s": lambda r: r.gauss(300, 30) if r.random() < 0.9 else r.gauss(4200, 400),
    "uniform 1.0-1.5s": lambda r: r.uniform(1010, 1490),
    "pareto tail": lambda r: r.paretovariate(1.5) * 200,
    "fast 20-60ms": lambda r: r.uniform(20, 60),
}


def nearest_rank(values: list[float], q: float = 0.95) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def run(calls: int, small: int) -> None:
    rng = random.Random(18)
    now = time.time()
    values: dict[str, list[float]] = {}
    records = []
    for name, draw in DISTRIBUTIONS.items():
        for group, n in ((name, calls), (f"{name} [n={small}]", small)):
            for _ in range(n):
                ms = max(1.0, draw(rng))
                record = record_from_mapping(
                    {"ts": now - rng.uniform(60, 30 * 86400), "provider": "p", "model": group, "latency_ms": ms},
                    now,
                )
                records.append(record)
                assert record.latency_ms is not None
                # exact over the latencies as a record keeps them (whole milliseconds)
                values.setdefault(group, []).append(record.latency_ms)
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp) / "bench.db")
        try:
            await ingest(store, records, Pricing())
            since = now - 31 * 86400
            t0 = time.perf_counter()
            reported = {g.key: g for g in await breakdown(store, "model", since, now)}
            exact_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            await breakdown(store, "model", since, now, latency=False)
            plain_s = time.perf_counter() - t0
            hist_rows = await store.fetchall(
                f"SELECT key, {HIST} FROM usage_rollups WHERE dim = 'model' AND grain = 'h' GROUP BY key"
            )
            baseline = {r[0]: p95_from_hist([int(v or 0) for v in r[1 : 1 + BUCKETS]]) for r in hist_rows}
        finally:
            await store.close()
    print(f"{'group':<30} {'calls':>6} {'exact':>9} {'reported':>9} {'error':>7} {'<=max':>5}  {'histogram (old)':>15}")
    worst, worst_old = 0.0, 0.0
    for group, vals in values.items():
        exact = nearest_rank(vals)
        got = reported[group].p95_ms or float("nan")
        old = baseline[group] or float("nan")
        err, err_old = (got - exact) / exact, (old - exact) / exact
        worst, worst_old = max(worst, abs(err)), max(worst_old, abs(err_old))
        print(
            f"{group:<30} {len(vals):>6} {exact:>9.1f} {got:>9.1f} {err:>+7.2%} {'yes' if got <= max(vals) else 'NO':>5}"
            f"  {old:>9.1f} {err_old:>+6.1%}{'' if old <= max(vals) else ' >max'}"
        )
    print(f"\nworst error: reported {worst:.2%} (target < 1%), histogram interpolation {worst_old:.1%}")
    print(
        f"30-day breakdown of {len(records):,} calls: {exact_s * 1000:.0f} ms with exact p50/p95, "
        f"{plain_s * 1000:.0f} ms without (ratio {exact_s / plain_s:.1f}x)"
    )


async def run_window(calls: int) -> None:
    """The health window: what the collector publishes vs exact, and the roll-ups' estimate beside it."""
    rng = random.Random(15)
    now = time.time()
    values: dict[str, list[float]] = {}
    records = []
    for i, (name, draw) in enumerate(DISTRIBUTIONS.items()):
        for _ in range(calls):
            ms = max(1.0, draw(rng))
            record = record_from_mapping(
                {"ts": now - rng.uniform(0, 899), "provider": f"p{i}", "model": name, "latency_ms": ms}, now
            )
            records.append(record)
            assert record.latency_ms is not None
            values.setdefault(f"p{i}", []).append(record.latency_ms)  # as kept: whole milliseconds
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp) / "window.db")
        try:
            await ingest(store, records, Pricing())
            window = TrafficWindow(900.0)
            t0 = time.perf_counter()
            await window.catch_up(store, now)
            full_s = time.perf_counter() - t0
            published = window.stats()
            fallback = await provider_request_stats(store, now - 900.0, now)
        finally:
            await store.close()
    print(f"\nhealth window, {len(records):,} calls in the last 15 minutes")
    print(
        f"{'provider':<22} {'calls':>6} {'exact':>9} {'published':>9} {'error':>7} {'<=max':>5}  {'roll-ups (viewer alone)':>23}"
    )
    worst = 0.0
    for i, name in enumerate(DISTRIBUTIONS):
        vals = values[f"p{i}"]
        exact = nearest_rank(vals)
        got = published[f"p{i}"].p95_ms or float("nan")
        est = fallback[f"p{i}"]
        err = (got - exact) / exact
        worst = max(worst, abs(err))
        print(
            f"{name:<22} {len(vals):>6} {exact:>9.1f} {got:>9.1f} {err:>+7.2%} {'yes' if got <= max(vals) else 'NO':>5}"
            f"  {'' if est.p95_exact else '≈'}{est.p95_ms or float('nan'):>9.1f} {((est.p95_ms or 0) - exact) / exact:>+6.1%}"
        )
    print(f"worst error published: {worst:.2%} (target < 1%); a new collector's one read of the window: {full_s:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per large group")
    parser.add_argument("--small", type=int, default=7, help="calls per small group")
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.small))
    asyncio.run(run_window(args.calls))


if __name__ == "__main__":
    main()
