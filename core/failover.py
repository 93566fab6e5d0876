"""Failover for applications: send a chat request to the first usable provider, fall through on failure.

The chain is the enabled, configured providers by priority, skipping open circuits and providers whose
latest probe failed (llmpulse.core.health.failover_order), limited to those the caller gave a model for. On 429,
402, 408, 5xx, 529, Groq's 498, a timeout, a connection error or a 2xx that is not a chat answer the
next one is tried; so is a 401/402/403 or any quota answer (a bad key or an empty account is that
provider's problem, not the request's: its circuit opens at once). Only an answer that says the request
itself is wrong — 400 invalid request, 404 unknown model, 409, 413, 422 — is raised at once as
`RequestRejected`: another provider would refuse it too. Every attempt is recorded as usage through llmpulse.core.usage's Recorder
(`is_fallback`, `fallback_from` = the provider tried just before, or for the first attempt the preferred
provider skipped because its circuit is open or its probe failed; written on the recorder's timer and at
the latest when the client closes) and fed to the circuit breaker; when all fail,
`AllProvidersFailed` names each provider tried and what went wrong. `plan_chain` is the one place that
decides who is in the chain and why the others are not; `llmpulse failover` shows the same plan.

OpenAI-compatible chat completions everywhere, Anthropic's messages API for Anthropic:

    async with FailoverClient(ctx, store, timeout=60) as client:
        answer = await client.chat([{"role": "user", "content": "hi"}],
                                   models={"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"},
                                   department="Support", agent="triage-bot")
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from llmpulse.core.catalog import Provider
from llmpulse.core.clock import SYSTEM_CLOCK, Clock
from llmpulse.core.config import Context
from llmpulse.core.errors import LlmpulseError
from llmpulse.core.health import ProviderHealth, failover_order, judge_health, record_outcome
from llmpulse.core.health_state import StoredHealth, stored_health
from llmpulse.core.http_answer import fetch
from llmpulse.core.http_client import provider_client
from llmpulse.core.probe import auth_headers, classify_error, error_message
from llmpulse.core.redact import redact, register_secrets
from llmpulse.core.store import Store
from llmpulse.core.usage.recorder import Recorder, pricing_for
from llmpulse.core.usage.records import RecordError, UsageRecord, record_from_mapping
from llmpulse.core.vocabulary import ACCOUNT_KINDS, Circuit, ProviderStatus

# Where each kind's chat endpoint sits under its base URL.
CHAT_PATHS = {
    "anthropic": "/v1/messages",
    "gemini": "/openai/chat/completions",  # base .../v1beta
    "azure": "/openai/v1/chat/completions",  # the v1 API: no deployment or api-version in the path
    "ollama": "/v1/chat/completions",
    "localai": "/v1/chat/completions",
}
DEFAULT_CHAT_PATH = "/chat/completions"
# Provider-side trouble (including this provider's key or account): worth another provider.
FALL_THROUGH_KINDS = frozenset(
    {"rate_limited", "overloaded", "server_error", "quota", "auth", "timeout", "connect", "bad_response"}
)
# Statuses that say the request itself is wrong, unless the body says it is the account (quota) or a limit.
REQUEST_FAULT = frozenset({400, 404, 409, 413, 422})
# A chat answer read past this is not one (a long completion is well under a megabyte of JSON).
CHAT_ANSWER_BYTES = 8 << 20
# What a caller may attach to the usage records of a chat; the rest of a record is the client's to say.
ATTRIBUTION = ("department", "agent", "user", "task_type", "category", "endpoint", "request_id")


class FailoverError(LlmpulseError):
    """Base of what the failover client raises."""


@dataclass
class Attempt:
    provider_id: str
    model: str
    status: str  # ok | error
    error_kind: str | None
    http_status: int | None
    latency_ms: float
    error: str | None  # redacted
    is_fallback: bool
    fallback_from: str | None

    def describe(self) -> str:
        what = f"HTTP {self.http_status} {self.error_kind}" if self.http_status else str(self.error_kind)
        return f"{self.provider_id} ({what}{': ' + self.error if self.error else ''})"


class RequestRejected(FailoverError):
    """The provider says the request itself is wrong (400/404/409/413/422): another provider won't help."""

    def __init__(self, attempt: Attempt, attempts: list[Attempt]):
        self.attempt, self.attempts = attempt, attempts
        super().__init__(
            f"{attempt.provider_id} rejected the request: HTTP {attempt.http_status} "
            f"{attempt.error_kind}: {attempt.error} (not retried on another provider: fix the "
            "request or the model name)"
        )


class AllProvidersFailed(FailoverError):
    """Every provider in the chain failed; the message names each one and why."""

    def __init__(self, attempts: list[Attempt], skipped: Sequence[tuple[str, str]] = ()):
        self.attempts, self.skipped = attempts, list(skipped)
        text = (
            f"all {len(attempts)} providers failed: " + "; ".join(a.describe() for a in attempts)
            if attempts
            else "no usable provider to try"
        )
        if self.skipped:
            text += "; skipped: " + ", ".join(f"{pid} ({why})" for pid, why in self.skipped)
        super().__init__(redact(text))


@dataclass
class ChatResult:
    provider_id: str
    model: str
    text: str
    response: dict[str, Any]
    input_tokens: int
    output_tokens: int
    latency_ms: float
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def fell_back(self) -> bool:
        return len(self.attempts) > 1


@dataclass
class ChainEntry:
    """One configured provider's place in the failover chain, or why it is out of it."""

    provider_id: str
    priority: int
    enabled: bool
    circuit: Circuit
    status: ProviderStatus  # latest probe
    error_kind: str | None
    position: int | None  # 1-based place in the chain; None when skipped
    skipped: str | None  # why it is out: disabled | circuit open | latest probe failed (...)
    consecutive_failures: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.provider_id,
            "priority": self.priority,
            "position": self.position,
            "status": self.status,
            "error_kind": self.error_kind,
            "circuit": self.circuit,
            "enabled": self.enabled,
            "skipped": self.skipped,
        }


def plan_chain(health: Iterable[ProviderHealth]) -> list[ChainEntry]:
    """Every configured provider by priority, with its position in the chain (llmpulse.core.health.failover_order
    decides who is usable) or the reason it is skipped. Unconfigured providers are left out: without a
    key they were never candidates."""
    health = [h for h in health if h.configured]
    usable = [h.provider_id for h in failover_order(health)]
    entries = []
    for h in sorted(health, key=lambda h: (h.priority, h.provider_id)):
        if h.provider_id in usable:
            why = None
        elif not h.enabled:
            why = "disabled"
        elif h.circuit == "open":
            why = "circuit open"
        else:
            why = f"latest probe failed ({h.error_kind or 'unknown'})"
        entries.append(
            ChainEntry(
                h.provider_id,
                h.priority,
                h.enabled,
                h.circuit,
                h.status,
                h.error_kind,
                usable.index(h.provider_id) + 1 if why is None else None,
                why,
                h.consecutive_failures,
            )
        )
    return entries


async def current_chain(
    store: Store,
    ctx: Context,
    now: float,
    only: Collection[str] | None = None,
    *,
    candidates: Sequence[Provider] | None = None,
) -> tuple[list[Provider], list[ChainEntry]]:
    """The providers with run-time enablement applied, and the chain as it stands at `now`. With `only`,
    just those providers (a chat's candidates); `candidates` gives them already picked. One stored row
    per provider is read: the same cost with no probe history or a week of it."""
    if candidates is None:
        candidates = ctx.providers if only is None else [p for p in ctx.providers if p.id in only]
    stored = await stored_health(store, [p.id for p in candidates])
    providers = [_with_override(p, stored.get(p.id)) for p in candidates]
    return providers, plan_chain(judge_health(providers, stored, ctx.config.health, now, series=False))


def _with_override(provider: Provider, stored: StoredHealth | None) -> Provider:
    """The provider as `providers enable/disable` left it (llmpulse.core.enablement writes the override)."""
    if stored is None or stored.enabled_override is None or stored.enabled_override == provider.enabled:
        return provider
    return replace(provider, enabled=stored.enabled_override)


def chat_url(provider: Provider) -> str:
    return provider.base_url.rstrip("/") + CHAT_PATHS.get(provider.spec.kind, DEFAULT_CHAT_PATH)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def request_body(
    provider: Provider,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    max_tokens: int | None,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    if provider.spec.kind == "anthropic":
        system = "\n\n".join(_text_of(m.get("content")) for m in messages if m.get("role") == "system")
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens or 1024,
            "messages": [dict(m) for m in messages if m.get("role") != "system"],
        }
        if system:
            body["system"] = system
    else:
        body = {"model": model, "messages": [dict(m) for m in messages]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
    body.update(params)
    return body


def parse_answer(kind: str, data: Any) -> tuple[str, dict[str, Any]] | None:
    """(text, raw usage object) of a chat answer, or None when a 2xx body is not one (an error inside
    a 200, as OpenRouter and Ollama send once generation started, counts as no answer)."""
    if not isinstance(data, dict) or "error" in data:
        return None
    usage: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}
    if kind == "anthropic":
        content = data.get("content")
        return (_text_of(content), usage) if isinstance(content, list) else None
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    return _text_of((choices[0].get("message") or {}).get("content")), usage


class FailoverClient:
    """Use it as `async with` (or call aclose()): closing flushes the attempts its recorder still holds.
    Pass `recorder=` to share the application's own Recorder (then the application closes that one)."""

    def __init__(
        self,
        ctx: Context,
        store: Store,
        *,
        clock: Clock = SYSTEM_CLOCK,
        timeout: float = 60.0,
        recorder: Recorder | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        if not timeout > 0:
            raise ValueError(f"failover timeout must be > 0 seconds, got {timeout!r}")
        self.ctx = ctx
        self.store = store
        self.clock = clock
        self.timeout = timeout
        # Providers echo keys in error bodies; keys of any shape must be masked in what we raise.
        register_secrets(p.api_key.reveal() for p in ctx.providers if p.api_key)
        self._own_recorder = recorder is None
        self.recorder = recorder or Recorder(store, pricing_for(ctx), clock=clock)
        self._recorder_started = False
        # httpx's default pool size (100 connections); aiohttp's pool underneath (llmpulse.core.http_client)
        self._client = provider_client(timeout=timeout, max_connections=100, transport=transport)
        self._candidates_of: list[Provider] = ctx.providers
        self._candidates: dict[frozenset[str], list[Provider]] = {}

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
        finally:
            if self._own_recorder:
                if self._recorder_started:
                    await self.recorder.__aexit__(None, None, None)
                    self._recorder_started = False
                else:
                    await self.recorder.flush()

    async def __aenter__(self) -> FailoverClient:
        if self._own_recorder and not self._recorder_started:
            await self.recorder.__aenter__()  # its flush timer
            self._recorder_started = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _among(self, only: frozenset[str] | None) -> Sequence[Provider]:
        """The configured providers named in `only` (all with None), picked once per set of names: a chat
        names the same few among hundreds configured, call after call."""
        if self._candidates_of is not self.ctx.providers:  # the application replaced the list
            self._candidates_of, self._candidates = self.ctx.providers, {}
        if only is None:
            return self.ctx.providers
        picked = self._candidates.get(only)
        if picked is None:
            picked = self._candidates[only] = [p for p in self.ctx.providers if p.id in only]
        return picked

    async def _wanted(
        self, models: Mapping[str, str] | None, default_model: str | None
    ) -> tuple[list[ChainEntry], dict[str, Provider]]:
        only = None if default_model is not None else frozenset(models or {})
        providers, plan = await current_chain(self.store, self.ctx, self.clock.now(), candidates=self._among(only))
        wanted = [e for e in plan if default_model is not None or e.provider_id in (models or {})]
        return wanted, {p.id: p for p in providers}

    async def chain(
        self, models: Mapping[str, str] | None = None, default_model: str | None = None
    ) -> tuple[list[Provider], list[tuple[str, str]]]:
        """The providers to try, in order, and the ones skipped with the reason. With `models` only the
        providers named there are candidates (unless `default_model` covers the rest)."""
        wanted, by_id = await self._wanted(models, default_model)
        return (
            [by_id[e.provider_id] for e in wanted if e.skipped is None],
            [(e.provider_id, e.skipped) for e in wanted if e.skipped is not None],
        )

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        models: Mapping[str, str] | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        params: Mapping[str, Any] | None = None,
        **attribution: Any,
    ) -> ChatResult:
        """Send to the first usable provider; fall through on provider trouble. `models` maps provider id
        to the model to ask it for (only those providers are tried); `model` is used for any other.
        `attribution` (department, agent, user, task_type, category, endpoint, request_id) goes on every
        attempt's usage record; a wrong field is an error before anything is sent. A request_id stays on
        the first attempt; a fallback's record gets `request_id@provider`, since usage deduplicates by
        request_id and would otherwise keep only the first attempt."""
        if not models and not model:
            raise ValueError("failover chat needs a model: models={provider_id: model} and/or model=...")
        unknown = sorted(set(attribution) - set(ATTRIBUTION))
        if unknown:
            raise TypeError(
                f"failover chat: unknown attribution {', '.join(unknown)}; expected any of {', '.join(ATTRIBUTION)}"
            )
        record_from_mapping({"provider": "check", "model": "check", **attribution}, self.clock.now())
        wanted, by_id = await self._wanted(models, model)
        entries = {e.provider_id: e for e in wanted}
        order = [by_id[e.provider_id] for e in wanted if e.skipped is None]
        skipped = [(e.provider_id, e.skipped) for e in wanted if e.skipped is not None]
        # A request that goes past a preferred provider because its circuit is open or it is failing is a
        # fallback too (from that provider), or the statistics would go quiet just while it is down.
        # Disabled is an operator's choice, not trouble: no fallback.
        previous: str | None = None
        for e in wanted:
            if e.skipped is None:
                break
            if e.enabled:
                previous = e.provider_id
                break
        attempts: list[Attempt] = []
        for provider in order:
            use_model = (models or {}).get(provider.id) or model
            assert use_model is not None
            attempt, answer = await self._attempt(provider, use_model, messages, max_tokens, params or {}, previous)
            attempts.append(attempt)
            await self._record(attempt, (answer or {}).get("tokens"), attribution)
            if attempt.status == "ok" and answer is not None:
                entry = entries[provider.id]
                # A success on a closed circuit without failures changes nothing: no write (a write
                # transaction per call would queue every chat behind the collector's writes).
                if entry.circuit != "closed" or entry.consecutive_failures:
                    await record_outcome(self.store, provider.id, True, self.ctx.config.health, self.clock.now())
                return ChatResult(
                    provider.id,
                    use_model,
                    answer["text"],
                    answer["data"],
                    answer["input_tokens"],
                    answer["output_tokens"],
                    attempt.latency_ms,
                    attempts,
                )
            if attempt.error_kind not in FALL_THROUGH_KINDS:
                raise RequestRejected(attempt, attempts)
            await record_outcome(
                self.store,
                provider.id,
                False,
                self.ctx.config.health,
                self.clock.now(),
                open_now=attempt.error_kind in ACCOUNT_KINDS,
            )
            previous = provider.id
        raise AllProvidersFailed(attempts, skipped)

    async def _attempt(
        self,
        provider: Provider,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int | None,
        params: Mapping[str, Any],
        previous: str | None,
    ) -> tuple[Attempt, dict[str, Any] | None]:
        started = time.perf_counter()

        def attempt(status: str, kind: str | None, http: int | None, error: str | None) -> Attempt:
            return Attempt(
                provider.id,
                model,
                status,
                kind,
                http,
                (time.perf_counter() - started) * 1000.0,
                redact(error) if error else None,
                previous is not None,
                previous,
            )

        headers = {"content-type": "application/json", **auth_headers(provider)}
        body = request_body(provider, model, messages, max_tokens, params)
        try:
            async with asyncio.timeout(self.timeout):
                # At most CHAT_ANSWER_BYTES of the answer, inflated: a provider sending an endless body
                # costs a capped read, as a probe's does.
                answer = await fetch(
                    self._client, "POST", chat_url(provider), limit=CHAT_ANSWER_BYTES, headers=headers, json=body
                )
        except (TimeoutError, httpx.TimeoutException):
            return attempt("error", "timeout", None, f"no answer within {self.timeout:g}s"), None
        except httpx.HTTPError as exc:
            return attempt("error", "connect", None, f"{type(exc).__name__}: {exc}"), None
        code, raw = answer.status_code, answer.body
        if not 200 <= code < 300:
            kind = classify_error(code, raw, answer.headers)
            if code in REQUEST_FAULT and kind == "bad_response":
                kind = "bad_request"
            return attempt("error", kind, code, error_message(raw)), None
        if answer.truncated:
            return attempt("error", "bad_response", code, f"2xx answer larger than {CHAT_ANSWER_BYTES:,} bytes"), None
        try:
            data = json.loads(raw)
        except ValueError:
            return attempt("error", "bad_response", code, "2xx body is not JSON"), None
        parsed = parse_answer(provider.spec.kind, data)
        if parsed is None:
            return attempt("error", "bad_response", code, "2xx body is not a chat answer"), None
        text, answer_usage = parsed
        ok = attempt("ok", None, code, None)
        try:
            tokens = (
                record_from_mapping({"provider": provider.id, "model": model, "usage": answer_usage}, 0)
                if answer_usage
                else None
            )
        except RecordError:
            tokens = None  # an odd usage object must not cost the caller its answer
        return ok, {
            "text": text,
            "data": data,
            "tokens": tokens,
            "input_tokens": tokens.input_tokens if tokens else 0,
            "output_tokens": tokens.output_tokens if tokens else 0,
        }

    async def _record(self, attempt: Attempt, tokens: UsageRecord | None, attribution: Mapping[str, Any]) -> None:
        fields: dict[str, Any] = {
            "provider": attempt.provider_id,
            "model": attempt.model,
            "latency_ms": round(attempt.latency_ms, 1),
            "status": attempt.status,
            "error_kind": attempt.error_kind,
            "is_fallback": attempt.is_fallback,
            "fallback_from": attempt.fallback_from,
            "ts": self.clock.now(),
            **attribution,
        }
        if attempt.is_fallback and attribution.get("request_id"):
            fields["request_id"] = f"{attribution['request_id']}@{attempt.provider_id}"
        if tokens is not None:
            # The counts the answer's usage object was read into once (genai-prices) in _attempt, not the
            # object again: plain numbers take the recorder's fast path.
            fields["input_tokens"] = tokens.input_tokens
            fields["output_tokens"] = tokens.output_tokens
            fields["cache_read_tokens"] = tokens.cache_read_tokens
            fields["cache_write_tokens"] = tokens.cache_write_tokens
            if tokens.reported_cost_usd is not None:  # OpenRouter's usage.cost
                fields["cost_usd"] = tokens.reported_cost_usd
        self.recorder.record(**fields)
        if self._own_recorder and not self._recorder_started:
            await self.recorder.flush()  # used without `async with`: no flush timer, so write now
