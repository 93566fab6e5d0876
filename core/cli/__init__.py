"""`llmpulse`: one console command, many subcommands.

Global options (--config, --db, --env-file) come before the subcommand. Each subcommand module has
`register(subparsers)` that adds its parsers with `set_defaults(handler=...)`; a handler takes the
parsed args and returns the exit code (it may be async).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sqlite3
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from llmpulse.core.alerts.config import CHANNEL_TYPES
from llmpulse.core.cli.common import eprint
from llmpulse.core.errors import LlmpulseError

# Subcommand modules, in the order `--help` lists them, with the commands each registers. A command line
# that names one of these commands builds only its module's parsers: the others (and what they import:
# the usage queries, the exporters, the doctor) would only slow its start-up.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "llmpulse.core.cli.check": ("check",),
    "llmpulse.core.cli.status": ("status",),  # reads only
    "llmpulse.core.cli.providers": ("providers",),  # providers enable/disable
    "llmpulse.core.cli.usage": ("record", "import", "budgets", "reconcile", "report"),
    "llmpulse.core.cli.alerts": ("alerts",),  # alerts ack/resolve/silence/unsilence
    "llmpulse.core.cli.migration": ("migration",),  # migration advance
    "llmpulse.core.cli.failover": ("failover",),
    "llmpulse.core.cli.export": ("export",),
    "llmpulse.core.cli.doctor": ("doctor",),
    "llmpulse.core.cli.tui": ("watch", "demo", "daemon"),  # (issue 6)
}


class _Version(argparse.Action):
    """--version: the installed metadata is read only when asked for (it costs every start-up ~25 ms)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from llmpulse.core import __version__

        print(f"llmpulse {__version__}")  # stdout, as argparse's own version action does
        parser.exit(0)


# A command line mistake exits 2, except for `check`: monitoring systems read its status the Nagios
# way, where 2 is CRITICAL and a check that could not run is UNKNOWN (3) — a typo must not page anyone.
USAGE_EXIT = {"check": 3}
GLOBAL_OPTIONS_WITH_VALUE = ("--config", "--db", "--env-file")


def command_of(argv: list[str]) -> str | None:
    """The subcommand word in argv (global options and their values skipped), if any."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif not word.startswith("-"):
            return word
    return None


class _Parser(argparse.ArgumentParser):
    usage_exit = 2

    def error(self, message: str) -> NoReturn:  # argparse's own errors: one line, no usage dump
        self.exit(self.usage_exit, f"llmpulse: error: {message} (see '{self.prog} --help')\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command` (a word from argv) only that command's module is loaded
    when it is a known command (anything else, or none, needs them all: the help and argparse's list of
    choices)."""
    parser = _Parser(
        prog="llmpulse",
        description="Terminal monitor for LLM API providers: health, cost vs budget, alerts, migrations.",
        epilog="Alert channels ([[alerts.channels]] type): " + ", ".join(CHANNEL_TYPES) + ". "
        "Run 'llmpulse COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action=_Version)
    parser.add_argument(
        "--config", metavar="PATH", help="TOML config (default: $LLMPULSE_CONFIG, ./llmpulse.toml, user config dir)"
    )
    parser.add_argument(
        "--db", metavar="PATH", help="SQLite database (default: $LLMPULSE_DB, [storage] path, user data dir)"
    )
    parser.add_argument("--env-file", metavar="PATH", help="file of KEY=value secrets (default: ./.env)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules = [m for m, commands in COMMAND_MODULES.items() if command in commands] or list(COMMAND_MODULES)
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


# A subcommand's handler: takes the parsed args, returns the exit code (or None for 0); may be async.
Handler = Callable[[argparse.Namespace], "int | Coroutine[Any, Any, int | None] | None"]


def run_handler(handler: Handler, args: argparse.Namespace) -> int:
    result = handler(args)
    code = asyncio.run(result) if isinstance(result, Coroutine) else result
    return int(code or 0)


def main(argv: list[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = command_of(words)
    _Parser.usage_exit = USAGE_EXIT.get(command or "", 2)
    parser = build_parser(command)
    args = parser.parse_args(words)
    handler = getattr(args, "handler", None)
    if handler is None:
        if args.command is None:
            # Bare `llmpulse` opens the dashboard.
            args = parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "watch"])
            handler = args.handler
        else:
            parser.print_help()
            return 0
    try:
        code = run_handler(handler, args)
    except LlmpulseError as exc:  # every expected failure: its one line, its exit status
        eprint(f"llmpulse: {exc.label}: {exc}")
        code = exc.exit_code
    except sqlite3.Error as exc:  # the database refused mid-command (read-only, full disk, locked too long)
        eprint(f"llmpulse: database error: {exc}")
        code = 2
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as exc:  # a bug, not bad input: still one line unless asked for the traceback
        if os.environ.get("LLMPULSE_DEBUG"):
            traceback.print_exc()
        eprint(f"llmpulse: internal error: {type(exc).__name__}: {exc} (set LLMPULSE_DEBUG=1 for a traceback)")
        code = 70
    return code


if __name__ == "__main__":
    sys.exit(main())
