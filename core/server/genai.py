"""OpenTelemetry GenAI spans as usage records (the fields `Recorder.record()` takes).

A span is an LLM call when it names a provider (`gen_ai.provider.name`, or the older `gen_ai.system`) and
is not a wrapper around calls (an agent invocation or a tool: `gen_ai.operation.name` invoke_agent,
create_agent, execute_tool, whose tokens are the sum of the calls inside and would count twice). Everything
else is ignored and counted. Attribute names follow the GenAI semantic conventions, with the spellings
older instrumentations still send:

    model          gen_ai.response.model, else gen_ai.request.model
    input tokens   gen_ai.usage.input_tokens (legacy gen_ai.usage.prompt_tokens)
    output tokens  gen_ai.usage.output_tokens (legacy gen_ai.usage.completion_tokens)
    cache read     gen_ai.usage.cache_read.input_tokens (older gen_ai.usage.cache_read_input_tokens)
    cache write    gen_ai.usage.cache_creation.input_tokens (older gen_ai.usage.cache_creation_input_tokens)
    latency        the span's duration;  ts: its start
    error          span status ERROR or `error.type` set; the kind from error.type
    request_id     trace id + span id, so a span an exporter sends again is stored once

The conventions count cached tokens inside input_tokens, as llmpulse does; an instrumentation that reports
Anthropic's own input_tokens (without the cached ones) shows fewer input than cached tokens, and those
are then added. Numbers are passed on as sent: the Recorder's validation judges them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from llmpulse.core.server.config import Attribution

# gen_ai.provider.name values (and gen_ai.system's) that llmpulse spells as another provider id.
PROVIDER_IDS = {
    "gcp.gemini": "gemini",
    "gcp.gen_ai": "gemini",
    "gcp.vertex_ai": "gemini",
    "vertex_ai": "gemini",
    "google": "gemini",
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.inference": "azure",
    "mistral_ai": "mistral",
    "x_ai": "xai",
}
_TOKEN_ATTRS = (
    ("input_tokens", ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")),
    ("output_tokens", ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")),
    ("cache_read_tokens", ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")),
    (
        "cache_write_tokens",
        ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens"),
    ),
)
SPAN_ATTRIBUTES = frozenset(
    (
        "gen_ai.provider.name",
        "gen_ai.system",
        "gen_ai.operation.name",
        "gen_ai.response.model",
        "gen_ai.request.model",
        "error.type",
    )
    + tuple(key for _, keys in _TOKEN_ATTRS for key in keys)
)
WRAPPER_OPERATIONS = frozenset(("invoke_agent", "create_agent", "execute_tool", "invoke_workflow"))
STATUS_CODE_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR


# error.type (an exception's class name or an HTTP status) -> llmpulse's error kinds (see llmpulse.core.vocabulary.ErrorKind)
_ERROR_WORDS = (
    ("ratelimit", "rate_limited"),
    ("authentication", "auth"),
    ("permissiondenied", "auth"),
    ("timeout", "timeout"),
    ("connection", "connect"),
    ("overloaded", "overloaded"),
    ("internalserver", "server_error"),
    ("quota", "quota"),
)


def error_kind(error_type: str | None) -> str:
    if not error_type:
        return "error"
    if error_type.isdigit():
        from llmpulse.core.probe import classify_error

        return classify_error(int(error_type), b"")
    low = error_type.rsplit(".", 1)[-1].lower()
    for word, kind in _ERROR_WORDS:
        if word in low:
            return kind
    return error_type[:100]


def value_of(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value" or which == "kvlist_value":
        return None  # no field of a record is a list or a map
    return getattr(v, which)


@dataclass
class SpanBatch:
    records: list[dict[str, Any]] = field(default_factory=list)
    spans: int = 0
    ignored: int = 0  # not a GenAI call


def records_from_request(request: ExportTraceServiceRequest, attribution: Attribution) -> SpanBatch:
    """The usage records in an OTLP export (fields for Recorder.record), with the spans counted."""
    out = SpanBatch()
    records = out.records
    who = tuple(
        (name, keys)
        for name, keys in (
            ("agent", attribution.agent),
            ("department", attribution.department),
            ("user", attribution.user),
            ("task_type", attribution.task_type),
        )
        if keys
    )
    # Only these attributes are read: taking an attribute's value out of protobuf costs more than the
    # rest of the span's conversion, and instrumentations send many more (server.address, ids...).
    wanted = SPAN_ATTRIBUTES.union(*(keys for _, keys in who))
    for resource_spans in request.resource_spans:
        resource = {kv.key: value_of(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.spans += 1
                attrs: dict[str, Any] = {}
                for kv in span.attributes:
                    key = kv.key
                    if key in wanted:
                        v = kv.value
                        which = v.WhichOneof("value")
                        if which is not None and which != "array_value" and which != "kvlist_value":
                            attrs[key] = getattr(v, which)
                get = attrs.get
                provider = get("gen_ai.provider.name", get("gen_ai.system"))
                if provider is None or get("gen_ai.operation.name") in WRAPPER_OPERATIONS:
                    out.ignored += 1
                    continue
                if type(provider) is str:
                    provider = PROVIDER_IDS.get(provider, provider)
                fields: dict[str, Any] = {
                    "provider": provider,
                    "model": get("gen_ai.response.model", get("gen_ai.request.model")),
                }
                for name, keys in _TOKEN_ATTRS:
                    for key in keys:
                        value = get(key)
                        if value is not None:
                            fields[name] = value
                            break
                tin, read, write = (
                    fields.get("input_tokens"),
                    fields.get("cache_read_tokens", 0),
                    fields.get("cache_write_tokens", 0),
                )
                if type(tin) is int and type(read) is int and type(write) is int and 0 <= tin < read + write:
                    fields["input_tokens"] = tin + read + write  # reported without the cached ones (see above)
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                if start:
                    fields["ts"] = start / 1e9
                    if end >= start:
                        fields["latency_ms"] = (end - start) / 1e6
                error_type = get("error.type")
                if error_type is not None or span.status.code == STATUS_CODE_ERROR:
                    fields["status"] = "error"
                    fields["error_kind"] = error_kind(None if error_type is None else str(error_type))
                trace_id, span_id = span.trace_id, span.span_id
                if trace_id and span_id:
                    fields["request_id"] = trace_id.hex() + span_id.hex()
                for field_name, attr_keys in who:
                    # the first of the names set on the span, else on the resource
                    for key in attr_keys:
                        value = get(key)
                        if value is None or value == "":
                            value = resource.get(key)
                        if value is not None and value != "":
                            fields[field_name] = value
                            break
                records.append(fields)
    return out
