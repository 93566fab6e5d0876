"""POST /v1/traces over a real socket: OTLP protobuf and JSON, GenAI spans stored as priced usage, the
answers the OTLP/HTTP spec asks for (partial success, 400, 401, 415, 503 + Retry-After), retries
counted once, attribution from resource and span attributes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.proto.trace.v1.trace_pb2 import Status as SpanStatus

from llmpulse.core.config import load_context
from llmpulse.core.server.app import Server, ServerState
from llmpulse.core.server.config import Listener
from llmpulse.core.server.ingest import IngestQueue
from llmpulse.core.store import Store
from llmpulse.core.usage.recorder import pricing_for

TOKEN = "otlp-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PB = {**AUTH, "Content-Type": "application/x-protobuf"}
# Negotiated rates (USD per million tokens) so the test computes each cost on its own.
RATES = {"input": 2.0, "output": 8.0, "cache_read": 1.0}
TOML = """
[prices.overrides."openai/gpt-4o"]
input = 2.0
output = 8.0
cache_read = 1.0

[server.attributes]
department = ["team"]
task_type = ["app.task"]
"""
START_NS = int((time.time() - 60) * 1e9)


def kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def span(n: int, attrs: dict[str, object], *, ms: int = 640, error: bool = False) -> Span:
    return Span(
        trace_id=n.to_bytes(16, "big"),
        span_id=(n + 1).to_bytes(8, "big"),
        name=f"chat {n}",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=START_NS + n * 1000,
        end_time_unix_nano=START_NS + n * 1000 + ms * 1_000_000,
        attributes=[kv(k, v) for k, v in attrs.items()],
        status=SpanStatus(code=SpanStatus.STATUS_CODE_ERROR if error else SpanStatus.STATUS_CODE_UNSET),
    )


def export(spans: list[Span], service: str = "triage-bot", **resource: object) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [kv("service.name", service)] + [kv(k, v) for k, v in resource.items()]},
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    )


def chat(n: int, tin: int, tout: int, **extra: object) -> Span:
    attrs: dict[str, object] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o",
        "gen_ai.usage.input_tokens": tin,
        "gen_ai.usage.output_tokens": tout,
    }
    attrs.update(extra)
    return span(n, attrs)


def cost(tin: int, tout: int, cached: int = 0) -> float:
    return ((tin - cached) * RATES["input"] + tout * RATES["output"] + cached * RATES["cache_read"]) / 1e6


async def _start(tmp_path: Path, capacity: int | None = None, **queue_options: float) -> tuple[Server, Store]:
    (tmp_path / "llmpulse.toml").write_text(TOML)
    ctx = load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "o.db"), environ={})
    store = await Store.open(ctx.db_path)
    queue = None if capacity is None else IngestQueue(store, pricing_for(ctx), capacity, **queue_options)
    state = ServerState(ctx, store, ctx.config.server, ingest=queue)
    server = Server(state, Listener("127.0.0.1", 0, TOKEN))
    await server.start()
    return server, store


def rows(tmp_path: Path) -> list[dict]:
    with sqlite3.connect(tmp_path / "o.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM usage_records ORDER BY request_id")]


async def test_protobuf_genai_spans_become_priced_records_and_a_retry_counts_once(tmp_path):
    server, store = await _start(tmp_path)
    body = export(
        [
            chat(1, 812, 95),
            chat(2, 1200, 40, **{"gen_ai.usage.cache_read.input_tokens": 1000, "team": "Support"}),
            span(3, {"http.request.method": "GET", "url.full": "http://x/"}),  # not a GenAI call
            span(4, {"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai"}),  # a wrapper
            span(
                5,
                {
                    "gen_ai.system": "openai",  # the older attribute names
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.prompt_tokens": 10,
                    "gen_ai.usage.completion_tokens": 3,
                    "error.type": "openai.RateLimitError",
                },
                error=True,
            ),
        ],
        team="Engineering",
        **{"app.task": "triage"},
    ).SerializeToString()
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            r = await c.post("/v1/traces", content=body, headers=PB)
            assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-protobuf"
            answer = ExportTraceServiceResponse.FromString(r.content)
            assert not answer.HasField("partial_success")
            again = await c.post("/v1/traces", content=body, headers=PB)  # the exporter's retry
            assert again.status_code == 200
        counters = server.state.counters
        assert (counters["otlp_spans"], counters["otlp_spans_ignored"], counters["otlp_spans_stored"]) == (10, 4, 6)
    finally:
        await server.stop()
        await store.close()
    got = rows(tmp_path)
    assert len(got) == 3  # sent twice, stored once
    first, second, err = got
    assert (first["input_tokens"], first["output_tokens"], first["agent"]) == (812, 95, "triage-bot")
    assert first["department"] == "Engineering" and first["task_type"] == "triage"  # from the resource
    assert abs(first["cost_usd"] - cost(812, 95)) < 1e-12
    assert abs(first["latency_ms"] - 640) < 1e-6 and abs(first["ts"] - (START_NS + 1000) / 1e9) < 1e-3
    assert first["request_id"] == (1).to_bytes(16, "big").hex() + (2).to_bytes(8, "big").hex()
    assert second["department"] == "Support"  # the span's own attribute wins over the resource's
    assert second["cache_read_tokens"] == 1000 and abs(second["cost_usd"] - cost(1200, 40, 1000)) < 1e-12
    assert (err["status"], err["error_kind"], err["input_tokens"], err["output_tokens"]) == (
        "error",
        "rate_limited",
        10,
        3,
    )


async def test_json_mapping_with_hex_ids_and_string_int64(tmp_path):
    server, store = await _start(tmp_path)
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "my.library", "version": "1.0.0"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "parentSpanId": "eee19b7ec3c1b173",
                                "name": "chat gpt-4o",
                                "kind": 3,
                                "startTimeUnixNano": str(START_NS),
                                "endTimeUnixNano": str(START_NS + 250_000_000),
                                "attributes": [
                                    {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                                    {"key": "gen_ai.response.model", "value": {"stringValue": "gpt-4o"}},
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "300"}},
                                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 20}},
                                    {"key": "user.id", "value": {"stringValue": "dana"}},
                                ],
                                "status": {},
                                "someFutureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as c:
            r = await c.post("/v1/traces", json=doc)
            assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
            assert r.json() == {}
    finally:
        await server.stop()
        await store.close()
    (rec,) = rows(tmp_path)
    assert rec["request_id"] == trace_id + span_id
    assert (rec["input_tokens"], rec["output_tokens"], rec["agent"], rec["user"]) == (300, 20, "checkout", "dana")
    assert abs(rec["latency_ms"] - 250) < 1e-6 and abs(rec["cost_usd"] - cost(300, 20)) < 1e-12


async def test_partial_success_names_what_was_wrong(tmp_path):
    server, store = await _start(tmp_path)
    body = export(
        [
            chat(1, 100, 10),
            chat(2, -5, 10),  # a negative count
            span(3, {"gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 5}),  # no model
            chat(4, 100, 10, **{"gen_ai.usage.cache_read.input_tokens": "80"}),  # a count sent as a string
        ]
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as c:
            r = await c.post("/v1/traces", content=body.SerializeToString(), headers=PB)
            answer = ExportTraceServiceResponse.FromString(r.content)
            assert r.status_code == 200 and answer.partial_success.rejected_spans == 3
            message = answer.partial_success.error_message
            assert "input_tokens: found -5" in message and "model: missing" in message
            assert "cache_read_tokens: found '80'" in message
            r = await c.post(
                "/v1/traces",
                content=json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}),
                headers={"Content-Type": "application/json"},
            )
            assert r.status_code == 400 and "traceId" in r.json()["message"]
    finally:
        await server.stop()
        await store.close()
    assert [r["input_tokens"] for r in rows(tmp_path)] == [100]


async def test_bad_body_wrong_type_wrong_token(tmp_path):
    server, store = await _start(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            r = await c.post("/v1/traces", content=b"\xff\xff\xff not protobuf", headers=PB)
            assert r.status_code == 400 and r.headers["Content-Type"] == "application/x-protobuf"
            status = Status.FromString(r.content)
            assert status.code == 3 and "protobuf" in status.message
            r = await c.post("/v1/traces", content=b"{", headers={**AUTH, "Content-Type": "application/json"})
            assert r.status_code == 400 and "not JSON" in r.json()["message"]
            r = await c.post("/v1/traces", content=b"x", headers={**AUTH, "Content-Type": "text/plain"})
            assert r.status_code == 415 and "application/x-protobuf" in r.json()["message"]
            r = await c.post(
                "/v1/traces",
                content=export([chat(1, 1, 1)]).SerializeToString(),
                headers={"Content-Type": "application/x-protobuf", "Authorization": "Bearer nope"},
            )
            assert r.status_code == 401
    finally:
        await server.stop()
        await store.close()
    assert rows(tmp_path) == []


async def test_full_queue_answers_503_with_retry_after_and_nothing_accepted_is_lost(tmp_path):
    # A queue of 3 that never flushes on its own: the second export does not fit.
    server, store = await _start(tmp_path, 3, flush_interval=3600, batch_size=10_000)
    queue = server.state.queue()
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=PB) as c:
            r = await c.post("/v1/traces", content=export([chat(i, 10, 1) for i in (1, 3, 5)]).SerializeToString())
            assert r.status_code == 200
            r = await c.post("/v1/traces", content=export([chat(7, 10, 1)]).SerializeToString())
            assert r.status_code == 503 and r.headers["Retry-After"].isdigit()
            assert Status.FromString(r.content).code == 14
            assert queue.waiting == 3 and queue.refused_full == 1
    finally:
        await server.stop()  # stores what was accepted
        await store.close()
    assert len(rows(tmp_path)) == 3


async def test_the_real_otlp_exporter_retries_a_full_queue_and_its_spans_are_stored(tmp_path, monkeypatch):
    """OpenTelemetry's own OTLP/HTTP exporter (opentelemetry-exporter-otlp-proto-http) retries 429, 502,
    503 and 504 and waits what Retry-After says: our full-queue 503 is one it retries, and the span it
    sends again once the queue has drained is stored."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult

    import llmpulse.core.server.otlp as otlp_route

    monkeypatch.setattr(otlp_route, "RETRY_AFTER_S", 1)  # the shortest whole-second wait: a fast test
    server, store = await _start(tmp_path, 3, flush_interval=3600, batch_size=10_000)
    queue = server.state.queue()
    tracer = TracerProvider().get_tracer("test")
    sdk_span = tracer.start_span(
        "chat gpt-4o",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 321,
            "gen_ai.usage.output_tokens": 12,
        },
    )
    sdk_span.end()
    exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=PB) as c:  # the queue is now full
            r = await c.post("/v1/traces", content=export([chat(i, 10, 1) for i in (1, 3, 5)]).SerializeToString())
            assert r.status_code == 200
        exporting = asyncio.create_task(asyncio.to_thread(exporter.export, [sdk_span]))
        for _ in range(500):  # the exporter's first try meets the full queue
            if queue.refused_full:
                break
            await asyncio.sleep(0.01)
        assert queue.refused_full == 1 and not exporting.done()
        await queue.recorder.flush()  # the queue drains before the exporter's retry
        assert await asyncio.wait_for(exporting, 10) == SpanExportResult.SUCCESS
        assert queue.refused_full == 1 and queue.accepted == 4
    finally:
        exporter.shutdown()
        await server.stop()
        await store.close()
    assert sorted(r["input_tokens"] for r in rows(tmp_path)) == [10, 10, 10, 321]
