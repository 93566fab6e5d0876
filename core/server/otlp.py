"""`POST /v1/traces`: the OTLP/HTTP trace receiver (protobuf and JSON), GenAI spans in as usage.

Answers as the OTLP/HTTP specification says, in the request's own content type:
- 200 with an ExportTraceServiceResponse; when some GenAI spans could not be stored as records,
  `partial_success` says how many (`rejected_spans`) and why (`error_message`). Spans that are not GenAI
  calls are accepted and ignored (not rejected: an exporter must not retry them);
- 400 with a google.rpc.Status when the body does not decode (never retried by exporters);
- 415 for a content type other than application/x-protobuf or application/json;
- 503 with Retry-After when the ingest queue is full or the daemon is stopping (exporters retry).

The JSON form is OTLP's JSON mapping of the same messages: ids as hex strings (not base64), enums as
integers, 64-bit integers as strings or numbers, unknown fields ignored.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from llmpulse.core.errors import LlmpulseError
from llmpulse.core.server.app import STATE, ServerState, read_body
from llmpulse.core.server.genai import records_from_request
from llmpulse.core.server.ingest import RETRY_AFTER_S

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_REASONS = 5  # reasons quoted in error_message; the count says how many in all
_INVALID_ARGUMENT, _UNAVAILABLE = 3, 14  # google.rpc.Code


class BadRequest(LlmpulseError, ValueError):
    """A body that does not decode as an ExportTraceServiceRequest."""


def _message(message: Any, content_type: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    if content_type == JSON:
        body = json_format.MessageToJson(message, indent=None).encode()
    else:
        body = message.SerializeToString()
    return web.Response(body=body, status=status, content_type=content_type, headers=headers)


def _status(
    code: int, text: str, content_type: str, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    return _message(Status(code=code, message=text), content_type, status, headers)


def _hex_ids_to_base64(span_like: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = span_like.get(key)
        if isinstance(value, str) and value:
            try:
                span_like[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise BadRequest(f"{key}: found {value[:40]!r}; expected a hex string") from None


def decode_json(body: bytes) -> ExportTraceServiceRequest:
    """OTLP JSON: the protobuf JSON mapping except that trace and span ids are hex."""
    import json

    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadRequest("expected a JSON object (ExportTraceServiceRequest)")
    ids = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
    try:
        for rs in data.get("resourceSpans") or data.get("resource_spans") or []:
            for ss in rs.get("scopeSpans") or rs.get("scope_spans") or []:
                for span in ss.get("spans") or []:
                    _hex_ids_to_base64(span, ids)
                    for link in span.get("links") or []:
                        _hex_ids_to_base64(link, ids)
        return json_format.ParseDict(data, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (AttributeError, TypeError) as exc:
        raise BadRequest(f"not an ExportTraceServiceRequest ({exc})") from None
    except json_format.ParseError as exc:
        raise BadRequest(f"not an ExportTraceServiceRequest ({exc})") from None


def decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, binascii.Error) as exc:
        raise BadRequest(f"not a protobuf ExportTraceServiceRequest ({exc})") from None
    return request


async def export_traces(request: web.Request) -> web.Response:
    state = request.app[STATE]
    content_type = request.content_type
    if content_type not in (PROTOBUF, JSON):
        state.counters["otlp_requests_unsupported_type"] += 1
        return web.json_response(
            {"code": _INVALID_ARGUMENT, "message": f"found {content_type!r}; expected {PROTOBUF} or {JSON}"},
            status=415,
        )
    queue = state.queue()
    retry = {"Retry-After": str(RETRY_AFTER_S)}
    if state.stopping or queue.full():
        queue.refused_full += 1
        why = "stopping" if state.stopping else "ingest queue full"
        return _status(_UNAVAILABLE, f"{why}; retry later", content_type, 503, retry)
    body = await read_body(request)
    try:
        export = decode_protobuf(body) if content_type == PROTOBUF else decode_json(body)
    except BadRequest as exc:
        state.counters["otlp_requests_bad"] += 1
        return _status(_INVALID_ARGUMENT, str(exc), content_type, 400)
    batch = records_from_request(export, state.config.attribution)
    if queue.full(len(batch.records)):
        queue.refused_full += 1
        return _status(_UNAVAILABLE, "ingest queue full; retry later", content_type, 503, retry)
    rejected = queue.put_many(batch.records)
    counters = state.counters
    counters["otlp_requests"] += 1
    counters["otlp_spans"] += batch.spans
    counters["otlp_spans_ignored"] += batch.ignored
    counters["otlp_spans_stored"] += len(batch.records) - len(rejected)
    counters["otlp_spans_rejected"] += len(rejected)
    answer = ExportTraceServiceResponse()
    if rejected:
        reasons = "; ".join(reason for _, reason in rejected[:MAX_REASONS])
        more = f" (and {len(rejected) - MAX_REASONS} more)" if len(rejected) > MAX_REASONS else ""
        answer.partial_success.rejected_spans = len(rejected)
        answer.partial_success.error_message = f"{len(rejected)} GenAI spans not stored as usage: {reasons}{more}"
    return _message(answer, content_type)


def install(app: web.Application, state: ServerState) -> None:
    app.router.add_post("/v1/traces", export_traces)
