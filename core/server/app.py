"""The daemon's HTTP server (aiohttp.web): the token check, body limits and the route modules.

Each module in ROUTE_MODULES has `install(app, state)`, which adds its routes to the app and may name
paths that need no token (`state.public_paths`). A new endpoint is a new module in that list; no other
module changes. Every request needs `Authorization: Bearer <token>` when a token is configured, except
the public paths (GET /healthz: a load balancer's liveness check carries no token and learns nothing).

Bodies: aiohttp inflates a gzip (or deflate) request body as it reads it, and `client_max_size` caps
the body as read — after inflating — so a small gzip bomb is refused with 413 once it has grown past the
limit, never inflated whole.
"""

from __future__ import annotations

import hmac
import importlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from llmpulse.core.clock import SYSTEM_CLOCK, Clock
from llmpulse.core.config import Context
from llmpulse.core.redact import register_secret
from llmpulse.core.server.config import Listener, ServerConfig
from llmpulse.core.server.ingest import IngestQueue
from llmpulse.core.store import Store
from llmpulse.core.usage.recorder import pricing_for

log = logging.getLogger("llmpulse.server")

# Route modules, each with install(app, state). Order is only the order routes are added.
ROUTE_MODULES: tuple[str, ...] = (
    "llmpulse.core.server.health",
    "llmpulse.core.server.otlp",
    "llmpulse.core.server.jsonl",
    "llmpulse.core.server.metrics",
)


@dataclass
class ServerState:
    """What route handlers share: settings, the database, the clock, and counters (for /metrics and logs)."""

    ctx: Context
    store: Store
    config: ServerConfig
    token: str | None = None
    clock: Clock = SYSTEM_CLOCK
    started_at: float = 0.0
    public_paths: set[str] = field(default_factory=set)
    counters: Counter[str] = field(default_factory=Counter)
    # Set when the server stops accepting: handlers still running answer 503 rather than take more work.
    stopping: bool = False
    # Where accepted records go (see ingest.py); the Server opens it before it listens.
    ingest: IngestQueue | None = None

    def queue(self) -> IngestQueue:
        if self.ingest is None:
            raise RuntimeError("the ingest queue is not open (Server.start opens it)")
        return self.ingest


STATE: web.AppKey[ServerState] = web.AppKey("llmpulse_state", ServerState)


class RouteInstaller(Protocol):
    def __call__(self, app: web.Application, state: ServerState) -> None: ...


def installers_from(modules: Iterable[str]) -> list[RouteInstaller]:
    return [importlib.import_module(name).install for name in modules]


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@web.middleware
async def _authorize(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    state = request.app[STATE]
    if state.token is not None and request.path not in state.public_paths:
        sent = _bearer(request)
        if sent is None or not hmac.compare_digest(sent.encode(), state.token.encode()):
            state.counters["requests_unauthorized"] += 1
            return web.json_response(
                {"error": "missing or wrong token; expected Authorization: Bearer <the LLMPULSE_INGEST_TOKEN value>"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="llmpulse"'},
            )
    response = await handler(request)
    if state.stopping:
        # Keep-alive connections would keep bringing requests (each answered 503) until the shutdown
        # timeout: close each one once it has its answer.
        response.force_close()
    return response


async def read_body(request: web.Request) -> bytes:
    """The request body, inflated when gzip- or deflate-encoded; 413 past [server] max_body_mb (after
    inflating), 400 for a body that does not inflate. Every route that reads a body uses this."""
    try:
        return await request.read()
    except RequestPayloadError as exc:
        why = " ".join(str(exc).split())
        raise web.HTTPBadRequest(
            text=f"cannot read the body ({why}); expected it plain or encoded as Content-Encoding says"
        ) from None


class _ClientBodyErrorFilter(logging.Filter):
    """After answering, aiohttp reads the rest of a request's body (so the client can read the answer);
    a body that breaks there — a gzip that does not inflate, already answered 400 or 415 — raises again
    and aiohttp logs it as an "Unhandled exception" with a traceback. It is the client's broken body,
    answered already: not an error of the daemon, whose log is one line per event."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], RequestPayloadError))


_CLIENT_BODY_ERRORS = _ClientBodyErrorFilter()


def build_app(state: ServerState, installers: Iterable[RouteInstaller] | None = None) -> web.Application:
    app = web.Application(client_max_size=state.config.max_body_bytes, middlewares=[_authorize])
    logging.getLogger("aiohttp.server").addFilter(_CLIENT_BODY_ERRORS)  # a set: adding it again is a no-op
    app[STATE] = state
    for install in installers if installers is not None else installers_from(ROUTE_MODULES):
        install(app, state)
    return app


class Server:
    """The HTTP server on its own: start() binds (raises OSError when the address is taken), stop() stops
    accepting and lets requests in flight finish (bounded), then closes."""

    def __init__(
        self,
        state: ServerState,
        listener: Listener,
        installers: Iterable[RouteInstaller] | None = None,
        *,
        shutdown_timeout: float = 10.0,
    ):
        self.state = state
        self.listener = listener
        register_secret(listener.token)
        state.token = listener.token
        self.app = build_app(state, installers)
        # No access log: one line per OTLP export would drown the daemon's event lines.
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout)
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = f"[{self.listener.host}]" if ":" in self.listener.host else self.listener.host
        return f"http://{host}:{self.port}"

    async def start(self) -> Server:
        state = self.state
        state.started_at = state.clock.now()
        if state.ingest is None:
            state.ingest = IngestQueue(
                state.store,
                pricing_for(state.ctx),
                state.config.queue_records,
                clock=state.clock,
                flush_interval=state.config.flush_interval,
                known_providers=[p.id for p in state.ctx.providers],
            )
        await state.ingest.start()
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.listener.host, self.listener.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await self.runner.cleanup()
            await state.ingest.close()
            raise
        self.port = self.runner.addresses[0][1]  # the port bound, when 0 asked for any free one
        return self

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish, then store everything accepted. Safe to call
        twice (the daemon calls it on SIGTERM and again on its way out)."""
        if self.state.stopping:
            return
        self.state.stopping = True
        try:
            await self.runner.cleanup()
        finally:
            if self.state.ingest is not None:
                await self.state.ingest.close()

    async def __aenter__(self) -> Server:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
