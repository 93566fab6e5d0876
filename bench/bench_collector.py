"""Collector cost per round vs the health window's fill (issue 14): 50 providers probed every second.

The fake providers (answering at once) run in a process of their own. Each fill of the 15-minute
window — empty, half (450 rounds of history), full (900 rounds) — has a process of its own (its own heap,
as a collector has) with a fresh database holding that many probe rounds of history; then the three
collectors run rounds one simulated second apart, taking turns (the order rotating), so a change in the
machine's load falls on all three alike. The CPU time a collector's process spends per round (event loop
and database thread) is the cost; the median over the rounds is compared. The empty window is the
baseline, measured in the same run.

The window holds real traffic too: `--calls-per-s` recorded calls a second (300 by default: 270,000 in
a full window, past the 10,000 where the health p95 used to fall back to the histogram), spread over the
filled part of the window, and as many more before each measured round (written outside the measured
CPU) — the round reads those new calls and lets the oldest go; p50/p95 stay exact. The error-rate alerts
are set at 50% / 90% (`ERROR_RATES`): at the default 5% / 10%, the empty window's first rounds opened and
resolved alerts every round on a handful of calls with 3% errors, which made the baseline dearer than the
full window's rounds for a reason of its own (and flattered the ratio).

Target: cost per round independent of the window's length (full / empty <= 1.2).

    python bench/bench_collector.py [--rounds 60] [--calls-per-s 300]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from llmpulse.core.alerts.config import AlertsConfig
from llmpulse.core.catalog import CATALOG_BY_ID, ProviderOverride, resolve_providers
from llmpulse.core.clock import ManualClock
from llmpulse.core.collector import Collector
from llmpulse.core.config import Config, Context
from llmpulse.core.health import record_probe_results
from llmpulse.core.health_settings import HealthSettings
from llmpulse.core.probe import ProbeClients, ProbeResult
from llmpulse.core.probe_settings import ProbeSettings
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.recorder import Recorder

KEY = "sk-bench-0000000000000000"
PROVIDERS = 50
FILLS = (0, 450, 900)  # rounds of history: empty, half and full window
WARM_UP = 3  # rounds not counted: connections, caches
ERROR_RATES = (0.5, 0.9)  # [alerts] error_rate_warning, error_rate_critical (see above)


def serve_fleet(n: int, conn) -> None:  # type: ignore[no-untyped-def]
    with Fleet([FakeProvider(f"p{i}", key=KEY) for i in range(n)]) as fleet:
        conn.send(fleet.root_url)
        conn.recv()


def context(root: str, db: Path) -> Context:
    specs = {f"p{i}": replace(CATALOG_BY_ID["openai"], id=f"p{i}") for i in range(PROVIDERS)}
    overrides = {pid: ProviderOverride(base_url=f"{root}/{pid}/v1") for pid in specs}
    providers = resolve_providers(specs, {"OPENAI_API_KEY": KEY}, overrides)
    cfg = Config(
        probe=ProbeSettings(interval=1.0, timeout=5.0),
        health=HealthSettings(window=900.0),
        alerts=AlertsConfig(error_rate_warning=ERROR_RATES[0], error_rate_critical=ERROR_RATES[1]),
    )
    return Context(config=cfg, env={}, db_path=db, providers=providers)


async def record_calls(store: Store, ids: list[str], rng: random.Random, n: int, since: float, until: float) -> None:
    """n calls stamped in [since, until), skewed latencies, 3% errors (not part of the measured CPU)."""
    async with Recorder(store, Pricing(), clock=ManualClock(until)) as rec:
        for _ in range(n):
            rec.record(
                provider=rng.choice(ids),
                model="gpt-4o",
                input_tokens=100,
                output_tokens=20,
                latency_ms=rng.lognormvariate(6, 0.6),
                status="error" if rng.random() < 0.03 else "ok",
                ts=rng.uniform(since, until),
            )


async def collect(ctx: Context, history: int, calls_per_s: int, conn: Connection) -> None:
    """Fill the window with `history` rounds and their calls, then run a round each time the parent says
    so, answering with its CPU time in ms (and finally with the calls the window holds)."""
    clock = ManualClock(time.time() - 3600)
    store = await Store.open(ctx.db_path)
    ids = [p.id for p in ctx.providers]
    rng = random.Random(history)
    for i in range(history):  # the window's worth of past rounds, one second apart
        at = clock.advance(1.0)
        results = [
            ProbeResult(pid, pid, at, "healthy", None, None, 90.0 + (i + j) % 50, 200) for j, pid in enumerate(ids)
        ]
        await record_probe_results(store, results, ctx.config.health, at)
    await record_calls(store, ids, rng, history * calls_per_s, clock.now() - history, clock.now())
    collector = Collector(ctx, store, clock, on_event=lambda _line: None)
    collector.probe_clients = ProbeClients(ctx.config.probe)  # as run_forever keeps them
    conn.send("ready")
    while conn.recv() == "round":
        clock.advance(1.0)
        await record_calls(store, ids, rng, calls_per_s, clock.now() - 1.0, clock.now())
        cpu = time.process_time()
        report = await collector.run_round()
        cost = (time.process_time() - cpu) * 1000
        if report.errors:
            raise SystemExit(f"round failed: {report.errors}")
        conn.send(cost)
    conn.send(len(collector.traffic))
    await collector.probe_clients.aclose()
    await store.close()


def fill_process(root: str, history: int, calls_per_s: int, conn: Connection) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(collect(context(root, Path(tmp) / "c.db"), history, calls_per_s, conn))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--calls-per-s", type=int, default=300, help="recorded calls a second (the window's traffic)")
    args = ap.parse_args()
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve_fleet, args=(PROVIDERS, child), daemon=True)
    server.start()
    workers: dict[int, tuple[multiprocessing.Process, Connection]] = {}
    costs: dict[int, list[float]] = {history: [] for history in FILLS}
    try:
        root = parent.recv()
        for history in FILLS:
            ours, theirs = multiprocessing.Pipe()
            worker = multiprocessing.Process(target=fill_process, args=(root, history, args.calls_per_s, theirs))
            worker.start()
            workers[history] = (worker, ours)
        for _, conn in workers.values():
            if conn.recv() != "ready":
                raise SystemExit("a collector did not start")
        for i in range(args.rounds + WARM_UP):
            turn = FILLS[i % len(FILLS) :] + FILLS[: i % len(FILLS)]
            for history in turn:
                conn = workers[history][1]
                conn.send("round")
                cost = conn.recv()
                if i >= WARM_UP:
                    costs[history].append(cost)
        for history, (worker, conn) in workers.items():
            conn.send("stop")
            calls = conn.recv()
            worker.join(timeout=30)
            rows = history * PROVIDERS
            print(
                f"window with {history:>3} rounds ({rows:>6} probe rows, {calls:>7,} calls): "
                f"{statistics.median(costs[history]):.1f} ms CPU a round (median; mean {statistics.mean(costs[history]):.1f})"
            )
    finally:
        for worker, _ in workers.values():
            if worker.is_alive():
                worker.terminate()
        parent.send("stop")
        server.join(timeout=10)
    empty, full = statistics.median(costs[FILLS[0]]), statistics.median(costs[FILLS[-1]])
    ratio = full / empty
    good = ratio <= 1.2
    print(
        f"{PROVIDERS} providers at 1 s: full window / empty window = {ratio:.2f} (target <= 1.2: the same cost "
        f"whatever the window holds); a round is {full / 10:.1f}% of a core at 1 s  {'OK' if good else 'MISSED'}"
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
