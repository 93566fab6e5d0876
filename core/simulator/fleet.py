"""Simulated LLM providers as real HTTP servers on 127.0.0.1: for the tests, the demo and the benches.

One asyncio HTTP/1.1 server (its own thread and event loop, so sync tests, async tests and the demo can
all use it) serves any number of fake providers, each under its own path prefix:
`fleet.base_url("openai")` is `http://127.0.0.1:PORT/openai/v1`, laid out like the real provider's base
URL so the probe and the failover client use their normal paths against it.

Each fake speaks its kind's probe endpoint and JSON shape, checks the auth header style and the key it
expects (and records every request's headers, so tests can assert which header arrived), and follows
a behaviour that can be changed while it runs (`fleet.set_behaviour`). It also answers OpenAI-compatible
chat completions and Anthropic messages (with a `usage` object) so the failover client can be tested, and
`fleet.add_route` lets a test or the demo add more endpoints (billing APIs) to a provider.

Behaviours: ok, slow (answers after `delay` seconds), bad_key, quota, rate_limited, overloaded,
server_error, hang (never answers), garbage (200 with a non-JSON body), wrong_shape (200 JSON of the
wrong shape), flapping (alternates ok and server_error request by request).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from llmpulse.core.provider_kinds import KIND_FACTS, AuthStyle, KindFacts

BEHAVIOURS = (
    "ok",
    "slow",
    "bad_key",
    "quota",
    "rate_limited",
    "overloaded",
    "server_error",
    "hang",
    "garbage",
    "wrong_shape",
    "flapping",
)

CHAT_PATHS = (
    "/chat/completions",
    "/v1/chat/completions",
    "/openai/chat/completions",
    "/openai/v1/chat/completions",
    "/v1/messages",
)

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    498: "Flex Tier Capacity Exceeded",
    500: "Internal Server Error",
    503: "Service Unavailable",
    529: "Overloaded",
}


def chat_usage(kind: str) -> dict[str, Any]:
    """The usage object an OpenAI-style chat answer carries, in the provider's own shape."""
    if kind == "deepseek":
        # DeepSeek's documented shape: cache hits and misses in fields of its own (prompt_tokens = hit + miss).
        return {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "prompt_cache_hit_tokens": 1024,
            "prompt_cache_miss_tokens": 176,
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
    if kind == "openrouter":
        # OpenRouter adds what it charged, in credits (USD), to every answer's usage.
        return {
            "prompt_tokens": 12,
            "completion_tokens": 7,
            "total_tokens": 19,
            "cost": 0.0000123,
            "is_byok": False,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
    return {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload).encode(), {"content-type": "application/json", **(headers or {})})


@dataclass
class Request:
    method: str
    path: str  # relative to the fake's base URL, without the query
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    # Order of events across the whole fleet, so tests check what happened before what instead of timing
    # it: `seq` numbers this request's arrival; a hung request the client gave up on gets `abandoned_seq`,
    # the number the next arrival would have had at that moment.
    seq: int = 0
    abandoned_seq: int | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")


Handler = Callable[["FakeProvider", Request], Response]


@dataclass
class FakeProvider:
    id: str
    kind: str = "openai"
    key: str | None = "sk-test-key-000000000000"
    behaviour: str = "ok"
    delay: float = 0.0  # seconds before answering (every behaviour but hang)
    headroom: float = 0.9  # share of the rate limit left, sent in headers on every answer
    limit_headroom: dict[str, float] = field(default_factory=dict)
    usage: dict[str, Any] | None = (
        None  # the usage object of chat answers; None: the kind's own (chat_usage)  # per limit: requests, tokens, input_tokens...
    )
    models: tuple[str, ...] = ("gpt-4o", "gpt-4.1")
    balance: float = 42.5  # for kinds whose probe reports a balance
    requests: list[Request] = field(default_factory=list)
    _flap: int = 0

    @property
    def facts(self) -> KindFacts:
        return KIND_FACTS[self.kind]

    @property
    def auth(self) -> AuthStyle:
        return self.facts.auth

    # -- auth -------------------------------------------------------------------------------------
    def key_sent(self, req: Request) -> str | None:
        h = req.headers
        if self.auth == "bearer":
            value = h.get("authorization", "")
            return value[7:] if value.lower().startswith("bearer ") else None
        if self.auth == "none":
            value = h.get("authorization", "")
            return value[7:] if value else None
        return h.get(self.auth)

    def auth_ok(self, req: Request) -> bool:
        if self.auth == "none" or self.key is None:
            return True
        if any(name not in req.headers for name in self.facts.extra_headers):
            return False
        return self.key_sent(req) == self.key

    # -- answers ----------------------------------------------------------------------------------
    def rate_limit_headers(self) -> dict[str, str]:
        """The rate-limit headers the real provider sends on every answer. Each limit has its own
        headroom (`limit_headroom`, e.g. {"output_tokens": 0.05}), else `headroom`."""

        def left(name: str, limit: int) -> str:
            return str(max(0, int(limit * self.limit_headroom.get(name, self.headroom))))

        if self.kind == "anthropic":
            # Anthropic sends four limits, each with its own reset (RFC 3339).
            reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 20))
            out: dict[str, str] = {}
            for name, limit in (
                ("requests", 1000),
                ("tokens", 96000),
                ("input-tokens", 80000),
                ("output-tokens", 16000),
            ):
                out[f"anthropic-ratelimit-{name}-limit"] = str(limit)
                out[f"anthropic-ratelimit-{name}-remaining"] = left(name.replace("-", "_"), limit)
                out[f"anthropic-ratelimit-{name}-reset"] = reset
            return out
        if self.kind == "together":
            # Together: requests as bare x-ratelimit-*, tokens as x-tokenlimit-*.
            return {
                "x-ratelimit-limit": "10",
                "x-ratelimit-remaining": left("requests", 10),
                "x-ratelimit-reset": "1",
                "x-tokenlimit-limit": "200000",
                "x-tokenlimit-remaining": left("tokens", 200000),
            }
        return {
            "x-ratelimit-limit-requests": "1000",
            "x-ratelimit-remaining-requests": left("requests", 1000),
            "x-ratelimit-limit-tokens": "100000",
            "x-ratelimit-remaining-tokens": left("tokens", 100000),
            "x-ratelimit-reset-requests": "20s",
            "x-ratelimit-reset-tokens": "6m0s",
        }

    def error(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
        if self.kind == "anthropic":
            payload: Any = {"type": "error", "error": {"type": code, "message": message}}
        elif self.kind == "gemini":
            payload = {"error": {"code": status, "message": message, "status": code}}
        else:
            payload = {"error": {"message": message, "type": code, "code": code}}
        return Response.json(status, payload, headers)

    def failure(self, behaviour: str) -> Response | None:
        """The error answer a behaviour gives, or None when it answers normally."""
        if behaviour == "bad_key":
            if self.kind in ("gemini", "xai"):
                return self.error(400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")
            return self.error(401, "Incorrect API key provided.", "invalid_api_key")
        if behaviour == "quota":
            return self.quota_answer()
        if behaviour == "rate_limited":
            return self.rate_limit_answer()
        if behaviour == "overloaded":
            if self.kind == "anthropic":
                return self.error(529, "Overloaded", "overloaded_error")
            return self.error(503, "The server is overloaded, please try again later.", "overloaded")
        if behaviour == "server_error":
            return self.error(500, "The server had an error while processing your request.", "server_error")
        return None

    def quota_answer(self) -> Response:
        """The account's money ran out, as each provider really says it (recorded in their SDKs' issue
        trackers and docs): the status differs by provider, and so does where the meaning is."""
        if self.kind == "openai":
            return self.error(
                429,
                "You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
                "insufficient_quota",
            )
        if self.kind == "anthropic":
            # A 400 whose type says invalid request: only the words tell it is the balance.
            return Response.json(
                400,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "Your credit balance is too low to access the Anthropic API. Please go to "
                        "Plans & Billing to upgrade or purchase credits.",
                    },
                    "request_id": "req_011CbrFTcXhtiMzr3s6EocF7",
                },
            )
        if self.kind == "xai":
            # A 403 (not an auth problem): the team's credits or monthly spending limit.
            return Response.json(
                403,
                {
                    "code": "The caller does not have permission to execute the specified operation",
                    "error": "Your team 16f2151a-40f4-4a80-8ad0-cae00c27e8dd has either used all available "
                    "credits or reached its monthly spending limit. To continue making API requests, please "
                    "purchase more credits or raise your spending limit.",
                },
            )
        if self.kind == "deepseek":
            return Response.json(
                402,
                {
                    "error": {
                        "message": "Insufficient Balance",
                        "type": "unknown_error",
                        "param": None,
                        "code": "invalid_request_error",
                    }
                },
            )
        return self.error(402, "Insufficient balance.", "insufficient_balance")

    def rate_limit_answer(self) -> Response:
        """A 429 that lifts by itself, as each provider really sends it — several mention billing in their
        words ("add a payment method", "check your plan and billing details") though nothing is spent."""
        headers = self.rate_limit_headers_exhausted()
        if self.kind == "gemini":
            # Per-minute free-tier limit: RESOURCE_EXHAUSTED with QuotaFailure and RetryInfo details.
            model = self.models[0]
            return Response.json(
                429,
                {
                    "error": {
                        "code": 429,
                        "message": "You exceeded your current quota, please check your plan and billing details. "
                        "For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
                        "status": "RESOURCE_EXHAUSTED",
                        "details": [
                            {
                                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                "violations": [
                                    {
                                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                                        "quotaDimensions": {"location": "global", "model": model},
                                        "quotaValue": "15",
                                    }
                                ],
                            },
                            {
                                "@type": "type.googleapis.com/google.rpc.Help",
                                "links": [
                                    {
                                        "description": "Learn more about Gemini API quotas",
                                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                                    }
                                ],
                            },
                            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "47s"},
                        ],
                    }
                },
                headers,
            )
        if self.kind == "groq":
            return Response.json(
                429,
                {
                    "error": {
                        "message": "Rate limit reached for model `llama-3.3-70b-versatile` in organization "
                        "`org_01kes94v04f9ramd2n1vj4gjnc` service tier `on_demand` on tokens per minute (TPM): "
                        "Limit 12000, Used 4437, Requested 9854. Please try again in 11.455s. Need more tokens? "
                        "Upgrade to Dev Tier today at https://console.groq.com/settings/billing",
                        "type": "tokens",
                        "code": "rate_limit_exceeded",
                    }
                },
                {"retry-after": "12", **headers},
            )
        if self.kind == "together":
            # Together calls its per-minute limit `credit_limit` and points at billing: only 429 and the
            # words say it is a rate limit.
            return Response.json(
                429,
                {
                    "error": {
                        "message": "You have been rate limited. Your rate limit is 60 queries per minute. Please "
                        "navigate to https://api.together.xyz/settings/billing to upgrade to a paid plan.",
                        "type": "credit_limit",
                        "param": None,
                        "code": None,
                    }
                },
                headers,
            )
        if self.kind == "anthropic":
            return Response.json(
                429,
                {
                    "type": "error",
                    "error": {
                        "type": "rate_limit_error",
                        "message": "This request would exceed the rate limit for your organization of 30,000 input "
                        "tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
                    },
                },
                {"retry-after": "7", **headers},
            )
        # OpenAI and compatible: the daily request limit, which names billing and waits minutes.
        return Response.json(
            429,
            {
                "error": {
                    "message": "Rate limit reached for gpt-4o-mini in organization org-fleet on requests per day "
                    "(RPD): Limit 200, Used 200, Requested 1. Please try again in 7m12s. Visit "
                    "https://platform.openai.com/account/rate-limits to learn more. You can increase your rate "
                    "limit by adding a payment method to your account at https://platform.openai.com/account/billing.",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            headers,
        )

    def rate_limit_headers_exhausted(self) -> dict[str, str]:
        saved, saved_limits = self.headroom, self.limit_headroom
        self.headroom, self.limit_headroom = 0.0, {}
        try:
            return self.rate_limit_headers()
        finally:
            self.headroom, self.limit_headroom = saved, saved_limits

    def probe_body(self) -> Any:
        """A healthy answer of the kind's probe shape, worded as that provider words it."""
        models = [{"id": m, "object": "model", "owned_by": "fleet"} for m in self.models]
        shape = self.facts.shape
        if shape == "model_list_or_array":
            return models
        if self.kind == "anthropic":
            return {"data": [{"id": m, "type": "model"} for m in self.models], "has_more": False}
        if shape == "gemini_models":
            return {"models": [{"name": f"models/{m}"} for m in self.models]}
        if shape == "openrouter_key":
            return {
                "data": {
                    "label": "sk-or-v1-abc...xyz",
                    "limit": 100.0,
                    "usage": 100.0 - self.balance,
                    "limit_remaining": self.balance,
                    "is_free_tier": False,
                }
            }
        if shape == "moonshot_balance":
            return {
                "code": 0,
                "status": True,
                "data": {"available_balance": self.balance, "voucher_balance": 0.0, "cash_balance": self.balance},
            }
        if shape == "deepseek_balance":
            return {
                "is_available": self.balance > 0,
                "balance_infos": [
                    {
                        "currency": "USD",
                        "total_balance": f"{self.balance:.2f}",
                        "granted_balance": "0.00",
                        "topped_up_balance": f"{self.balance:.2f}",
                    }
                ],
            }
        if shape == "xai_key":
            return {
                "redacted_api_key": "xai-...0000",
                "api_key_blocked": False,
                "api_key_disabled": False,
                "team_blocked": False,
                "name": "fleet",
            }
        if shape == "ollama_version":
            return {"version": "0.12.3"}
        if shape == "any":
            return {"status": "ok"}
        return {"object": "list", "data": models}

    def wrong_shape_body(self) -> Any:
        return {"unexpected": True} if self.facts.shape != "model_list_or_array" else {"data": "not a list"}

    def chat_body(self, req: Request) -> Any:
        try:
            payload = req.json() or {}
        except ValueError:
            payload = {}
        model = payload.get("model") or self.models[0]
        if req.path.endswith("/messages"):
            return {
                "id": "msg_fleet",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": f"hello from {self.id}"}],
                "stop_reason": "end_turn",
                "usage": {
                    "input_tokens": 12,
                    "output_tokens": 7,
                    "cache_read_input_tokens": 0,
                    "cache_creation_input_tokens": 0,
                },
            }
        return {
            "id": "chatcmpl-fleet",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"hello from {self.id}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": self.usage if self.usage is not None else chat_usage(self.kind),
        }


class Fleet:
    """The server. `with Fleet([...]) as fleet:` (or `await fleet.astart()` / `fleet.start()`)."""

    def __init__(self, providers: list[FakeProvider] | None = None, *, own_origins: bool = False):
        """`own_origins`: each provider given here also listens on a port of its own, and base_url() names
        it, so a client pools its connections apart from the others' as it would for real providers
        (separate hosts). Without it every provider shares one origin, told apart by the path."""
        self.providers: dict[str, FakeProvider] = {}
        self.own_origins = own_origins
        self._origin_ports: dict[str, int] = {}
        self._origin_servers: list[asyncio.AbstractServer] = []
        self.routes: dict[tuple[str, str, str], Handler] = {}
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._closing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._lock = threading.Lock()
        self._seq = 0  # arrivals so far (see Request.seq); only the fleet's own thread counts
        for p in providers or []:
            self.add(p)

    # -- set-up -----------------------------------------------------------------------------------
    def add(self, provider: FakeProvider) -> FakeProvider:
        if provider.kind not in KIND_FACTS:
            raise ValueError(f"fleet: unknown kind {provider.kind!r}")
        if provider.behaviour not in BEHAVIOURS:
            raise ValueError(f"fleet: unknown behaviour {provider.behaviour!r}; expected one of {BEHAVIOURS}")
        with self._lock:
            self.providers[provider.id] = provider
        return provider

    def set_behaviour(
        self, provider_id: str, behaviour: str, *, delay: float | None = None, headroom: float | None = None
    ) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"fleet: unknown behaviour {behaviour!r}; expected one of {BEHAVIOURS}")
        p = self.providers[provider_id]
        p.behaviour = behaviour
        if delay is not None:
            p.delay = delay
        if headroom is not None:
            p.headroom = headroom

    def add_route(self, provider_id: str, method: str, path: str, handler: Handler) -> None:
        """Serve `method path` (relative to the provider's base URL) with `handler(fake, request)`.
        Routes answer whatever the behaviour, after the auth check (the key may be an admin key: the
        handler decides)."""
        self.routes[(provider_id, method.upper(), path)] = handler

    def base_url(self, provider_id: str) -> str:
        p = self.providers[provider_id]
        port = self._origin_ports.get(provider_id)
        root = self.root_url if port is None else f"http://127.0.0.1:{port}"
        return f"{root}/{provider_id}{p.facts.base_prefix}"

    @property
    def root_url(self) -> str:
        if self.port is None:
            raise RuntimeError("fleet is not started")
        return f"http://127.0.0.1:{self.port}"

    def requests(self, provider_id: str) -> list[Request]:
        return list(self.providers[provider_id].requests)

    @staticmethod
    def closed_port_url() -> str:
        """A URL on 127.0.0.1 where nothing listens (a port bound and released just now)."""
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return f"http://127.0.0.1:{port}"

    # -- life -------------------------------------------------------------------------------------
    def start(self) -> Fleet:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # pragma: no cover - reported to the starter
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_until_complete(self._serve_until_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="llmpulse-fleet", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._closing is None:
            return
        self._loop.call_soon_threadsafe(self._closing.set)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop = None

    async def astart(self) -> Fleet:
        await asyncio.to_thread(self.start)
        return self

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Fleet:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    async def _open(self) -> None:
        self._closing = asyncio.Event()
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=2048)
        self.port = self._server.sockets[0].getsockname()[1]
        for provider_id in list(self.providers) if self.own_origins else ():
            server = await asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=128)
            self._origin_servers.append(server)
            self._origin_ports[provider_id] = server.sockets[0].getsockname()[1]

    async def _serve_until_closed(self) -> None:
        assert self._closing is not None and self._server is not None
        await self._closing.wait()
        self._server.close()
        for server in self._origin_servers:
            server.close()
        for w in list(self._writers):
            w.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- HTTP -------------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                req, response = await self._answer(method.upper(), target, headers, body)
                if response is None:  # hang: hold the connection open until the client gives up or the fleet closes
                    assert self._closing is not None
                    closing = asyncio.ensure_future(self._closing.wait())
                    client_gone = asyncio.ensure_future(reader.read(1))  # b"" once the client closes
                    await asyncio.wait({closing, client_gone}, return_when=asyncio.FIRST_COMPLETED)
                    closing.cancel()
                    client_gone.cancel()
                    if (
                        req is not None
                        and client_gone.done()
                        and not client_gone.cancelled()
                        and not client_gone.result()
                    ):
                        req.abandoned_seq = self._seq
                    return
                reason = REASONS.get(response.status, "Status")
                out = [f"HTTP/1.1 {response.status} {reason}", f"content-length: {len(response.body)}"]
                out += [f"{k}: {v}" for k, v in response.headers.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + response.body)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            return
        except asyncio.CancelledError:
            # The fleet is closing; end quietly (a cancelled connection task makes asyncio log noise).
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[Request | None, Response | None]:
        """(the request as logged, the answer; None: hang)."""
        parts = urlsplit(target)
        segments = parts.path.lstrip("/").split("/", 1)
        fake = self.providers.get(segments[0])
        if fake is None:
            return None, Response.json(404, {"error": {"message": f"no fake provider {segments[0]!r}"}})
        rest = "/" + (segments[1] if len(segments) > 1 else "")
        prefix = fake.facts.base_prefix
        if prefix and rest.startswith(prefix):
            rest = rest[len(prefix) :] or "/"
        req = Request(method, rest, parse_qs(parts.query), headers, body, seq=self._seq)
        self._seq += 1
        fake.requests.append(req)
        return req, await self._respond(fake, req, method, rest)

    async def _respond(self, fake: FakeProvider, req: Request, method: str, rest: str) -> Response | None:
        behaviour = fake.behaviour
        if behaviour == "hang":
            return None
        if behaviour == "flapping":
            fake._flap += 1
            behaviour = "ok" if fake._flap % 2 else "server_error"
        if fake.delay > 0:
            await asyncio.sleep(fake.delay)

        route = self.routes.get((fake.id, method, rest))
        if route is not None:
            return route(fake, req)
        if not fake.auth_ok(req) and behaviour != "bad_key":
            behaviour = "bad_key"
        failed = fake.failure(behaviour)
        if failed is not None:
            return failed
        headers_out = fake.rate_limit_headers()
        if behaviour == "garbage":
            return Response(200, b"<html>upstream proxy says hello</html>", {"content-type": "text/html"})
        if method == "GET" and rest == fake.facts.probe_path:
            if behaviour == "wrong_shape":
                return Response.json(200, fake.wrong_shape_body(), headers_out)
            return Response.json(200, fake.probe_body(), headers_out)
        if method == "POST" and rest in CHAT_PATHS:
            return Response.json(200, fake.chat_body(req), headers_out)
        return Response.json(404, {"error": {"message": f"{method} {rest} not served by fake {fake.id}"}})
