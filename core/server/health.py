"""`GET /healthz`: the server is up and how long; no token needed, nothing secret in the answer."""

from __future__ import annotations

from aiohttp import web

from llmpulse.core.server.app import STATE, ServerState


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.stopping:
        return web.json_response({"status": "stopping"}, status=503)
    return web.json_response({"status": "ok", "uptime_s": round(state.clock.now() - state.started_at, 3)})


def install(app: web.Application, state: ServerState) -> None:
    app.router.add_get("/healthz", healthz)
    state.public_paths.add("/healthz")
