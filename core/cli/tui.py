"""`llmpulse watch` (the dashboard; also bare `llmpulse`), `llmpulse demo`, `llmpulse daemon`.

The Textual app is imported inside the handlers only, so `core` never imports `textual` and the
daemon runs on a server without it ever being loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from llmpulse.core.cli.common import CliError, context_from
from llmpulse.core.daemon_log import configure_daemon_log
from llmpulse.core.redact import redact
from llmpulse.core.vocabulary import counted

if TYPE_CHECKING:
    from llmpulse.core.config import Context
    from llmpulse.core.server.config import Listener


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser(
        "watch",
        help="the live dashboard (the default when no command is given)",
        description="Open the live dashboard on the database. The first dashboard (or daemon) on a database "
        "runs the collector (probes, roll-ups, alert rules, notifications); others view the same "
        "data and take over within seconds if it exits. ctrl+r reloads the config file (as SIGHUP does "
        "for the daemon); a config with a mistake is refused and the running one stays.",
    )
    w.add_argument(
        "--refresh",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="screen refresh interval (default 1; change live with + and -)",
    )
    w.add_argument("--no-collect", action="store_true", help="only view: never run the collector in this process")
    w.set_defaults(handler=watch_command)

    d = sub.add_parser(
        "demo",
        help="the whole product with no API keys: a simulated fleet on 127.0.0.1 and live traffic",
        description="Start simulated providers as real HTTP servers on 127.0.0.1 (fast, slow, flapping, "
        "rate-limited, bad key, local), backfill 30 days of usage across departments and agents "
        "with a migration in progress and budgets near their thresholds, feed live traffic, and "
        "open the dashboard on a temporary database (`llmpulse --db PATH demo` to keep it). No key, no network.",
    )
    d.add_argument("--refresh", type=_seconds, default=1.0, metavar="SECONDS", help="screen refresh interval")
    d.add_argument(
        "--headless",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="no screen: run the demo's collector and traffic this long, then print a summary",
    )
    d.set_defaults(handler=demo_command)

    m = sub.add_parser(
        "daemon",
        help="the collector without a screen, for systemd or a tmux pane",
        description="Run the collector (probes, the providers' status pages, usage roll-ups, alert rules, "
        "notifications; with an admin key, the providers' usage APIs) without a screen, logging one line per event to stderr. Stops cleanly "
        "on SIGTERM or SIGINT after finishing its writes. Dashboards opened on the same database view what "
        "it collects. With [server] listen (or --listen) it also serves HTTP: POST /v1/traces (OTLP/HTTP, "
        "GenAI spans in as usage), POST /v1/records (JSON Lines, as `import`), GET /metrics (Prometheus) and "
        "GET /healthz, with a Bearer token when [server] token_env is set; on SIGTERM the server stops "
        "accepting at once and stores everything it acknowledged. SIGHUP does not change [server] "
        "(restart for that).",
    )
    m.add_argument(
        "--once",
        action="store_true",
        help="run one round and exit (for cron or a quick test); no HTTP server, but [server] and --listen "
        "are checked as for the daemon",
    )
    m.add_argument(
        "--listen",
        metavar="ADDR",
        default=None,
        help="serve HTTP on HOST:PORT (overrides [server] listen; e.g. 127.0.0.1:4318, port 0 for any free one); "
        "an address other than loopback needs [server] token_env",
    )
    m.set_defaults(handler=daemon_command)


def _seconds(text: str) -> float:
    from llmpulse.core.durations import parse_duration

    try:
        value = parse_duration(text) if not text.replace(".", "", 1).isdigit() else float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"found {text!r}; expected a positive number of seconds")
    return value


def _require_terminal() -> None:
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise CliError(
            "the dashboard needs a terminal (stdin and stdout are not a tty); "
            "use `llmpulse daemon` to collect without a screen, or `demo --headless 10`",
            2,
        )


def watch_command(args: argparse.Namespace) -> int:
    ctx = context_from(args)
    # A folder or a file that is not SQLite as --db is refused here, in the line `status` gives: inside
    # the dashboard it was an empty screen saying "loading…" beside a cut error, and an exit code of 0.
    asyncio.run(_check_database(ctx.db_path))
    _require_terminal()
    from llmpulse.tui.app import run_dashboard

    return run_dashboard(
        ctx,
        refresh=args.refresh,
        collect=not args.no_collect,
        reload_context=lambda: context_from(args, bad_env_lines="quiet"),
    )


async def _check_database(path: Path) -> None:
    """Open an existing database as the dashboard's viewer will, then close it (a missing one is left for
    the dashboard to create, as before)."""
    from llmpulse.core.store import Store

    if path.exists():
        await (await Store.open_reader(path)).close()


def demo_command(args: argparse.Namespace) -> int:
    from llmpulse.core.simulator.demo import Demo

    if args.headless is None:
        _require_terminal()
    with Demo(db_path=args.db) as demo:
        ctx = demo.context()
        if args.headless is not None:
            return asyncio.run(demo.run_headless(args.headless))
        from llmpulse.tui.app import run_dashboard

        return run_dashboard(
            ctx, refresh=args.refresh, collect=True, background=demo.live_traffic, on_exit=demo.remove_files
        )


def daemon_command(args: argparse.Namespace) -> int:
    ctx = context_from(args, bad_env_lines="refuse")
    listener = None
    if args.listen is not None or ctx.config.server.listen is not None:
        from llmpulse.core.server.config import resolve_listener

        # Checked with --once too: a bad [server] section is the same one-line error however the daemon
        # is started (a cron `--once` that passed would hide it until the service starts).
        listener = resolve_listener(ctx.config.server, ctx.env, ctx.config.source, args.listen)
    if args.once:
        listener = None  # one round and exit: no HTTP server
    configure_daemon_log()
    # A reload (SIGHUP) that finds a bad line is refused like any config mistake: the running config stays.
    reload_context = lambda: context_from(args, bad_env_lines="refuse")  # noqa: E731
    return asyncio.run(run_daemon(ctx, once=args.once, reload_context=reload_context, listener=listener))


async def run_daemon(
    ctx: Context,
    *,
    once: bool = False,
    stop: asyncio.Event | None = None,
    reload_context: Callable[[], Context] | None = None,
    listener: Listener | None = None,
) -> int:
    from llmpulse.core.collector import Collector
    from llmpulse.core.store import Store

    log = logging.getLogger("llmpulse.daemon")
    stop = stop or asyncio.Event()

    def stop_on(sig: int) -> None:
        log.info(f"{signal.Signals(sig).name}: stopping after this round's writes")
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop_on, sig)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    collector: Collector | None = None

    def reload() -> None:
        # SIGHUP: load and check the config now; a mistake is refused and the running config stays.
        if reload_context is None or collector is None:
            return
        try:
            new_ctx = reload_context()
        except Exception as exc:
            log.info(redact(f"SIGHUP: config reload refused, the running config stays: {exc}"))
            return
        if new_ctx.db_path != ctx.db_path:
            log.info(f"SIGHUP: config reload refused: the database moved to {new_ctx.db_path}; restart to change it")
            return
        collector.reload(new_ctx)
        log.info("SIGHUP: config loaded; it applies from the next round")

    if reload_context is not None:
        try:
            loop.add_signal_handler(signal.SIGHUP, reload)
        except (NotImplementedError, RuntimeError, AttributeError):  # not the main thread, or no SIGHUP
            pass
    store = await Store.open(ctx.db_path)
    log.info(
        f"daemon started: database {ctx.db_path}, {counted(sum(p.configured for p in ctx.providers), 'provider')} "
        f"configured, probing every {ctx.config.probe.interval:g}s"
    )
    server = None
    if listener is not None:
        from llmpulse.core.server.process import ServerProcess, ServerStartError

        # The server runs in a process of its own (see server/process.py): its CPU work would otherwise
        # stall every collector round.
        server = ServerProcess(ctx, listener)
        try:
            url = await server.start()
        except ServerStartError:
            await store.close()
            raise
        log.info(f"serving on {url}" + (" (token required)" if listener.token else " (no token: loopback only)"))
    stopper = None
    if server is not None:
        running = server

        async def stop_serving() -> None:
            # On SIGTERM the server stops taking requests at once (not after the collector's round) and
            # writes what it acknowledged before its process exits. If it ends on its own, say so.
            stopping = asyncio.create_task(stop.wait())
            exited = asyncio.create_task(running.wait_exit())
            await asyncio.wait((stopping, exited), return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                stopping.cancel()
                log.info(
                    f"error: the HTTP server process ended on its own (exit status {exited.result()}); not serving"
                )
                return
            code = await running.stop()
            exited.cancel()
            if code != 0:
                log.info(f"server process exited with status {code}")

        stopper = asyncio.create_task(stop_serving())
    try:
        collector = Collector(ctx, store, on_event=log.info)
        if once:
            report = await collector.run_round()
            # A one-shot run (cron) finishes its deliveries and writes their outcomes before it exits:
            # none is left "sending" for the next run to send again.
            await collector.notifier.drain()
            log.info(f"round done in {report.duration_ms:.0f} ms, {counted(len(report.errors), 'error')}")
            return 1 if report.errors else 0
        started = time.monotonic()
        await collector.run_forever(stop)
        log.info(f"daemon stopped after {counted(collector.rounds, 'round')} in {time.monotonic() - started:.0f}s")
        return 0
    finally:
        if server is not None and stopper is not None:
            stop.set()
            await asyncio.gather(stopper, return_exceptions=True)
            await server.stop()  # already stopped unless stop_serving failed
        await store.close()
