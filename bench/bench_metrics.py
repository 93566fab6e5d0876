"""GET /metrics with 10,000,000 usage records stored: a scrape must cost no more than a dashboard refresh.

Baselines, measured in the same run on the same database: `build_snapshot` — the data a dashboard refresh
reads — timed against building the metrics in-process (database reads and prometheus_client formatting
apart) and against a real HTTP scrape of the daemon's server on 127.0.0.1; and the CPU of a whole
dashboard refresh (the dashboard running with its collector off, snapshot and drawing) against the CPU
of a whole scrape. Ratios are scrape / refresh; the target is <= 1.0.

The database: 1,000,000 records through the real ingest (pricing and roll-ups) spread over 90 days and
13 providers, so the roll-ups have their full size; then the raw calls are copied with SQL up to
10,000,000 rows (raw rows are what a scrape must never read, and what makes the file large), 500 probe
rounds for 13 providers, 3 budgets and a migration.

    python bench/bench_metrics.py [--records 10000000] [--db PATH] [--rebuild] [--repeat 7] [--dashboard 10]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synthetic_usage import KEY, KEY_ENVS, ingest_records, usage_records  # noqa: E402 (after the path is set)

# The remote catalog providers but Azure, which needs an endpoint besides its key.
PROVIDERS = {pid: env for pid, env in KEY_ENVS.items() if pid != "azure"}
MODELS = ["gpt-4o", "gpt-4.1", "gpt-4o-mini", "claude-sonnet-4", "gemini-2.5-pro", "deepseek-chat", "llama-3.3-70b"]
REAL_RECORDS = 1_000_000


def config_text() -> str:
    lines = []
    for pid in PROVIDERS:
        lines += [f"[providers.{pid}]", 'base_url = "http://127.0.0.1:9/v1"']
    lines += ["[status_pages]", "enabled = false"]
    for scope, limit in (("total", 50000), ("provider:openai", 20000), ("model:gpt-4o", 10000)):
        lines += ["[[budgets]]", f'scope = "{scope}"', 'period = "month"', f"limit_usd = {limit}"]
    lines += [
        "[[migrations]]",
        'name = "gpt-4.1"',
        'from = ["gpt-4o"]',
        'to = "gpt-4.1"',
        "start = 2026-01-01",
        "deadline = 2027-06-30",
    ]
    return "\n".join(lines) + "\n"


async def build(path: Path, records: int, ctx: object) -> None:
    from llmpulse.core.health_state import record_probe_results
    from llmpulse.core.probe import ProbeResult
    from llmpulse.core.store import Store
    from llmpulse.core.usage.pricing import Pricing

    rng = random.Random(7)
    now = time.time()
    store = await Store.open(path)
    real = min(records, REAL_RECORDS)
    calls = usage_records(real, providers=list(PROVIDERS), models=MODELS, days=90, seed=7, id_prefix="r", now=now)
    took = await ingest_records(store, calls, Pricing())
    print(f"  {real:,} records through the real ingest in {took:.0f} s", flush=True)
    started = time.perf_counter()
    have = real
    while have < records:
        take = min(have, records - have)
        # Copies of real calls a little earlier in time: raw rows only (the roll-ups already have their size).
        await store.execute(
            "INSERT INTO usage_calls (dedupe_key, ts, attrs, input_tokens, output_tokens, cache_read_tokens, "
            "cache_write_tokens, latency_ms, cost_usd, request_id) SELECT NULL, ts - 0.5, attrs, input_tokens, "
            "output_tokens, cache_read_tokens, cache_write_tokens, latency_ms, cost_usd, NULL FROM usage_calls "
            "ORDER BY id LIMIT ?",
            (take,),
        )
        have += take
    print(f"  raw calls copied up to {records:,} in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    for r in range(500):
        at = now - (500 - r) * 30
        results = [
            ProbeResult(
                provider_id=pid,
                name=pid,
                checked_at=at,
                status="healthy",
                latency_ms=rng.uniform(80, 900),
                http_status=200,
            )
            for pid in PROVIDERS
        ]
        await record_probe_results(store, results, ctx.config.health, at)  # type: ignore[attr-defined]
    print(f"  500 probe rounds in {time.perf_counter() - started:.0f} s", flush=True)
    await store.close()


async def measure(ctx: object, repeat: int) -> dict[str, float]:
    import httpx

    from llmpulse.core.metric_totals import UsageTotalsCache
    from llmpulse.core.server.app import Server, ServerState
    from llmpulse.core.server.config import Listener
    from llmpulse.core.server.metrics import exposition, gather
    from llmpulse.core.server.metrics import install as install_metrics
    from llmpulse.core.snapshot import build_snapshot
    from llmpulse.core.store import Store

    store = await Store.open(ctx.db_path)  # type: ignore[attr-defined]
    state = ServerState(ctx, store, ctx.config.server)  # type: ignore[arg-type, attr-defined]
    server = Server(state, Listener("127.0.0.1", 0, None), [install_metrics])
    await server.start()
    try:

        async def snapshot() -> None:
            await build_snapshot(store, ctx, time.time())  # type: ignore[arg-type]

        usage = UsageTotalsCache()  # kept between scrapes, as the server keeps it
        parts: dict[str, list[float]] = {"reads": [], "format": []}

        async def in_process() -> None:
            started = time.perf_counter()
            data = await gather(state, usage)
            middle = time.perf_counter()
            exposition(data, "")
            parts["reads"].append((middle - started) * 1000)
            parts["format"].append((time.perf_counter() - middle) * 1000)

        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

            async def http() -> None:
                r = await client.get("/metrics")
                assert r.status_code == 200 and "llmpulse_requests_total" in r.text

            out: dict[str, float] = {}
            for warm in (snapshot, in_process, http):
                await warm()  # the page cache and the code paths
            # Interleaved, so load on the machine hits all three alike.
            times: dict[str, list[float]] = {"snapshot": [], "metrics": [], "http": []}
            for _ in range(repeat):
                for name, fn in (("snapshot", snapshot), ("metrics", in_process), ("http", http)):
                    started = time.perf_counter()
                    await fn()
                    times[name].append((time.perf_counter() - started) * 1000)
            for name, values in times.items():
                out[name] = statistics.median(values)
            for name, values in parts.items():
                out[name] = statistics.median(values)
            # Where a refresh's time goes at this size (printed so a slow baseline is not mistaken for a fast scrape).
            from llmpulse.core.migration import migration_statuses

            started = time.perf_counter()
            await migration_statuses(store, ctx.config, time.time())  # type: ignore[attr-defined]
            out["migration_statuses"] = (time.perf_counter() - started) * 1000
            r = await client.get("/metrics")
            out["series"] = float(sum(1 for line in r.text.splitlines() if line and not line.startswith("#")))
            out["bytes"] = float(len(r.content))
            return out
    finally:
        await server.stop()
        await store.close()


def dashboard_refresh_ms(ctx: object, seconds: float) -> tuple[float, int]:
    """CPU per dashboard refresh, the whole of it: the dashboard (collector off) refreshing every second
    on this database for `seconds`, its process CPU divided by the refreshes it made."""
    import psutil

    from llmpulse.tui.app import PulseApp
    from llmpulse.tui.core_backend import CoreBackend

    proc = psutil.Process()
    app = PulseApp(CoreBackend(ctx), actor="bench", refresh=1.0, collect=False, watch_terminal=False)  # type: ignore[arg-type]
    figures: list[float] = []

    async def run() -> None:
        async with app.run_test(size=(160, 50)) as pilot:
            while app.polls < 2:
                await pilot.pause(0.05)
            cpu0, polls0 = proc.cpu_times(), app.polls
            await asyncio.sleep(seconds)
            cpu1, polls1 = proc.cpu_times(), app.polls
            used = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
            figures.extend([used * 1000 / max(polls1 - polls0, 1), float(polls1 - polls0)])

    asyncio.run(run())
    return figures[0], int(figures[1])


def scrape_cpu_ms(ctx: object, scrapes: int) -> float:
    """CPU per scrape on the server's side, the whole of it: database reads, formatting, HTTP."""
    import psutil

    proc = psutil.Process()

    async def run() -> float:
        import httpx

        from llmpulse.core.server.app import Server, ServerState
        from llmpulse.core.server.config import Listener
        from llmpulse.core.server.metrics import install as install_metrics
        from llmpulse.core.store import Store

        store = await Store.open(ctx.db_path)  # type: ignore[attr-defined]
        server = Server(ServerState(ctx, store, ctx.config.server), Listener("127.0.0.1", 0, None), [install_metrics])  # type: ignore[arg-type, attr-defined]
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                await client.get("/metrics")  # warm
            # The scraper is another process (as Prometheus is): this process's CPU is the server's alone.
            scraper = (
                "import urllib.request, sys\n"
                f"for _ in range({scrapes}):\n"
                f"    assert urllib.request.urlopen('{server.url}/metrics', timeout=60).status == 200\n"
            )
            cpu0 = proc.cpu_times()
            child = await asyncio.create_subprocess_exec(sys.executable, "-c", scraper)
            assert await child.wait() == 0
            cpu1 = proc.cpu_times()
            return ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) * 1000 / scrapes
        finally:
            await server.stop()
            await store.close()

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--db", default=os.path.join(tempfile.gettempdir(), "llmpulse-bench-metrics.db"))
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dashboard", type=float, default=10.0, help="seconds of dashboard refreshes (0: skip)")
    args = parser.parse_args()

    from llmpulse.core.config import load_context

    workdir = Path(tempfile.mkdtemp(prefix="llmpulse-bench-metrics-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)  # the config only: not left behind
    (workdir / "llmpulse.toml").write_text(config_text())
    env = dict.fromkeys(PROVIDERS.values(), KEY)
    ctx = load_context(str(workdir / "llmpulse.toml"), args.db, environ=env)
    db = Path(args.db)
    if args.rebuild and db.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    if not db.exists():
        print(f"building {db} with {args.records:,} records (once; --rebuild to redo)", flush=True)
        asyncio.run(build(db, args.records, ctx))

    async def count() -> int:
        from llmpulse.core.store import Store

        store = await Store.open(db)
        try:
            return int((await store.fetchone("SELECT COUNT(*) FROM usage_calls"))[0])
        finally:
            await store.close()

    stored = asyncio.run(count())
    figures = asyncio.run(measure(ctx, args.repeat))
    size_mb = db.stat().st_size / 1e6
    print(
        f"database: {stored:,} usage records, {size_mb:,.0f} MB; exposition {figures['series']:.0f} series, {figures['bytes'] / 1000:.0f} KB"
    )
    print(f"dashboard refresh (build_snapshot), baseline: {figures['snapshot']:8.1f} ms  (median of {args.repeat})")
    print(f"  (migration_statuses alone: {figures['migration_statuses']:.1f} ms)")
    print(
        f"metrics built in-process (gather + text):    {figures['metrics']:8.1f} ms  "
        f"ratio {figures['metrics'] / figures['snapshot']:.2f}x  (target <= 1.0)"
    )
    print(
        f"  database reads (gather):                   {figures['reads']:8.1f} ms  "
        f"ratio {figures['reads'] / figures['snapshot']:.2f}x"
    )
    print(f"  prometheus_client formatting:              {figures['format']:8.1f} ms")
    print(
        f"GET /metrics over HTTP on 127.0.0.1:          {figures['http']:8.1f} ms  "
        f"ratio {figures['http'] / figures['snapshot']:.2f}x"
    )
    if args.dashboard > 0:
        refresh_ms, refreshes = dashboard_refresh_ms(ctx, args.dashboard)
        scrape_ms = scrape_cpu_ms(ctx, 50)
        print(f"CPU per dashboard refresh (snapshot + drawing, {refreshes} refreshes): {refresh_ms:8.1f} ms")
        print(
            f"CPU per scrape (the server's side, 50 scrapes):            {scrape_ms:8.1f} ms  "
            f"ratio {scrape_ms / refresh_ms:.2f}x  (target <= 1.0)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
