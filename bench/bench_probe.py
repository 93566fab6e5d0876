"""Probe rounds at fleet scale vs raw asyncio GETs (issue 14): 1,000 and 5,000 providers, each answering
after 200 ms, served by the simulator in a process of its own, each provider on a port (an origin) of its own.

The baseline, measured in the same run against the same server, is the same GETs made with bare
asyncio streams (open a connection, send the request, read the answer; no HTTP library), bounded by the
same concurrency as a probe round. A round is timed as the collector runs it: through the client it keeps
from round to round (`ProbeClients`, at the default 30 s interval: no connection kept between rounds,
so every probe connects, as every raw GET does); the first round, which builds the client, is shown too.

Target: a round <= 1.5x the raw GETs.

    python bench/bench_probe.py [--providers 1000 5000] [--delay 0.2]
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
from urllib.parse import urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import psutil

from llmpulse.core.catalog import CATALOG_BY_ID, ProviderOverride, resolve_providers
from llmpulse.core.probe import ProbeClients, probe_all, probe_request
from llmpulse.core.probe_settings import ProbeSettings
from llmpulse.core.simulator.fleet import FakeProvider, Fleet

KEY = "sk-bench-0000000000000000"


def providers_on(base_urls: dict[str, str]) -> list:
    specs = {pid: replace(CATALOG_BY_ID["openai"], id=pid) for pid in base_urls}
    overrides = {pid: ProviderOverride(base_url=url) for pid, url in base_urls.items()}
    return resolve_providers(specs, {"OPENAI_API_KEY": KEY}, overrides)


def serve_fleet(n: int, delay: float, conn) -> None:  # type: ignore[no-untyped-def]
    """The fake providers in a process of their own, so their CPU is not charged to the probes' GIL. Each
    on a port of its own (its own origin, as real providers are separate hosts): a client cannot reuse
    one provider's connections for another, which one shared origin would let it do."""
    with Fleet([FakeProvider(f"p{i}", key=KEY, delay=delay) for i in range(n)], own_origins=True) as fleet:
        conn.send({pid: fleet.base_url(pid) for pid in fleet.providers})
        conn.recv()  # until the benchmark is done


async def raw_get(url: str, headers: dict[str, str]) -> int:
    """One GET over a bare asyncio connection; returns the status code."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"GET {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\n{head}connection: close\r\n\r\n".encode())
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    writer.close()
    return int(status_line.split()[1])


async def raw_round(providers: list, settings: ProbeSettings) -> tuple[float, int]:
    gate = asyncio.Semaphore(settings.concurrency)

    async def one(p) -> int:  # type: ignore[no-untyped-def]
        async with gate:
            return await raw_get(*probe_request(p))

    started = time.perf_counter()
    codes = await asyncio.gather(*(one(p) for p in providers))
    return time.perf_counter() - started, sum(c == 200 for c in codes)


async def probe_rounds(providers: list, settings: ProbeSettings) -> tuple[float, float, int]:
    async with ProbeClients(settings) as clients:
        started = time.perf_counter()
        await probe_all(providers, settings, clients=clients)
        first = time.perf_counter() - started
        started = time.perf_counter()
        results = await probe_all(providers, settings, clients=clients)
        kept = time.perf_counter() - started
    return first, kept, sum(r.status == "healthy" for r in results)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--providers", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--delay", type=float, default=0.2)
    args = ap.parse_args()
    settings = ProbeSettings(timeout=30.0, slow=10.0)
    ok = True
    for n in args.providers:
        parent, child = multiprocessing.Pipe()
        server = multiprocessing.Process(target=serve_fleet, args=(n, args.delay, child), daemon=True)
        server.start()
        try:
            providers = providers_on(parent.recv())
            asyncio.run(raw_round(providers[:20], settings))  # warm the server
            raw, raw_ok = asyncio.run(raw_round(providers, settings))
            gc.collect()
            rss = psutil.Process().memory_info().rss
            first, kept, healthy = asyncio.run(probe_rounds(providers, settings))
            extra_mb = max(0, psutil.Process().memory_info().rss - rss) / 2**20
        finally:
            parent.send("stop")
            server.join(timeout=20)
        ratio = kept / raw
        good = ratio <= 1.5 and healthy == n and raw_ok == n
        ok &= good
        print(
            f"{n} providers @{args.delay * 1000:.0f} ms, concurrency {settings.concurrency}: raw asyncio GETs "
            f"{raw:.2f} s | probe round {kept:.2f} s with the kept client (first round, building it: {first:.2f} s) "
            f"| ratio {ratio:.2f}x (target <= 1.5x) | healthy {healthy}/{n}, +{extra_mb:.0f} MB  "
            f"{'OK' if good else 'MISSED'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
