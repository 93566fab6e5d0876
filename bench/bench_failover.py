"""FailoverClient overhead per call vs plain httpx, with 0 / 6,000 / 45,000 probe rows (issue 14).

200 providers are configured (the health table has a row for each); a server in a process of its own
answers every chat at once with the simulator's answer; a second process writes a probe round of 50 providers every second to
the same database (a collector). For each history size: sequential calls, alternating plain httpx (post,
read, parse JSON), the same post sent and read as FailoverClient sends and reads it (its client, httpx's
API over aiohttp, llmpulse.core.http_client, and the byte-capped read) and FailoverClient.chat() with three providers in `models`; the overhead is
the difference of their medians and of their 99th percentiles, against each baseline. Then calls per
second at concurrency 100 for all three.

Targets: overhead <= 1 ms median and <= 5 ms p99 whatever the history; >= 1,000 calls/s at concurrency 100.

    python bench/bench_failover.py [--calls 400] [--burst 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import httpx

from llmpulse.core.catalog import CATALOG_BY_ID, ProviderOverride, resolve_providers
from llmpulse.core.config import Config, Context, HealthSettings
from llmpulse.core.failover import CHAT_ANSWER_BYTES, FailoverClient, chat_url
from llmpulse.core.health import record_probe_results
from llmpulse.core.http_answer import fetch
from llmpulse.core.http_client import provider_client
from llmpulse.core.probe import ProbeResult, auth_headers
from llmpulse.core.simulator.fleet import FakeProvider, Request
from llmpulse.core.store import Store

KEY = "sk-bench-0000000000000000"
PROVIDERS = 200
MESSAGES = [{"role": "user", "content": "hi"}]
MODELS = {"p0": "gpt-4o-mini", "p1": "gpt-4o-mini", "p2": "gpt-4o-mini"}


def providers_on(root_url: str, n: int) -> list:
    specs = {f"p{i}": replace(CATALOG_BY_ID["openai"], id=f"p{i}", priority=10 + i) for i in range(n)}
    overrides = {pid: ProviderOverride(base_url=f"{root_url}/{pid}/v1") for pid in specs}
    return resolve_providers(specs, {"OPENAI_API_KEY": KEY}, overrides)


CHAT_ANSWER = json.dumps(
    FakeProvider("p0", key=KEY).chat_body(Request("POST", "/chat/completions", {}, {}, b""))
).encode()


class _Canned(asyncio.Protocol):
    """The fleet's chat answer from a bare protocol: the simulator's full server (routing, behaviours,
    request log) tops out at a few hundred requests a second here, which would measure the server, not
    the client. Answers every complete request (headers + content-length body) on a kept-alive socket."""

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport, self.buf = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            length = (
                int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
            )
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(CHAT_ANSWER), CHAT_ANSWER)
            )


def serve_fleet(n: int, conn) -> None:  # type: ignore[no-untyped-def]
    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(_Canned, "127.0.0.1", 0)
        conn.send(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        server.close()

    asyncio.run(run())


def probe_round(ids: list[str], at: float, i: int) -> list[ProbeResult]:
    return [ProbeResult(pid, pid, at, "healthy", None, None, 80.0 + (i * 7 + j) % 90, 200) for j, pid in enumerate(ids)]


async def fill(path: Path, providers: int, rounds: int, interval: float, now: float) -> None:
    """`rounds` probe rounds of `providers` ending at `now`: the health window's worth of history."""
    store = await Store.open(path)
    ids = [f"p{i}" for i in range(providers)]
    settings = HealthSettings()
    for i in range(rounds):
        at = now - (rounds - i) * interval
        await record_probe_results(store, probe_round(ids, at, i), settings, at)
    await store.close()


def collector(path: str, stop) -> None:  # type: ignore[no-untyped-def]
    """A probe round of 50 providers written every second, as a collector at a 1 s interval does."""

    async def run() -> None:
        store = await Store.open(path)
        ids = [f"p{i}" for i in range(50)]
        i = 0
        while not stop.is_set():
            now = time.time()
            await record_probe_results(store, probe_round(ids, now, i), HealthSettings(), now)
            i += 1
            await asyncio.sleep(1.0)
        await store.close()

    asyncio.run(run())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(ctx: Context, calls: int, burst: int) -> dict[str, float]:
    store = await Store.open(ctx.db_path)
    p0 = ctx.providers[0]
    ms: dict[str, list[float]] = {"plain": [], "same": [], "chat": []}
    async with (
        httpx.AsyncClient(timeout=30) as plain,
        provider_client(timeout=30, max_connections=100) as same,
        FailoverClient(ctx, store, timeout=30) as fc,
    ):
        headers = {"content-type": "application/json", **auth_headers(p0)}
        url = chat_url(p0)
        body = {"model": "gpt-4o-mini", "messages": MESSAGES}

        async def plain_call() -> None:
            (await plain.post(url, headers=headers, json=body)).json()

        async def same_call() -> None:  # the request and capped read FailoverClient makes, nothing else
            (await fetch(same, "POST", url, limit=CHAT_ANSWER_BYTES, headers=headers, json=body)).json()

        async def chat_call() -> None:
            await fc.chat(MESSAGES, models=MODELS, agent="bench")

        calls_by_name = {"plain": plain_call, "same": same_call, "chat": chat_call}
        for i in range(calls + 20):
            for name, call in calls_by_name.items():
                t = time.perf_counter()
                await call()
                if i >= 20:  # warm-up
                    ms[name].append((time.perf_counter() - t) * 1000)

        async def many(call, n: int) -> float:  # type: ignore[no-untyped-def]
            gate = asyncio.Semaphore(100)

            async def one() -> None:
                async with gate:
                    await call()

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            return n / (time.perf_counter() - started)

        rates = {name: await many(call, burst) for name, call in calls_by_name.items()}
    await store.close()
    out = {f"{name}_rate": rate for name, rate in rates.items()}
    for name, values in ms.items():
        out[f"{name}_p50"], out[f"{name}_p99"] = statistics.median(values), pct(values, 0.99)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=400, help="sequential calls per history size")
    ap.add_argument("--burst", type=int, default=3000, help="calls for the concurrency-100 rate")
    args = ap.parse_args()
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve_fleet, args=(PROVIDERS, child), daemon=True)
    server.start()
    ok = True
    try:
        root = parent.recv()
        providers = providers_on(root, PROVIDERS)
        for rows, (n, rounds, interval) in ((0, (0, 0, 30.0)), (6000, (200, 30, 30.0)), (45000, (50, 900, 1.0))):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "bench.db"
                asyncio.run(fill(path, n, rounds, interval, time.time()))
                ctx = Context(config=Config(), env={}, db_path=path, providers=providers)
                stop = multiprocessing.Event()
                writer = multiprocessing.Process(target=collector, args=(str(path), stop), daemon=True)
                writer.start()
                try:
                    m = asyncio.run(measure(ctx, args.calls, args.burst))
                finally:
                    stop.set()
                    writer.join(timeout=10)
            # Overhead against plain httpx (what an application would use instead) and against the same
            # client stack FailoverClient sends with (httpx over aiohttp): the second is llmpulse's own cost.
            over = {
                base: (m["chat_p50"] - m[f"{base}_p50"], m["chat_p99"] - m[f"{base}_p99"]) for base in ("plain", "same")
            }
            good = all(o50 <= 1.0 and o99 <= 5.0 for o50, o99 in over.values()) and m["chat_rate"] >= 1000
            ok &= good
            print(
                f"{rows:>6} probe rows: FailoverClient p50 {m['chat_p50']:.2f} ms p99 {m['chat_p99']:.2f} ms | "
                f"plain httpx p50 {m['plain_p50']:.2f} p99 {m['plain_p99']:.2f}: overhead {over['plain'][0]:+.2f} / "
                f"{over['plain'][1]:+.2f} ms | same client and capped read p50 {m['same_p50']:.2f} p99 "
                f"{m['same_p99']:.2f}: overhead {over['same'][0]:+.2f} / {over['same'][1]:+.2f} ms (<= 1 / <= 5) | "
                f"concurrency 100: {m['chat_rate']:.0f} calls/s (>= 1000; plain httpx {m['plain_rate']:.0f}, "
                f"same client {m['same_rate']:.0f})  {'OK' if good else 'MISSED'}"
            )
    finally:
        parent.send("stop")
        server.join(timeout=10)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
