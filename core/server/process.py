"""The daemon's HTTP server in a process of its own.

Decoding OTLP and turning spans into records is CPU work in Python. In the collector's process it
held the event loop for tens of milliseconds per export, and every step of a collector round waited
behind it (rounds measured 40-90x slower while ingest ran at full speed on 2 cores). In its own process,
with its own database connection, the operating system gives the server and the collector a core each;
they meet only in SQLite, whose WAL lets the collector read while the server writes.

The parent starts it with the daemon's context (`ServerProcess.start()` returns the URL once the port
is bound, or raises with the bind error), and stops it with SIGTERM: the server stops accepting, writes
everything it acknowledged, and exits 0. SIGINT (Ctrl-C reaches the whole process group) does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from llmpulse.core.config import Context
from llmpulse.core.errors import LlmpulseError
from llmpulse.core.server.config import Listener

START_TIMEOUT_S = 60.0  # a fresh interpreter importing aiohttp and protobuf on a busy machine
STOP_TIMEOUT_S = 60.0  # writing what was acknowledged; then it is killed


class ServerStartError(LlmpulseError):
    """The server process could not start (the address is taken, say); the message says why."""

    exit_code = 2


def _child(ctx: Context, listener: Listener, conn: Connection) -> None:
    """The server process's entry point."""
    from llmpulse.core.daemon_log import configure_daemon_log
    from llmpulse.core.redact import register_secrets

    configure_daemon_log()
    # Ingest is bulk work; the collector beside it judges providers and pages people. On a busy machine
    # the scheduler should let the collector's round run first (at full ingest on 2 cores it was ~40x slower).
    with contextlib.suppress(OSError):
        os.nice(10)

    register_secrets(p.api_key.reveal() for p in ctx.providers if p.api_key)
    register_secrets(p.admin_key.reveal() for p in ctx.providers if p.admin_key)
    code = asyncio.run(_serve(ctx, listener, conn))
    # Done and written. A second SIGTERM (the parent's, after one sent to the whole process group, as
    # systemd does) must not turn a clean exit into "killed by SIGTERM".
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)


async def _serve(ctx: Context, listener: Listener, conn: Connection) -> int:
    from llmpulse.core.server.app import Server, ServerState
    from llmpulse.core.store import Store

    log = logging.getLogger("llmpulse.server")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGHUP reloads the daemon's config (the parent's business); by default it would end this process
    # without writing what it acknowledged.
    loop.add_signal_handler(signal.SIGHUP, lambda: log.info("server: SIGHUP ignored ([server] changes need a restart)"))
    store = await Store.open(ctx.db_path)
    try:
        server = Server(ServerState(ctx, store, ctx.config.server), listener)
        try:
            await server.start()
        except OSError as exc:
            conn.send(("error", f"cannot listen on {listener.host}:{listener.port}: {exc.strerror or exc}"))
            return 2
        conn.send(("serving", server.url))
        await stop.wait()
        await server.stop()
        counters = server.state.counters
        queue = server.state.queue()
        log.info(
            f"server stopped: {queue.accepted} span records and {counters['records_stored']} "
            f"JSON Lines records accepted, all stored; writes held back {queue.round_yield.held_back_s:.2f} s "
            "in all for the collector's rounds"
        )
        return 0
    finally:
        await store.close()


class ServerProcess:
    def __init__(self, ctx: Context, listener: Listener):
        self.ctx = ctx
        self.listener = listener
        self.url: str | None = None
        # spawn, not fork: the parent has an event loop and a database thread running
        mp = multiprocessing.get_context("spawn")
        self._recv, send = mp.Pipe(duplex=False)
        self._send = send
        self.process: Any = mp.Process(target=_child, args=(ctx, listener, send), name="llmpulse-server", daemon=False)

    async def start(self) -> str:
        self.process.start()
        self._send.close()  # the child holds the sending end now
        ready = await asyncio.to_thread(self._recv.poll, START_TIMEOUT_S)
        if not ready:
            await self.stop()
            raise ServerStartError(f"the HTTP server did not start within {START_TIMEOUT_S:g}s")
        try:
            message = self._recv.recv()
        except EOFError:
            await self.stop()
            raise ServerStartError(f"the HTTP server exited at start (exit status {self.process.exitcode})") from None
        kind, text = str(message[0]), str(message[1])
        if kind != "serving":
            await self.stop()
            raise ServerStartError(text)
        self.url = text
        return text

    async def wait_exit(self) -> int | None:
        """Wait until the process ends, however it ends; its exit status."""
        await asyncio.to_thread(self.process.join)
        code: int | None = self.process.exitcode
        return code

    async def stop(self) -> int | None:
        """SIGTERM, then wait for it to write what it acknowledged; its exit status."""
        if self.process.is_alive():
            self.process.terminate()
        await asyncio.to_thread(self.process.join, STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join, 5)
        code: int | None = self.process.exitcode
        return code
