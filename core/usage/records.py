"""A usage record — one LLM call — and the one validation path every way in goes through
(the Python recorder, `llmpulse record`, `llmpulse import`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llmpulse.core.errors import LlmpulseError

STATUSES = ("ok", "error")
TEXT_FIELDS = (
    "error_kind",
    "fallback_from",
    "department",
    "agent",
    "user",
    "task_type",
    "category",
    "endpoint",
    "request_id",
)
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
KNOWN_FIELDS = frozenset(
    ("ts", "provider", "model", "latency_ms", "status", "is_fallback", "usage", "cost_usd") + TEXT_FIELDS + TOKEN_FIELDS
)
MAX_TEXT = 200


class RecordError(LlmpulseError, ValueError):
    """A record that cannot be stored; the message names the field and what is expected."""


@dataclass
class UsageRecord:
    ts: float
    provider: str
    model: str
    input_tokens: int = 0  # all prompt tokens, cached ones included (genai-prices' convention)
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    latency_ms: float | None = None
    status: str = "ok"
    error_kind: str | None = None
    is_fallback: bool = False
    fallback_from: str | None = None
    department: str | None = None
    agent: str | None = None
    user: str | None = None
    task_type: str | None = None
    category: str | None = None
    endpoint: str | None = None
    request_id: str | None = None
    cost_usd: float | None = None  # set at ingest; None = price unknown
    source_hash: str | None = None  # an imported line's own content hash (its ts may be absent)

    def dedupe_key(self) -> str | None:
        """request_id when the caller has one, else an imported line's content hash: importing twice
        counts once. A live call recorded without a request_id is its own event: no key, never merged."""
        if self.request_id:
            return "id:" + self.request_id
        if self.source_hash:
            return "h:" + self.source_hash
        return None


def _timestamp(value: Any, now: float) -> float:
    if value is None:
        return now
    if isinstance(value, bool):
        raise RecordError(f"ts: found {value!r}; expected unix seconds or an ISO 8601 time")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise RecordError(f"ts: found {value!r}; expected unix seconds or an ISO 8601 time")
        return float(value / 1000.0 if value > 1e11 else value)  # milliseconds are common in logs
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(f"ts: found {value!r}; expected unix seconds or an ISO 8601 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    raise RecordError(f"ts: found {type(value).__name__}; expected unix seconds or an ISO 8601 time")


def _tokens(name: str, value: Any) -> int:
    if value is None:
        return 0
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise RecordError(f"{name}: found {value!r}; expected a whole number >= 0")
    if value < 0:
        raise RecordError(f"{name}: found {value!r}; expected a whole number >= 0")
    return int(value)


def _text(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise RecordError(f"{name}: found {value!r}; expected a string")
    text = str(value).strip()
    if len(text) > MAX_TEXT:
        raise RecordError(f"{name}: found {len(text)} characters; expected at most {MAX_TEXT}")
    return text or None


def tokens_from_raw_usage(provider: str, raw: Any) -> dict[str, int]:
    """Token counts from a provider's own `usage` object (OpenAI chat/responses, Anthropic, Gemini
    usageMetadata), read by genai-prices' extract_usage."""
    if not isinstance(raw, Mapping):
        raise RecordError(f"usage: found {type(raw).__name__}; expected the provider's usage object")
    body = (
        {"usageMetadata": raw}
        if any(k in raw for k in ("promptTokenCount", "candidatesTokenCount"))
        else {"usage": raw}
    )
    price_provider = {"gemini": "google"}.get(provider, provider)
    if "usageMetadata" in body:
        price_provider = "google"
    elif "cache_read_input_tokens" in raw or "cache_creation_input_tokens" in raw:
        price_provider = "anthropic"
    elif price_provider not in ("anthropic", "google"):
        price_provider = "openai"  # OpenAI's shape: the common one of compatible APIs
    flavors = ("chat", "responses") if price_provider == "openai" else ("default",)
    last: Exception | None = None
    for flavor in flavors:
        try:
            import genai_prices

            usage = genai_prices.extract_usage(body, provider_id=price_provider, api_flavor=flavor).usage
            return {
                "input_tokens": int(usage.input_tokens or 0),
                "output_tokens": int(usage.output_tokens or 0),
                "cache_read_tokens": int(usage.cache_read_tokens or 0),
                "cache_write_tokens": int(usage.cache_write_tokens or 0),
            }
        except Exception as exc:  # the library raises several kinds for a shape it does not know
            last = exc
    raise RecordError(
        f"usage: not a usage object genai-prices knows ({last}); expected e.g. "
        '{"prompt_tokens": 10, "completion_tokens": 5}'
    )


def content_hash(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


def record_from_line(line: str | bytes, now: float) -> UsageRecord:
    """One line of the import format (JSON Lines): `llmpulse import` and POST /v1/records read each line
    with this. RecordError for a line that is not JSON or not a good record. A record without a
    request_id is keyed by the line's content, so importing the same line again counts it once (a line
    without ts is the same record next time)."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise RecordError(f"not JSON ({why}); expected one JSON object per line") from None
    rec = record_from_mapping(data, now)
    if rec.request_id is None:
        rec.source_hash = content_hash(data)
    return rec


def record_from_mapping(data: Mapping[str, Any], now: float) -> UsageRecord:
    """Validate one record; raise RecordError naming the first thing wrong."""
    if not isinstance(data, Mapping):
        raise RecordError(f"found {type(data).__name__}; expected a JSON object")
    unknown = sorted(set(data) - KNOWN_FIELDS)
    if unknown:
        raise RecordError(f"{unknown[0]}: unknown field; expected one of {', '.join(sorted(KNOWN_FIELDS))}")
    provider = _text("provider", data.get("provider"))
    model = _text("model", data.get("model"))
    if not provider:
        raise RecordError('provider: missing; expected a provider id like "openai"')
    if not model:
        raise RecordError('model: missing; expected a model name like "gpt-4o"')
    tokens: dict[str, Any] = {name: _tokens(name, data.get(name)) for name in TOKEN_FIELDS}
    if data.get("usage") is not None:
        from_raw = tokens_from_raw_usage(provider, data["usage"])
        tokens = {k: tokens[k] or from_raw[k] for k in TOKEN_FIELDS}
    if tokens["cache_read_tokens"] + tokens["cache_write_tokens"] > tokens["input_tokens"]:
        raise RecordError(
            f"input_tokens: found {tokens['input_tokens']}, fewer than the cached tokens "
            f"({tokens['cache_read_tokens']} read + {tokens['cache_write_tokens']} written); expected "
            "all prompt tokens, cached ones included"
        )
    status = data.get("status", "ok") or "ok"
    if status not in STATUSES:
        raise RecordError(f"status: found {status!r}; expected ok or error")
    latency = data.get("latency_ms")
    if latency is not None:
        if (
            isinstance(latency, bool)
            or not isinstance(latency, (int, float))
            or latency < 0
            or not math.isfinite(latency)
        ):
            raise RecordError(f"latency_ms: found {latency!r}; expected a number of milliseconds >= 0")
        latency = float(latency)
    is_fallback = data.get("is_fallback", False)
    if not isinstance(is_fallback, bool):
        raise RecordError(f"is_fallback: found {is_fallback!r}; expected true or false")
    texts: dict[str, Any] = {name: _text(name, data.get(name)) for name in TEXT_FIELDS}
    if texts["fallback_from"]:
        is_fallback = True
    return UsageRecord(
        ts=_timestamp(data.get("ts"), now),
        provider=provider,
        model=model,
        latency_ms=latency,
        status=status,
        is_fallback=is_fallback,
        **tokens,
        **texts,
    )


# -- the stored form ---------------------------------------------------------------------------------
# A record is stored as one usage_calls row (numbers) pointing at one usage_attrs row (the attribution:
# few distinct combinations, shared by many calls). Text columns of usage_attrs hold '' for "none" so
# their UNIQUE constraint matches (NULLs never compare equal); the usage_records view turns '' back to NULL.
ATTR_FIELDS = (
    "provider",
    "model",
    "status",
    "error_kind",
    "is_fallback",
    "fallback_from",
    "department",
    "agent",
    "user",
    "task_type",
    "category",
    "endpoint",
)
CALL_COLUMNS = (
    "dedupe_key",
    "ts",
    "attrs",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "latency_ms",
    "cost_usd",
    "request_id",
)


def attrs_of(r: UsageRecord) -> tuple[Any, ...]:
    """A record's attribution as stored in usage_attrs (ATTR_FIELDS order)."""
    return (
        r.provider,
        r.model,
        r.status,
        r.error_kind or "",
        int(r.is_fallback),
        r.fallback_from or "",
        r.department or "",
        r.agent or "",
        r.user or "",
        r.task_type or "",
        r.category or "",
        r.endpoint or "",
    )


def call_row(r: UsageRecord, attrs: Any) -> tuple[Any, ...]:
    """A record as its usage_calls row (CALL_COLUMNS order); attrs: a usage_attrs id, or attrs_of(r) for
    ingest to resolve."""
    return (
        r.dedupe_key(),
        r.ts,
        attrs,
        r.input_tokens,
        r.output_tokens,
        r.cache_read_tokens,
        r.cache_write_tokens,
        r.latency_ms,
        r.cost_usd,
        r.request_id,
    )


FAST_KEYS = frozenset(("ts", "latency_ms", "request_id") + TOKEN_FIELDS + ATTR_FIELDS)


def fast_numbers(f: Mapping[str, Any], now: Callable[[], float]) -> tuple[Any, ...] | None:
    """(dedupe_key, ts, input, output, cache_read, cache_write, latency_ms, request_id) for a record whose
    attribution is already known good and whose numbers are plainly well typed — what an application's
    recorder sends call after call — or None to take record_from_mapping's careful path, which accepts
    more (ISO times, milliseconds, raw usage objects, whitespace) and names what is wrong. Both paths
    store the same row for the same well-typed input (tests/test_usage checks it)."""
    g = f.get
    tin, tout, tcr, tcw = (
        g("input_tokens", 0),
        g("output_tokens", 0),
        g("cache_read_tokens", 0),
        g("cache_write_tokens", 0),
    )
    if (
        type(tin) is not int
        or type(tout) is not int
        or type(tcr) is not int
        or type(tcw) is not int
        or tout < 0
        or tcr < 0
        or tcw < 0
        or tin < tcr + tcw
    ):
        return None
    ts = g("ts")
    if ts is None:
        ts = now()
    elif (type(ts) is not float and type(ts) is not int) or not 0 <= ts < 1e11:
        return None
    latency = g("latency_ms")
    if latency is not None:
        if (type(latency) is not float and type(latency) is not int) or not 0 <= latency < 1e12:
            return None
        latency = float(latency)
    rid = g("request_id")
    if rid is not None:
        if type(rid) is not str or not rid or len(rid) > MAX_TEXT or rid != rid.strip():
            return None
        return ("id:" + rid, float(ts), tin, tout, tcr, tcw, latency, rid)
    return (None, float(ts), tin, tout, tcr, tcw, latency, None)
