"""A usage record — one LLM call — and the one validation path every way in goes through
(the Python recorder, `llmpulse record`, `llmpulse import`)."""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import math
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from llmpulse.core.errors import LlmpulseError
from llmpulse.core.redact import redact

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
# Bounds on what one call can be. Far beyond any real call, far below what overflows a sum or a price:
# 2**63 tokens would charge trillions and poison every roll-up it is added to.
MAX_TOKENS = 1_000_000_000
MAX_LATENCY_MS = 86_400_000.0  # a day
# A call's latency is kept in whole milliseconds (rounded half to even): an LLM call takes tens of ms to
# minutes and its network jitter is milliseconds, so a fraction of one is noise, not information. SQLite
# stores a REAL value without a fraction as a 1-3 byte integer instead of an 8-byte float (issue 14);
# readers still get a float. Every figure (p50/p95, histogram buckets) is of the rounded value.
MAX_TS = 7_258_118_400.0  # 2200-01-01 UTC: later is a unit mistake (ns, µs)
MAX_LINE_BYTES = 1 << 20  # one import line; longer is reported with its number, never held in memory


class RecordError(LlmpulseError, ValueError):
    """A record that cannot be stored; the message names the field and what is expected."""


def provider_typo(provider: str, known: Collection[str]) -> str | None:
    """The known provider id `provider` is one slip away from ("opneai" -> "openai"), or None. Stored as
    written, a typo would split that provider's spend and read as a model of unknown price."""
    if not known or provider in known:
        return None
    close = difflib.get_close_matches(provider, list(known), n=1, cutoff=0.8)
    return close[0] if close and abs(len(close[0]) - len(provider)) <= 1 else None


def refuse_provider_typo(provider: str, known: Collection[str]) -> None:
    close = provider_typo(provider, known)
    if close is not None:
        raise RecordError(f"provider: found {provider!r}; did you mean {close!r}? (a new provider is configured first)")


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
    cost_usd: float | None = None  # our estimate, set at ingest; None = price unknown
    # What the provider says the call cost (OpenRouter's usage.cost, an imported line's cost_usd), kept
    # beside the estimate: never used in its place, never dropped.
    reported_cost_usd: float | None = None
    source_hash: str | None = None  # an imported line's own content hash (its ts may be absent)

    def dedupe_key(self) -> str | None:
        """For a record without a request_id, an imported line's content hash: importing twice counts
        once. A record with a request_id is deduplicated by it (its own unique index: the id is stored
        once, not again as a key). A live call without a request_id is its own event: never merged."""
        if self.request_id:
            return None
        if self.source_hash:
            return "h:" + self.source_hash
        return None


def _timestamp(value: Any, now: float) -> float:
    if value is None:
        return now
    if isinstance(value, bool):
        raise RecordError(f"ts: found {value!r}; expected unix seconds or an ISO 8601 time")
    if isinstance(value, (int, float)):
        seconds = float(value / 1000.0 if value > 1e11 else value) if math.isfinite(value) else -1.0
        if not 0 <= seconds <= MAX_TS:  # milliseconds are common in logs; larger is not a time
            raise RecordError(f"ts: found {_shown(value)}; expected unix seconds or an ISO 8601 time before 2200")
        return seconds
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(f"ts: found {value!r}; expected unix seconds or an ISO 8601 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        seconds = parsed.timestamp()
        if not 0 <= seconds <= MAX_TS:
            raise RecordError(f"ts: found {value!r}; expected a time between 1970 and 2200")
        return seconds
    raise RecordError(f"ts: found {type(value).__name__}; expected unix seconds or an ISO 8601 time")


def _tokens(name: str, value: Any) -> int:
    if value is None:
        return 0
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise RecordError(f"{name}: found {_shown(value)}; expected a whole number from 0 to {MAX_TOKENS:,}")
    if not 0 <= value <= MAX_TOKENS:
        raise RecordError(f"{name}: found {_shown(value)}; expected a whole number from 0 to {MAX_TOKENS:,}")
    return int(value)


def _shown(value: Any) -> str:
    """A found value for an error line: a 400-digit number is not repeated in full."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def _text(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise RecordError(f"{name}: found {value!r}; expected a string")
    text = str(value).strip()
    if len(text) > MAX_TEXT:
        raise RecordError(f"{name}: found {len(text)} characters; expected at most {MAX_TEXT}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): no database or terminal takes it
            raise RecordError(f"{name}: holds a lone surrogate; expected valid Unicode text") from None
    return text or None


def tokens_from_raw_usage(provider: str, raw: Any) -> dict[str, int]:
    """Token counts from a provider's own `usage` object (OpenAI chat/responses, Anthropic, Gemini
    usageMetadata), read by genai-prices' extract_usage."""
    if not isinstance(raw, Mapping):
        raise RecordError(f"usage: found {type(raw).__name__}; expected the provider's usage object")
    for key, value in raw.items():
        # A count of the wrong type gets our own words; genai-prices would say "Missing value at ...".
        # (null is allowed: Anthropic sends "cache_creation_input_tokens": null)
        counted = isinstance(key, str) and key.endswith(("_tokens", "TokenCount")) and value is not None
        if counted and (isinstance(value, bool) or not isinstance(value, int)):
            text = redact(repr(value))  # redacted before it is cut: a pasted key shows no part of itself
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise RecordError(f"usage.{key}: found {shown}; expected a whole number of tokens")
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
            cache_read = usage.cache_read_tokens or 0
            # DeepSeek reports its cache hits in its own field (prompt_tokens counts them too); genai-prices'
            # OpenAI shape does not read it, and a hit priced as a fresh token overstates the cost ~4x.
            hits = raw.get("prompt_cache_hit_tokens")
            if isinstance(hits, int) and not isinstance(hits, bool) and hits > cache_read:
                cache_read = hits
            found = {
                "input_tokens": usage.input_tokens or 0,
                "output_tokens": usage.output_tokens or 0,
                "cache_read_tokens": cache_read,
                "cache_write_tokens": usage.cache_write_tokens or 0,
            }
        except Exception as exc:  # the library raises several kinds for a shape it does not know
            last = exc
            continue
        # The provider's numbers pass the same bounds as ours: 1e308 prompt tokens is not a call.
        return {name: _tokens(f"usage: {name}", value) for name, value in found.items()}
    raise RecordError(
        f"usage: not a usage object genai-prices knows ({last}); expected e.g. "
        '{"prompt_tokens": 10, "completion_tokens": 5}'
    )


def _reported_cost(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise RecordError(f"{name}: found {value!r}; expected a number of US dollars >= 0")
    return float(value)


def content_hash(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


def decode_line(line: str | bytes) -> Any:
    """A line's JSON value; RecordError for a line that is not UTF-8 JSON."""
    try:
        if isinstance(line, bytes):
            # Decoded here rather than by json.loads, which guesses the encoding of every line first.
            return json.loads(line.decode("utf-8-sig" if line.startswith(b"\xef\xbb\xbf") else "utf-8"))
        return json.loads(line)
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"not UTF-8 (byte 0x{exc.object[exc.start]:02x} at byte {exc.start + 1}); expected UTF-8 JSON"
        ) from None
    except ValueError as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise RecordError(f"not JSON ({why}); expected one JSON object per line") from None
    except RecursionError:
        raise RecordError("nested too deeply; expected one flat JSON object per line") from None


def record_from_line(line: str | bytes, now: float) -> UsageRecord:
    """One line of the import format (JSON Lines): POST /v1/records reads each line with this.
    RecordError for a line that is not JSON or not a good record. A record without a request_id is keyed
    by the line's content, so importing the same line again counts it once (a line without ts is the
    same record next time)."""
    data = decode_line(line)
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
    reported = _reported_cost("cost_usd", data.get("cost_usd"))
    if data.get("usage") is not None:
        from_raw = tokens_from_raw_usage(provider, data["usage"])
        tokens = {k: tokens[k] or from_raw[k] for k in TOKEN_FIELDS}
        if reported is None:  # OpenRouter puts what it charged in the usage object
            reported = _reported_cost("usage.cost", data["usage"].get("cost"))
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
            or not math.isfinite(latency)
            or not 0 <= latency <= MAX_LATENCY_MS
        ):
            raise RecordError(
                f"latency_ms: found {_shown(latency)}; expected milliseconds from 0 to {MAX_LATENCY_MS:,.0f} (a day)"
            )
        latency = float(round(latency))  # whole milliseconds (see MAX_LATENCY_MS)
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
        reported_cost_usd=reported,
    )


# -- the stored form ---------------------------------------------------------------------------------
# A record is stored as one usage_calls row (numbers) pointing at one usage_attrs row (the attribution:
# few distinct combinations, shared by many calls). Text columns of usage_attrs hold '' for "none" so
# equal attributions compare equal (NULLs never do); the usage_records view turns '' back to NULL.
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


def attribution_key(get: Callable[[str], Any]) -> tuple[Any, ...]:
    """A record's attribution fields exactly as given (ATTR_FIELDS order), read with its mapping's `get`:
    what the Recorder and the import remember a validated attribution by, so a repeat skips straight to
    the numbers. Spelled out rather than tuple(map(get, ATTR_FIELDS)), which took twice as long."""
    return (
        get("provider"),
        get("model"),
        get("status"),
        get("error_kind"),
        get("is_fallback"),
        get("fallback_from"),
        get("department"),
        get("agent"),
        get("user"),
        get("task_type"),
        get("category"),
        get("endpoint"),
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
    "cost_nusd",  # our estimate in nano-dollars (pricing.NANO_USD): rows carry dollars, the INSERT converts
    "request_id",
    "reported_cost_usd",
)


def attrs_key(attrs: tuple[Any, ...]) -> int:
    """usage_attrs.key: a 64-bit digest of an attribution (ATTR_FIELDS order), the one indexed column
    an attribution is found by. An index on all twelve text columns repeated every attribution's text
    (issue 14: as large as the table); a lookup by key checks the fields too, so a collision of two
    digests only means two rows to compare, never a wrong id."""
    digest = hashlib.blake2b(json.dumps(attrs).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def fill_attrs_keys(conn: sqlite3.Connection) -> None:
    """Migration 0199c: usage_attrs.key for the attributions already stored."""
    fields = ", ".join(ATTR_FIELDS)
    rows = conn.execute(f"SELECT id, {fields} FROM usage_attrs").fetchall()
    conn.executemany("UPDATE usage_attrs SET key = ? WHERE id = ?", [(attrs_key(tuple(r[1:])), r[0]) for r in rows])


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
        r.reported_cost_usd,
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
        or tin > MAX_TOKENS
        or tout > MAX_TOKENS
    ):
        return None
    ts = g("ts")
    if ts is None:
        ts = now()
    elif (type(ts) is not float and type(ts) is not int) or not 0 <= ts <= MAX_TS:
        return None
    latency = g("latency_ms")
    if latency is not None:
        if (type(latency) is not float and type(latency) is not int) or not 0 <= latency <= MAX_LATENCY_MS:
            return None
        latency = float(round(latency))  # as record_from_mapping: whole milliseconds
    rid = g("request_id")
    if rid is not None:
        if type(rid) is not str or not rid or len(rid) > MAX_TEXT or rid != rid.strip() or not rid.isascii():
            return None
        return (None, float(ts), tin, tout, tcr, tcw, latency, rid)
    return (None, float(ts), tin, tout, tcr, tcw, latency, None)


class JsonLines:
    """Judges the lines of one file (or one request body), each on its own, by its line number.

    The rule for repeats: identical lines without a request_id are separate calls (1,000 identical calls
    are 1,000), keyed by their content and how many times that content came before in this file, so
    importing the same file again still counts nothing twice. A request_id names one call: a second line
    with the same id and the same text is the same call (counted once); with different text it is
    reported as a conflict and the first line is kept. An id already in the database counts as already
    there."""

    def __init__(self, now: float, known_providers: Collection[str] = ()):
        self.now = now
        self.known_providers = frozenset(known_providers)  # one slip from these: a typo (refused)
        self._repeats: dict[str, int] = {}  # content hash -> lines with it so far
        # request_id -> its first line: number << 64 | hash of the text (one int, not a tuple of two: a
        # million ids in an import held ~70 MB less)
        self._ids: dict[str, int] = {}

    def record(self, line: str | bytes, number: int) -> UsageRecord:
        rec = record_from_line(line, self.now)
        refuse_provider_typo(rec.provider, self.known_providers)
        if rec.source_hash is not None:
            seen = self._repeats.get(rec.source_hash, 0)
            self._repeats[rec.source_hash] = seen + 1
            if seen:
                rec.source_hash = f"{rec.source_hash}#{seen}"
        elif rec.request_id is not None:
            text_hash = _text_hash(line)
            first = self._ids.setdefault(rec.request_id, number << 64 | text_hash)
            if first & _HASH_BITS != text_hash:
                raise RecordError(
                    f"request_id {rec.request_id!r}: line {first >> 64} has the same id with different content; "
                    "expected one line per call (the first is kept)"
                )
        return rec


def _text_hash(line: str | bytes) -> int:
    """A line's text for telling repeats of an id apart: without surrounding space, or a file's BOM."""
    text = line.strip()
    return _HASH_BITS & hash(
        text.removeprefix(b"\xef\xbb\xbf") if isinstance(text, bytes) else text.removeprefix("\ufeff")
    )


_HASH_BITS = (1 << 64) - 1


def _request_id_key(value: Any) -> str | None:
    """A request_id as record_from_mapping will store it (None where it will store none or refuse it)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value).strip() or None


class LineTooLong(RecordError):
    """A line longer than MAX_LINE_BYTES (read past, never held)."""


def read_lines(
    stream: BinaryIO, max_bytes: int = MAX_LINE_BYTES, give_up_after: int = 16
) -> Iterator[tuple[int, bytes | LineTooLong]]:
    """(line number, line) from a binary stream, never holding more than max_bytes of one line: a longer
    line is yielded as a LineTooLong and skipped. A stream with no line end in give_up_after times
    max_bytes (`import /dev/zero`) is not JSON Lines: the last item is a LineTooLong that says reading
    stopped, and nothing more is read."""
    number = 0
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) <= max_bytes or line.endswith(b"\n"):
            yield number, line
            continue
        skipped = len(line)
        while not line.endswith(b"\n"):
            line = stream.readline(max_bytes)
            if not line:
                break
            skipped += len(line)
            if skipped > give_up_after * max_bytes:
                yield (
                    number,
                    LineTooLong(
                        f"no line end in the first {skipped:,} bytes; expected JSON Lines (stopped reading here)"
                    ),
                )
                return
        yield number, LineTooLong(f"longer than {max_bytes:,} bytes; expected one JSON object per line")
