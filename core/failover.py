"""Failover for applications: send a chat request to the first usable provider, fall through on failure.

The chain is the enabled, configured providers by priority, skipping open circuits and providers whose
latest probe failed (core.health.failover_order), limited to those the caller gave a model for. On 429,
402, 408, 5xx, 529, Groq's 498, a timeout, a connection error or a 2xx that is not a chat answer the
next one is tried. A 400/401/403/404/422 is the caller's problem (request, key or model name) and is
raised at once as `RequestRejected`. Every attempt is recorded as usage (`is_fallback`, `fallback_from`
= the provider tried just before) and fed to the circuit breaker; when all fail, `AllProvidersFailed`
names each provider tried and what went wrong.

OpenAI-compatible chat completions everywhere, Anthropic's messages API for Anthropic:

    client = FailoverClient(ctx, store)
    answer = await client.chat([{"role": "user", "content": "hi"}],
                               models={"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"},
                               department="Support", agent="triage-bot")
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import httpx

from core.catalog import Provider
from core.clock import SYSTEM_CLOCK, Clock
from core.config import Context
from core.enablement import apply_enablement
from core.health import failover_order, load_health, record_outcome
from core.probe import auth_headers, classify_error, error_message
from core.redact import redact
from core.store import Store
from core.usage.recorder import pricing_for
from core.usage.records import record_from_mapping
from core.usage.rollup import ingest

# Where each kind's chat endpoint sits under its base URL.
CHAT_PATHS = {
    "anthropic": "/v1/messages",
    "gemini": "/openai/chat/completions",          # base .../v1beta
    "azure": "/openai/v1/chat/completions",        # the v1 API: no deployment or api-version in the path
    "ollama": "/v1/chat/completions",
    "localai": "/v1/chat/completions",
}
DEFAULT_CHAT_PATH = "/chat/completions"
# Provider-side trouble: worth another provider. The rest of 4xx is the caller's to fix.
FALL_THROUGH_KINDS = {"rate_limited", "overloaded", "server_error", "quota", "timeout", "connect", "bad_response"}
CALLERS_FAULT = {400, 401, 403, 404, 409, 413, 422}


class FailoverError(Exception):
    """Base of what the failover client raises."""


@dataclass
class Attempt:
    provider_id: str
    model: str
    status: str                        # ok | error
    error_kind: str | None
    http_status: int | None
    latency_ms: float
    error: str | None                  # redacted
    is_fallback: bool
    fallback_from: str | None

    def describe(self) -> str:
        what = f"HTTP {self.http_status} {self.error_kind}" if self.http_status else str(self.error_kind)
        return f"{self.provider_id} ({what}{': ' + self.error if self.error else ''})"


class RequestRejected(FailoverError):
    """The provider refused the request itself (400/401/403/404/422): another provider won't help."""

    def __init__(self, attempt: Attempt, attempts: list[Attempt]):
        self.attempt, self.attempts = attempt, attempts
        super().__init__(f"{attempt.provider_id} rejected the request: HTTP {attempt.http_status} "
                         f"{attempt.error_kind}: {attempt.error} (not retried on another provider: fix the "
                         "request, key or model)")


class AllProvidersFailed(FailoverError):
    """Every provider in the chain failed; the message names each one and why."""

    def __init__(self, attempts: list[Attempt], skipped: Sequence[tuple[str, str]] = ()):
        self.attempts, self.skipped = attempts, list(skipped)
        text = (f"all {len(attempts)} providers failed: " + "; ".join(a.describe() for a in attempts)
                if attempts else "no usable provider to try")
        if self.skipped:
            text += "; skipped: " + ", ".join(f"{pid} ({why})" for pid, why in self.skipped)
        super().__init__(redact(text))


@dataclass
class ChatResult:
    provider_id: str
    model: str
    text: str
    response: dict
    input_tokens: int
    output_tokens: int
    latency_ms: float
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def fell_back(self) -> bool:
        return len(self.attempts) > 1


def chat_url(provider: Provider) -> str:
    return provider.base_url.rstrip("/") + CHAT_PATHS.get(provider.spec.kind, DEFAULT_CHAT_PATH)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def request_body(provider: Provider, model: str, messages: Sequence[Mapping[str, Any]], max_tokens: int | None,
                 params: Mapping[str, Any]) -> dict:
    if provider.spec.kind == "anthropic":
        system = "\n\n".join(_text_of(m.get("content")) for m in messages if m.get("role") == "system")
        body: dict[str, Any] = {"model": model, "max_tokens": max_tokens or 1024,
                                "messages": [dict(m) for m in messages if m.get("role") != "system"]}
        if system:
            body["system"] = system
    else:
        body = {"model": model, "messages": [dict(m) for m in messages]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
    body.update(params)
    return body


def parse_answer(kind: str, data: Any) -> tuple[str, dict] | None:
    """(text, raw usage object) of a chat answer, or None when a 2xx body is not one (an error inside
    a 200, as OpenRouter and Ollama send once generation started, counts as no answer)."""
    if not isinstance(data, dict) or "error" in data:
        return None
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    if kind == "anthropic":
        content = data.get("content")
        return (_text_of(content), usage) if isinstance(content, list) else None
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    return _text_of((choices[0].get("message") or {}).get("content")), usage


class FailoverClient:
    def __init__(self, ctx: Context, store: Store, *, clock: Clock = SYSTEM_CLOCK, timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.ctx = ctx
        self.store = store
        self.clock = clock
        self.timeout = timeout
        self.pricing = pricing_for(ctx)
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> "FailoverClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def chain(self, models: Mapping[str, str] | None = None, default_model: str | None = None
                    ) -> tuple[list[Provider], list[tuple[str, str]]]:
        """The providers to try, in order, and the ones skipped with the reason."""
        providers = await apply_enablement(self.store, self.ctx.providers)
        now = self.clock.now()
        health = await load_health(self.store, providers, self.ctx.config.health, now)
        usable = {h.provider_id for h in failover_order(health)}
        by_id = {p.id: p for p in providers}
        order, skipped = [], []
        for h in sorted(health, key=lambda h: (h.priority, h.provider_id)):
            wanted = models is None or h.provider_id in models
            if not wanted or not h.configured:
                continue
            if h.provider_id in usable and (default_model or (models and h.provider_id in models)):
                order.append(by_id[h.provider_id])
            elif not h.enabled:
                skipped.append((h.provider_id, "disabled"))
            elif h.circuit == "open":
                skipped.append((h.provider_id, "circuit open"))
            elif h.status == "failed":
                skipped.append((h.provider_id, f"failed: {h.error_kind}"))
        return order, skipped

    async def chat(self, messages: Sequence[Mapping[str, Any]], *, models: Mapping[str, str] | None = None,
                   model: str | None = None, max_tokens: int | None = None, params: Mapping[str, Any] | None = None,
                   **attribution: Any) -> ChatResult:
        """Send to the first usable provider; fall through on provider trouble. `models` maps provider id
        to the model to ask it for (only those providers are tried); `model` is used for any other."""
        order, skipped = await self.chain(models, model)
        attempts: list[Attempt] = []
        previous: str | None = None
        for provider in order:
            use_model = (models or {}).get(provider.id) or model
            assert use_model is not None
            attempt, answer = await self._attempt(provider, use_model, messages, max_tokens, params or {}, previous)
            attempts.append(attempt)
            usage = (answer or {}).get("usage_raw")
            await self._record(attempt, usage, attribution)
            if attempt.status == "ok" and answer is not None:
                await record_outcome(self.store, provider.id, True, self.ctx.config.health, self.clock.now())
                return ChatResult(provider.id, use_model, answer["text"], answer["data"],
                                  answer["input_tokens"], answer["output_tokens"], attempt.latency_ms, attempts)
            if attempt.error_kind not in FALL_THROUGH_KINDS:
                raise RequestRejected(attempt, attempts)
            await record_outcome(self.store, provider.id, False, self.ctx.config.health, self.clock.now())
            previous = provider.id
        raise AllProvidersFailed(attempts, skipped)

    async def _attempt(self, provider: Provider, model: str, messages: Sequence[Mapping[str, Any]],
                       max_tokens: int | None, params: Mapping[str, Any], previous: str | None
                       ) -> tuple[Attempt, dict | None]:
        started = time.perf_counter()

        def attempt(status: str, kind: str | None, http: int | None, error: str | None) -> Attempt:
            return Attempt(provider.id, model, status, kind, http, (time.perf_counter() - started) * 1000.0,
                           redact(error) if error else None, previous is not None, previous)

        headers = {"content-type": "application/json", **auth_headers(provider)}
        body = request_body(provider, model, messages, max_tokens, params)
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.post(chat_url(provider), headers=headers, json=body)
                raw = await response.aread()
        except (TimeoutError, httpx.TimeoutException):
            return attempt("error", "timeout", None, f"no answer within {self.timeout:g}s"), None
        except httpx.HTTPError as exc:
            return attempt("error", "connect", None, f"{type(exc).__name__}: {exc}"), None
        code = response.status_code
        if not 200 <= code < 300:
            kind = classify_error(code, raw)
            if code in CALLERS_FAULT and kind not in ("quota",):
                kind = "auth" if kind == "auth" else "bad_request"
            return attempt("error", kind, code, error_message(raw)), None
        try:
            data = json.loads(raw)
        except ValueError:
            return attempt("error", "bad_response", code, "2xx body is not JSON"), None
        parsed = parse_answer(provider.spec.kind, data)
        if parsed is None:
            return attempt("error", "bad_response", code, "2xx body is not a chat answer"), None
        text, usage = parsed
        ok = attempt("ok", None, code, None)
        tokens = record_from_mapping({"provider": provider.id, "model": model, "usage": usage}, 0) if usage else None
        return ok, {"text": text, "data": data, "usage_raw": usage,
                    "input_tokens": tokens.input_tokens if tokens else 0,
                    "output_tokens": tokens.output_tokens if tokens else 0}

    async def _record(self, attempt: Attempt, usage: Mapping[str, Any] | None, attribution: Mapping[str, Any]) -> None:
        fields: dict[str, Any] = {
            "provider": attempt.provider_id, "model": attempt.model, "latency_ms": round(attempt.latency_ms, 1),
            "status": attempt.status, "error_kind": attempt.error_kind, "is_fallback": attempt.is_fallback,
            "fallback_from": attempt.fallback_from, "ts": self.clock.now(), **attribution}
        if usage:
            fields["usage"] = usage
        record = record_from_mapping(fields, self.clock.now())
        await ingest(self.store, [record], self.pricing)
