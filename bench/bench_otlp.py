"""OTLP ingest benchmark (issue 15 §5): GenAI spans per second through a real daemon's POST /v1/traces.

- Throughput: protobuf exports of 512 spans each, sent over loopback by several connections at once to
  `llmpulse daemon --listen` (a real process), until every span is acknowledged and stored. Target:
  at least 30,000 spans/s on 2 cores. Baseline, measured in the same run: the Recorder's own rate for
  the same records (Recorder.record + flush, no HTTP, no protobuf) — the ratio says what the receiver
  (HTTP, decoding, span to record) costs on top.
- The collector's round time while ingest runs at full speed, against its round time idle, from the
  same daemon probing a simulated fleet every second. Target: rounds no more than 20% slower. The
  dashboard's refresh (a snapshot on a read-only connection) is timed beside it, idle and under ingest.

    python bench/bench_otlp.py [--spans 300000] [--senders 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from llmpulse.core.server.config import Attribution
from llmpulse.core.server.genai import records_from_request
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.recorder import Recorder

BATCH = 512
MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("groq", "llama-3.3-70b-versatile"),
]
SERVICES = ["triage-bot", "support-bot", "search", "summarizer"]
TARGET_SPANS_S = 30_000
TARGET_ROUND_SLOWDOWN = 1.20


def kv(key: str, value: object) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def make_batches(total: int) -> list[bytes]:
    """Exports of BATCH GenAI spans each, as an instrumented app's SDK sends them (unique ids)."""
    now_ns = time.time_ns() - 600 * 10**9
    out = []
    for b in range(total // BATCH):
        spans = []
        for i in range(BATCH):
            n = b * BATCH + i
            provider, model = MODELS[n % len(MODELS)]
            start = now_ns + n * 1000
            spans.append(
                Span(
                    trace_id=(n + 1).to_bytes(16, "big"),
                    span_id=(n + 1).to_bytes(8, "big"),
                    name=f"chat {model}",
                    kind=Span.SPAN_KIND_CLIENT,
                    start_time_unix_nano=start,
                    end_time_unix_nano=start + (200 + n % 900) * 10**6,
                    attributes=[
                        kv("gen_ai.operation.name", "chat"),
                        kv("gen_ai.provider.name", provider),
                        kv("gen_ai.request.model", model),
                        kv("gen_ai.response.model", model),
                        kv("gen_ai.response.id", f"chatcmpl-{n}"),
                        kv("gen_ai.usage.input_tokens", 100 + n % 3000),
                        kv("gen_ai.usage.output_tokens", 10 + n % 500),
                        kv("server.address", "api.example.com"),
                        kv("server.port", 443),
                    ],
                )
            )
        service = SERVICES[b % len(SERVICES)]
        request = ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    resource={"attributes": [kv("service.name", service), kv("team", "Eng")]},
                    scope_spans=[ScopeSpans(spans=spans)],
                )
            ]
        )
        out.append(request.SerializeToString())
    return out


async def recorder_rate(batches: list[bytes], db: Path) -> float:
    """Records/s through Recorder.record + flush for the same records (decoded beforehand, not timed)."""
    records = []
    for body in batches:
        records.extend(records_from_request(ExportTraceServiceRequest.FromString(body), Attribution()).records)
    store = await Store.open(db)
    try:
        started = time.perf_counter()
        async with Recorder(store, Pricing(), batch_size=5000) as rec:
            for fields in records:
                rec.record(**fields)
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    return len(records) / elapsed


def start_daemon(tmp: Path, fleet: Fleet) -> tuple[subprocess.Popen, str]:
    lines = ["[probe]", 'interval = "1s"', 'timeout = "2s"']
    for pid in fleet.providers:
        lines += [f"[providers.{pid}]", f'base_url = "{fleet.base_url(pid)}"']
    (tmp / "llmpulse.toml").write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMPULSE_") and not k.endswith("_API_KEY")}
    env.update({"OPENAI_API_KEY": "sk-bench-000000000000", "GROQ_API_KEY": "gsk_bench000000000000000"})
    # The daemon's log goes to a file: a pipe nobody reads would fill and block its writes.
    log = (tmp / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmpulse.core.cli", "--config", str(tmp / "llmpulse.toml"), "--db", str(tmp / "d.db")]
        + ["daemon", "--listen", "127.0.0.1:0"],
        cwd=tmp,
        env=env,
        stderr=log,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"serving on (http://\S+)", (tmp / "daemon.log").read_text())
        if m:
            return proc, m.group(1)
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the daemon did not start: " + (tmp / "daemon.log").read_text()[-2000:])


def round_times(db: Path, seconds: float) -> tuple[list[float], list[float]]:
    """Within the next `seconds`: the collector's round durations (ms), and how long the dashboard's
    refresh (build_snapshot on a read-only connection, as the dashboard does) took, every 0.2 s."""
    from llmpulse.core.config import load_context
    from llmpulse.core.snapshot import build_snapshot

    async def watch() -> tuple[list[float], list[float]]:
        ctx = load_context(config_path=str(db.parent / "llmpulse.toml"), db_path=str(db), environ={})
        reader = await Store.open_reader(db)
        seen: dict[int, float] = {}
        refresh: list[float] = []
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                row = await reader.fetchone("SELECT rounds, last_duration_ms FROM collector_status")
                if row:
                    seen[row[0]] = row[1]
                started = time.perf_counter()
                await build_snapshot(reader, ctx, time.time())
                refresh.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.2)
        finally:
            await reader.close()
        return list(seen.values()), refresh

    return asyncio.run(watch())


async def send_all(url: str, batches: list[bytes], senders: int) -> tuple[float, int]:
    queue = list(reversed(batches))
    refused = 0

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal refused
        while queue:
            body = queue.pop()
            while True:
                r = await client.post(
                    f"{url}/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}
                )
                if r.status_code == 200:
                    break
                refused += 1  # 503: the queue is full; retry as an exporter would
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")) / 10)

    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(sender(client) for _ in range(senders)))
        return time.perf_counter() - started, refused


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=300_000)
    ap.add_argument("--senders", type=int, default=4, help="connections sending at once")
    ap.add_argument("--show-log", action="store_true", help="print the end of the daemon's log")
    args = ap.parse_args()
    batches = make_batches(args.spans)
    spans = len(batches) * BATCH
    print(f"cores: {os.cpu_count()}; {spans:,} GenAI spans in {len(batches)} protobuf exports of {BATCH}")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        direct = asyncio.run(recorder_rate(batches, tmp / "direct.db"))
        print(f"baseline: Recorder.record + flush, same records: {direct:,.0f} records/s")
        fakes = [
            FakeProvider("openai", key="sk-bench-000000000000"),
            FakeProvider("groq", kind="groq", key="gsk_bench000000000000000"),
        ]
        with Fleet(fakes) as fleet:
            proc, url = start_daemon(tmp, fleet)
            try:
                idle, idle_refresh = round_times(tmp / "d.db", 6.0)
                load: list[float] = []
                load_refresh: list[float] = []

                async def measure() -> tuple[float, int]:
                    sending = asyncio.create_task(send_all(url, batches, args.senders))
                    while not sending.done():
                        rounds, refresh = await asyncio.to_thread(round_times, tmp / "d.db", 1.0)
                        load.extend(rounds)
                        load_refresh.extend(refresh)
                    return await sending

                elapsed, refused = asyncio.run(measure())
                # acknowledged is not yet stored: wait until the daemon has written all of it
                deadline = time.monotonic() + 60
                stored = 0
                while time.monotonic() < deadline:
                    with sqlite3.connect(tmp / "d.db", timeout=5) as conn:
                        stored = conn.execute("SELECT COUNT(*) FROM usage_calls").fetchone()[0]
                    if stored >= spans:
                        break
                    time.sleep(0.05)
                stored_after = time.perf_counter()
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
                if args.show_log:
                    print((tmp / "daemon.log").read_text()[-3000:])
    rate = spans / elapsed
    print(
        f"/v1/traces: {spans:,} spans acknowledged in {elapsed:.2f}s = {rate:,.0f} spans/s "
        f"({args.senders} connections, {refused} answers 503 + retry); {stored:,} stored"
    )
    print(f"  ratio to the Recorder's direct rate: {rate / direct:.2f}")
    met = "met" if rate >= TARGET_SPANS_S else "MISSED"
    print(f"  target >= {TARGET_SPANS_S:,} spans/s: {met}")
    del stored_after
    if idle and load:
        idle_ms, load_ms = statistics.median(idle), statistics.median(load)
        slowdown = load_ms / idle_ms
        verdict = "met" if slowdown <= TARGET_ROUND_SLOWDOWN else "MISSED"
        print(
            f"collector round: idle median {idle_ms:.1f} ms ({len(idle)} rounds), under ingest median "
            f"{load_ms:.1f} ms ({len(load)} rounds): x{slowdown:.2f}; target <= x{TARGET_ROUND_SLOWDOWN:.2f}: {verdict}"
        )
    else:
        print(f"collector round: not enough rounds measured (idle {len(idle)}, under ingest {len(load)})")
    if idle_refresh and load_refresh:
        a, b = statistics.median(idle_refresh), statistics.median(load_refresh)
        print(
            f"dashboard refresh (build_snapshot, read-only): idle median {a:.1f} ms, under ingest median "
            f"{b:.1f} ms: x{b / a:.2f} (reported, no target)"
        )


if __name__ == "__main__":
    main()
