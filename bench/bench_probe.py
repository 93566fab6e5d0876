"""Probe round benchmark (issue 2 §9): 200 providers each answering after 200 ms.

Target: one concurrent round finishes in under 0.5 s wall and under 30 MB of extra memory. The baseline,
measured in the same run on the same fleet, is the same 200 probes made one after another; the ratio
between the two is what to compare across (noisy) machines.

    python bench/bench_probe.py [--providers 200] [--delay 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import psutil

from llmpulse.core.catalog import CATALOG_BY_ID, ProviderOverride, resolve_providers
from llmpulse.core.probe import make_client, probe_all, probe_provider
from llmpulse.core.probe_settings import ProbeSettings
from llmpulse.core.simulator.fleet import FakeProvider, Fleet

KEY = "sk-bench-0000000000000000"


def providers_on(root_url: str, n: int):
    specs = {f"p{i}": replace(CATALOG_BY_ID["openai"], id=f"p{i}") for i in range(n)}
    overrides = {pid: ProviderOverride(base_url=f"{root_url}/{pid}/v1") for pid in specs}
    return resolve_providers(specs, {"OPENAI_API_KEY": KEY}, overrides)


def serve_fleet(n: int, delay: float, conn) -> None:
    """The fake providers in a process of their own, so their CPU is not charged to the probes' GIL."""
    with Fleet([FakeProvider(f"p{i}", key=KEY, delay=delay) for i in range(n)]) as fleet:
        conn.send(fleet.root_url)
        conn.recv()  # until the benchmark is done


async def sequential(providers, settings) -> float:
    started = time.perf_counter()
    async with make_client(settings) as client:
        for p in providers:
            await probe_provider(client, p, settings, time.time())
    return time.perf_counter() - started


async def concurrent(providers, settings) -> tuple[float, list]:
    started = time.perf_counter()
    results = await probe_all(providers, settings)
    return time.perf_counter() - started, results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--providers", type=int, default=200)
    ap.add_argument("--delay", type=float, default=0.2)
    args = ap.parse_args()
    settings = ProbeSettings(timeout=10.0, slow=5.0)
    proc = psutil.Process()
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve_fleet, args=(args.providers, args.delay, child), daemon=True)
    server.start()
    try:
        providers = providers_on(parent.recv(), args.providers)
        asyncio.run(concurrent(providers[:5], settings))  # warm imports and the fleet
        gc.collect()
        rss_before = proc.memory_info().rss
        wall, results = asyncio.run(concurrent(providers, settings))
        rss_after = proc.memory_info().rss
        healthy = sum(r.status == "healthy" for r in results)
        base = asyncio.run(sequential(providers, settings))
    finally:
        parent.send("stop")
        server.join(timeout=10)
    extra_mb = max(0, rss_after - rss_before) / 2**20
    print(f"providers: {args.providers}, each answering after {args.delay * 1000:.0f} ms; healthy {healthy}")
    print(f"concurrent round: {wall:.3f} s wall (target < 0.5 s)  {'OK' if wall < 0.5 else 'MISSED'}")
    print(f"extra memory during the round: {extra_mb:.1f} MB (target < 30 MB)  {'OK' if extra_mb < 30 else 'MISSED'}")
    print(f"baseline, {args.providers} sequential probes: {base:.3f} s")
    print(f"speed-up concurrent vs sequential: {base / wall:.1f}x (ideal {args.providers}x)")
    return 0 if healthy == args.providers and wall < 0.5 and extra_mb < 30 else 1


if __name__ == "__main__":
    sys.exit(main())
