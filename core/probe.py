"""Zero-cost probes: one free request per provider that proves both the key and the service.

Each provider is asked the cheapest question that needs a valid key (its model list, key info or
balance — never a completion, so a probe costs nothing: peers' health checks are billed LLM calls).
All providers are probed at once, each under its own deadline (an asyncio timeout around the whole
request, not just httpx's per-read timeouts, so a server that trickles bytes cannot hold a probe past
it); one that hangs delays no other. A probe never raises: every outcome is a `ProbeResult`.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmpulse.core.catalog import Provider
from llmpulse.core.http_answer import fetch
from llmpulse.core.probe_settings import ProbeSettings
from llmpulse.core.provider_kinds import KIND_FACTS, ProbeShape
from llmpulse.core.ratelimit import Balance, RateLimit, parse_rate_limit
from llmpulse.core.redact import body_line, redact
from llmpulse.core.vocabulary import ErrorKind, ProviderStatus

if TYPE_CHECKING:
    import httpx

# httpx (with the CLI it brings: ~0.1 s) is imported by the functions that send a request, so what only
# reads probe results (health, the dashboard, `check` with nothing configured) starts without it.

DEGRADED_KINDS = frozenset({"rate_limited", "overloaded", "slow"})
USER_AGENT = "llmpulse-probe"
MAX_ERROR_CHARS = 300
# A probe reads at most this much of an answer (inflated): the largest model list seen (OpenRouter,
# Together) is well under a megabyte; anything bigger is not a health answer.
PROBE_ANSWER_BYTES = 4 << 20


@dataclass(frozen=True)
class ProbeResult:
    provider_id: str
    name: str
    checked_at: float
    status: ProviderStatus
    error_kind: ErrorKind | None = None  # None when healthy
    error: str | None = None  # redacted, one line
    latency_ms: float | None = None
    http_status: int | None = None
    rate_limit: RateLimit | None = None
    balance: Balance | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.provider_id,
            "name": self.name,
            "checked_at": self.checked_at,
            "status": self.status,
            "error_kind": self.error_kind,
            "error": self.error,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "http_status": self.http_status,
            "rate_limit": self.rate_limit.to_json() if self.rate_limit else None,
            "balance": self.balance.to_json() if self.balance else None,
        }


def auth_headers(provider: Provider) -> dict[str, str]:
    """The headers that carry a provider's key in its own style (and Anthropic's version header).
    The key goes in a header, never in the URL. Shared by probes, the failover client and billing."""
    spec = provider.spec
    headers: dict[str, str] = {}
    key = provider.api_key.reveal() if provider.api_key else None
    if key:
        if spec.auth in ("bearer", "none"):
            headers["authorization"] = f"Bearer {key}"
        elif spec.auth in ("x-api-key", "x-goog-api-key", "api-key"):
            headers[spec.auth] = key
    headers.update(KIND_FACTS[spec.kind].extra_headers)
    return headers


def probe_request(provider: Provider) -> tuple[str, dict[str, str]]:
    """The URL and headers of a provider's probe."""
    spec = provider.spec
    url = provider.base_url + spec.probe_path
    if spec.api_version:
        url += f"?api-version={spec.api_version}"
    return url, {"user-agent": USER_AGENT, "accept": "application/json", **auth_headers(provider)}


def error_message(body: bytes) -> str:
    """The provider's own words from an error body, one line, redacted and shortened; an HTML error page
    (a proxy in front of the provider) comes down to its title."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return body_line(text, MAX_ERROR_CHARS)
    message: Any = data
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            message = err.get("message") or err.get("status") or err.get("type") or err
            code = err.get("code") or err.get("type") or err.get("status")
            if isinstance(code, str) and isinstance(message, str) and code not in message:
                message = f"{message} ({code})"
        elif isinstance(err, str):
            message = err
        elif "message" in data:
            message = data["message"]
    if not isinstance(message, str):
        message = json.dumps(message)
    return body_line(message, MAX_ERROR_CHARS)


# Error codes and types providers put in their JSON error bodies, read before any words: the words of a
# rate-limit answer often mention billing ("add a payment method", "check your plan and billing details").
_QUOTA_CODES = frozenset(
    {
        "insufficient_quota",  # OpenAI: credit used up, retrying will not help
        "billing_hard_limit_reached",
        "insufficient_balance",
        "billing_error",  # Anthropic's 402 type
        "payment_required",
    }
)
_RATE_CODES = frozenset(
    {
        "rate_limit_exceeded",  # OpenAI, Groq (error.code)
        "rate_limit_error",  # Anthropic (error.type)
        "requests",  # OpenAI / Groq error.type: which limit was hit
        "tokens",
        "input_tokens",
        "output_tokens",
    }
)
_BAD_KEY_CODES = frozenset({"invalid_api_key", "api_key_invalid", "authentication_error", "permission_error"})
_OVERLOADED_CODES = frozenset({"overloaded_error", "overloaded"})
# Words, read last, when the structured fields say nothing decisive. A 400 or 403 that says the money ran
# out (Anthropic's "credit balance is too low", xAI's "used all available credits") is quota, not the
# request's or the key's fault.
_QUOTA_WORDS = (
    "insufficient_quota",
    "insufficient balance",
    "insufficient_balance",
    "credit balance",
    "purchase credits",
    "available credits",
    "spending limit",
    "spend limit",
    "exceeded your current quota",
    "payment required",
    "suspended due to insufficient",
    "balance",
)
_RATE_WORDS = ("rate limit", "rate-limit", "per minute", "per second", "try again in", "please retry in", "too many")
_BAD_KEY_WORDS = (
    "api_key_invalid",
    "api key not valid",
    "invalid api key",
    "incorrect api key",
    "invalid_api_key",
    "invalid x-api-key",
    "no api key",
    "api key",
    "unauthorized",
)


@dataclass(frozen=True)
class ErrorFields:
    """The structured fields of a provider's JSON error body (each None when absent)."""

    code: str | None = None  # error.code (OpenAI, Groq) or Gemini's numeric code as text
    type: str | None = None  # error.type (OpenAI, Anthropic, Together)
    status: str | None = None  # Gemini's google.rpc status, e.g. RESOURCE_EXHAUSTED
    retry_info: bool = False  # Gemini: a google.rpc.RetryInfo detail (a delay to wait out)
    quota_ids: tuple[str, ...] = ()  # Gemini: QuotaFailure violations' quotaId
    zero_limit: bool = False  # Gemini: a QuotaFailure with quotaValue "0" (no quota at all on this tier)


def error_fields(body: bytes) -> ErrorFields:
    try:
        data = json.loads(body)
    except ValueError:
        return ErrorFields()
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # Gemini behind some proxies: a one-element list
    if not isinstance(data, dict):
        return ErrorFields()
    err = data.get("error", data)
    if not isinstance(err, dict):
        return ErrorFields()

    def text(value: Any) -> str | None:
        return None if value is None or isinstance(value, (dict, list)) else str(value).lower()

    retry_info, quota_ids, zero = False, [], False
    details = err.get("details")
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.rpc.RetryInfo"):
            retry_info = True
        elif kind.endswith("google.rpc.QuotaFailure"):
            for v in detail.get("violations") or ():
                if isinstance(v, dict):
                    quota_ids.append(str(v.get("quotaId", "")))
                    zero = zero or str(v.get("quotaValue", "")) == "0"
    return ErrorFields(
        text(err.get("code")), text(err.get("type")), text(err.get("status")), retry_info, tuple(quota_ids), zero
    )


def classify_error(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> ErrorKind:
    """error_kind for a non-2xx answer: the structured fields first (error.code, error.type, Gemini's
    status and details, a retry-after header), the provider's words last.

    quota: the account's money or credit ran out (OpenAI insufficient_quota, Anthropic's 400 "credit
    balance is too low", xAI's 403 "used all available credits", any 402) — another provider can serve.
    rate_limited: a limit that lifts by itself within minutes, even when its message mentions billing."""
    fields = error_fields(body)
    low = body.decode("utf-8", "replace").lower()
    retry_after = bool(headers) and any(k.lower() in ("retry-after", "retry-after-ms") for k in headers or {})
    said = {fields.code, fields.type}
    if said & _QUOTA_CODES or status == 402:
        return "quota"
    if fields.status == "resource_exhausted":
        # Gemini: per-minute and per-day limits carry RetryInfo; a quota of 0 means no access on this tier.
        if fields.zero_limit and not fields.retry_info:
            return "quota"
        return "rate_limited"
    if status == 429:
        if said & _RATE_CODES or retry_after or any(w in low for w in _RATE_WORDS):
            return "rate_limited"
        return "quota" if any(w in low for w in _QUOTA_WORDS) else "rate_limited"
    if said & _RATE_CODES and status in (400, 413):
        return "rate_limited"  # Groq's 413 "Request too large ... tokens per minute": this provider's limit
    if status in (400, 401, 403) and any(w in low for w in _QUOTA_WORDS[:-1]):
        return "quota"
    if status == 403 and "balance" in low:
        return "quota"  # Moonshot: 403 when the balance is gone
    if status in (401, 403) or said & _BAD_KEY_CODES or fields.status in ("unauthenticated", "permission_denied"):
        return "auth"
    if status == 400 and any(w in low for w in _BAD_KEY_WORDS):
        return "auth"
    if status in (498, 529) or said & _OVERLOADED_CODES or (status == 503 and "starting" not in low):
        return "overloaded"
    if status >= 500:
        return "overloaded" if "overloaded" in low else "server_error"
    return "bad_response"  # the failover client calls a 400/404/422 of a chat request bad_request


def _shape_check(shape: ProbeShape, data: Any) -> tuple[str | None, Balance | None]:
    """(problem or None, balance) for a 2xx body of the kind's probe shape. A problem of the form
    "auth: ..." or "quota: ..." means the provider answered 200 but says the key is blocked or the money
    is gone."""

    def is_list_under(key: str) -> bool:
        return isinstance(data, dict) and isinstance(data.get(key), list)

    if shape == "model_list_or_array":
        return (None if isinstance(data, list) or is_list_under("data") else "expected a JSON list of models"), None
    if shape == "gemini_models":
        return (None if is_list_under("models") else "expected {models: [...]}"), None
    if shape == "ollama_version":
        ok = isinstance(data, dict) and ("version" in data or "models" in data)
        return (None if ok else "expected {version: ...}"), None
    if shape == "any":
        return None, None
    if shape == "openrouter_key":
        info = data.get("data") if isinstance(data, dict) else None
        if not isinstance(info, dict):
            return "expected {data: {usage, limit, ...}}", None
        remaining = info.get("limit_remaining")
        balance = Balance(
            amount=_num(remaining),
            currency="USD",
            limit=_num(info.get("limit")),
            used=_num(info.get("usage")),
            source="openrouter /key",
        )
        left = _num(remaining)
        if left is not None and left <= 0:
            return "quota: key credit limit reached (limit_remaining 0)", balance
        return None, balance
    if shape == "moonshot_balance":
        info = data.get("data") if isinstance(data, dict) else None
        if not isinstance(info, dict) or "available_balance" not in info:
            return "expected {data: {available_balance, ...}}", None
        amount = _num(info.get("available_balance"))
        balance = Balance(amount=amount, source="moonshot balance")
        if amount is not None and amount <= 0:
            return "quota: available balance is 0", balance
        return None, balance
    if shape == "deepseek_balance":
        infos = data.get("balance_infos") if isinstance(data, dict) else None
        if not isinstance(infos, list):
            return "expected {is_available, balance_infos: [...]}", None
        first = infos[0] if infos and isinstance(infos[0], dict) else {}
        balance = Balance(
            amount=_num(first.get("total_balance")), currency=first.get("currency"), source="deepseek /user/balance"
        )
        if data.get("is_available") is False:
            return "quota: balance not available (is_available false)", balance
        return None, balance
    if shape == "xai_key":
        if not isinstance(data, dict) or "api_key_blocked" not in data:
            return "expected {redacted_api_key, api_key_blocked, ...}", None
        for flag in ("api_key_blocked", "api_key_disabled", "team_blocked"):
            if data.get(flag):
                return f"auth: {flag} is true", None
        return None, None
    # model_list: openai, azure, anthropic, mistral, groq, openai-compatible
    return (None if is_list_under("data") else "expected {data: [...]} (a model list)"), None


def _num(value: Any) -> float | None:
    """A provider's number, or None when it is absent or not a finite number (`inf`, `NaN`, 1e999)."""
    try:
        number = None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _unconfigured(provider: Provider, checked_at: float) -> ProbeResult:
    if not provider.enabled:
        return ProbeResult(provider.id, provider.name, checked_at, "unknown", "disabled", "disabled")
    gap = provider.setup_gap  # the same words as the verdict's (llmpulse.core.catalog.Provider.setup_gap)
    why = f"{gap.word}: {gap.hint}" if gap else "not configured"
    return ProbeResult(provider.id, provider.name, checked_at, "unknown", "not_configured", why)


async def probe_provider(
    client: httpx.AsyncClient, provider: Provider, settings: ProbeSettings, checked_at: float
) -> ProbeResult:
    """Probe one provider. Never raises (cancellation aside)."""
    if not provider.enabled or not provider.configured:
        return _unconfigured(provider, checked_at)
    import httpx

    url, headers = probe_request(provider)
    timeout = provider.spec.timeout or settings.timeout
    started = time.perf_counter()

    def result(
        status: ProviderStatus,
        kind: ErrorKind | None = None,
        error: str | None = None,
        http_status: int | None = None,
        rate_limit: RateLimit | None = None,
        balance: Balance | None = None,
        latency: bool = True,
    ) -> ProbeResult:
        latency_ms = (time.perf_counter() - started) * 1000.0 if latency else None
        return ProbeResult(
            provider.id,
            provider.name,
            checked_at,
            status,
            kind,
            redact(error) if error else None,
            latency_ms,
            http_status,
            rate_limit,
            balance,
        )

    try:
        async with asyncio.timeout(timeout):
            # At most PROBE_ANSWER_BYTES of the answer, inflated: a 1 GiB error page or a gzip bomb costs
            # no more memory than a model list, and the deadline above still holds.
            response = await fetch(client, "GET", url, limit=PROBE_ANSWER_BYTES, headers=headers, timeout=timeout)
            body = response.body
    except (TimeoutError, httpx.TimeoutException):
        return result("failed", "timeout", f"no answer within {timeout:g}s", latency=False)
    except httpx.ConnectError as exc:
        return result(
            "failed", "connect", f"cannot connect to {provider.base_url}: {exc or type(exc).__name__}", latency=False
        )
    except httpx.HTTPError as exc:
        return result("failed", "connect", f"{type(exc).__name__}: {exc}", latency=False)
    except Exception as exc:  # a probe never raises: anything else is the provider's answer being unusable
        return result("failed", "bad_response", f"{type(exc).__name__}: {exc}")

    rate_limit = parse_rate_limit(response.headers)
    code = response.status_code
    if not 200 <= code < 300:
        kind = classify_error(code, body, response.headers)
        status: ProviderStatus = "degraded" if kind in DEGRADED_KINDS else "failed"
        return result(status, kind, f"HTTP {code}: {error_message(body)}", code, rate_limit)
    shape = KIND_FACTS[provider.spec.kind].shape
    if response.truncated and shape != "any":
        return result(
            "failed",
            "bad_response",
            f"HTTP {code} with an answer larger than {PROBE_ANSWER_BYTES:,} bytes; stopped reading",
            code,
            rate_limit,
        )
    try:
        data = json.loads(body) if shape != "any" else None
    except ValueError:
        snippet = body_line(body.decode("utf-8", "replace"), 80)  # whole, so redaction sees every key
        return result("failed", "bad_response", f"HTTP {code} but the body is not JSON: {snippet!r}", code, rate_limit)
    problem, balance = _shape_check(shape, data)
    if problem:
        for kind in ("auth", "quota"):
            if problem.startswith(kind + ": "):
                return result("failed", kind, problem[len(kind) + 2 :], code, rate_limit, balance)
        return result(
            "failed", "bad_response", f"HTTP {code} with an unexpected body: {problem}", code, rate_limit, balance
        )
    outcome = result("healthy", None, None, code, rate_limit, balance)
    if outcome.latency_ms is not None and outcome.latency_ms > settings.slow * 1000.0:
        return ProbeResult(
            outcome.provider_id,
            outcome.name,
            checked_at,
            "degraded",
            "slow",
            f"answered in {outcome.latency_ms / 1000:.1f}s (slow above {settings.slow:g}s)",
            outcome.latency_ms,
            code,
            rate_limit,
            balance,
        )
    return outcome


def _ssl_context() -> ssl.SSLContext:
    """One TLS context shared by every probe client: building one loads the CA bundle (milliseconds each)."""
    global _SSL
    if _SSL is None:
        import certifi

        cafile = os.environ.get("SSL_CERT_FILE") or certifi.where()
        _SSL = ssl.create_default_context(cafile=cafile)
    return _SSL


_SSL: ssl.SSLContext | None = None


def make_client(
    settings: ProbeSettings, transport: httpx.AsyncBaseTransport | None = None, *, rounds: int = 1
) -> httpx.AsyncClient:
    """The client a probe round sends through: one for every provider. Its pool (aiohttp's, through
    llmpulse.core.http_client) is keyed by origin, so a fleet of hundreds of providers costs each request
    the same as a fleet of one; probe_all's concurrency bound is the only limit on connections.
    Connections are kept between requests only when a next round comes within the keep-alive expiry
    (`rounds` > 1 and an interval below it): a connection no probe reuses would only wait idle to be
    closed, and a round longer than the expiry (thousands of providers) closes the last round's as it
    goes."""
    from llmpulse.core.http_client import KEEPALIVE_S, provider_client

    reuse = rounds > 1 and settings.interval < KEEPALIVE_S
    return provider_client(timeout=settings.timeout, keep_alive=reuse, verify=_ssl_context(), transport=transport)


class ProbeClients:
    """The probe client, kept from round to round (the collector holds one of these): its connections
    stay open between rounds (up to the keep-alive expiry) instead of being set up again each round.
    Close it when done (`async with`, or aclose())."""

    def __init__(self, settings: ProbeSettings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self.transport = transport
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = make_client(self.settings, self.transport, rounds=2)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> ProbeClients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def probe_all(
    providers: list[Provider],
    settings: ProbeSettings,
    *,
    now: float | None = None,
    client: httpx.AsyncClient | None = None,
    clients: ProbeClients | None = None,
    clock: Callable[[], float] = time.time,
) -> list[ProbeResult]:
    """Probe every provider at once (bounded by settings.concurrency); results in the given order.
    With `client`, every probe goes through it (tests, custom transports); with `clients`, through the
    kept probe client; else through one built for this round."""
    checked_at = clock() if now is None else now
    gate = asyncio.Semaphore(max(1, settings.concurrency))

    async def one(provider: Provider, through: httpx.AsyncClient | None) -> ProbeResult:
        if through is None or not (provider.enabled and provider.configured):
            return _unconfigured(provider, checked_at)
        async with gate:
            try:
                return await probe_provider(through, provider, settings, checked_at)
            except Exception as exc:  # a bug or an answer nobody foresaw: this provider's result, not the round's
                error = redact(f"{type(exc).__name__}: {exc}")
                return ProbeResult(provider.id, provider.name, checked_at, "failed", "bad_response", error)

    async def round_through(through: httpx.AsyncClient | None) -> list[ProbeResult]:
        return list(await asyncio.gather(*(one(p, through) for p in providers)))

    if client is not None:
        return await round_through(client)
    if not any(p.enabled and p.configured for p in providers):
        return await round_through(None)  # nothing to send: no client (nor httpx) at all
    if clients is not None:
        return await round_through(clients.client)
    async with make_client(settings) as own:
        return await round_through(own)
