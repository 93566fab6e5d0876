"""What every subcommand shares: loading the context, opening the store, errors, tables and JSON."""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from llmpulse.core.config import Context, load_context
from llmpulse.core.errors import LlmpulseError
from llmpulse.core.redact import redact, register_secret, register_secrets, safe_text
from llmpulse.core.store import Store, StoreError


class CliError(LlmpulseError):
    """A user-facing failure of the command line itself: one line on stderr, then exit with `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code


# What a command does with env file lines that are not KEY=VALUE (they are skipped either way):
# "warn": one line each on stderr, and go on with the good lines — a viewer or a recording shows what it can;
# "refuse": stop with the config error — `check` and `daemon` run unattended, where a skipped key would
#   silently take a provider out of monitoring (and a warning nobody reads would not say so);
# "quiet": go on without a word — a reload inside the dashboard, whose screen stderr would scribble over.
BadEnvLines = Literal["warn", "refuse", "quiet"]


def context_from(args: argparse.Namespace, bad_env_lines: BadEnvLines = "warn") -> Context:
    """Settings, secrets and providers for this invocation; every loaded key is registered for redaction."""
    ctx = load_context(getattr(args, "config", None), getattr(args, "db", None), getattr(args, "env_file", None))
    if ctx.env_problems and bad_env_lines == "refuse":
        raise ctx.env_problems[0].error(more=len(ctx.env_problems) - 1)
    if bad_env_lines == "warn":
        for problem in ctx.env_problems:
            eprint(f"llmpulse: warning: {problem}")
    register_secrets(p.api_key.reveal() for p in ctx.providers if p.api_key)
    register_secrets(p.admin_key.reveal() for p in ctx.providers if p.admin_key)
    for p in ctx.providers:  # a base URL with user:password in it: the password is a secret too
        if p.base_url and "@" in p.base_url:
            register_secret(p.base_url)
    return ctx


async def open_store(ctx: Context) -> Store:
    return await Store.open(ctx.db_path)


def require_database(ctx: Context) -> None:
    """A command that only reads, pointed at a database that does not exist (a mistyped --db, or nothing
    has collected yet), says so — as `status` does — instead of creating an empty one and reporting
    $0.00 spent and no open alerts from it: figures about a state it cannot see."""
    if not ctx.db_path.exists():
        raise StoreError(f"no database at {ctx.db_path}: nothing has collected there yet (run 'llmpulse daemon')")


async def open_reader(ctx: Context) -> Store:
    """For commands that only read (report, budgets, alerts, migration, status): SQLite refuses any
    write on this connection, so reading can never decide or change anything. A database older than
    this version is upgraded (schema only); a missing one is an error (require_database)."""
    require_database(ctx)
    return await Store.open_reader(ctx.db_path)


def print_json(value: Any) -> None:
    """JSON on stdout, redacted as a last net (keys must never reach exports). JSON escapes C0 controls
    itself; C1 controls and what a redaction could leave are stripped."""
    print(safe_text(json.dumps(value, indent=2, default=str, ensure_ascii=False)))


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Iterable[int] = ()) -> str:
    """Plain aligned columns for terminals and pipes; `right` lists numeric column indexes."""
    right_cols = set(right)
    # Each cell redacted and stripped of control sequences (an error body or an imported name must not
    # drive the terminal), on one line, before the widths are measured.
    text_rows = [["" if v is None else " ".join(safe_text(str(v)).split("\n")) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def fmt(row: Sequence[str]) -> str:
        cells = [c.rjust(widths[i]) if i in right_cols else c.ljust(widths[i]) for i, c in enumerate(row)]
        return "  ".join(cells).rstrip()

    lines = [fmt(headers), fmt(["-" * w for w in widths])]
    lines.extend(fmt(r) for r in text_rows)
    return redact("\n".join(lines)) or ""


# A cell a spreadsheet would run as a formula (=HYPERLINK(...), +cmd|...): written with a leading "'".
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell: text redacted, without control sequences, and never a formula; numbers as they are."""
    if not isinstance(value, str):
        return value
    text = safe_text(value)
    if text.startswith(_FORMULA_START):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def render_csv(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    import csv  # only the commands that print CSV pay for it

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return redact(buf.getvalue()) or ""


def default_actor() -> str:
    """Who a change is recorded as when --by is not given: the login name."""
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return os.environ.get("USER") or "unknown"


def eprint(message: str) -> None:
    print(safe_text(message), file=sys.stderr)


def usd(value: float | None) -> str:
    """Dollars for a CLI table: $1,234.50; a cent's fraction keeps four places ($0.0031), so cheap
    traffic does not read as free; '-' when there is no figure."""
    if value is None:
        return "-"
    if 0 < abs(value) < 0.0001:
        return "<$0.0001" if value > 0 else ">-$0.0001"
    if 0 < abs(value) < 0.01:
        return f"${value:.4f}"
    return f"${value:,.2f}"


def period_seconds(text: str, option: str = "--since") -> float:
    """A period option's value in seconds, or the one-line error naming the option and the form."""
    from llmpulse.core.durations import DurationError, parse_duration

    try:
        seconds = parse_duration(text)
    except DurationError:
        raise CliError(f"{option}: found {text!r}; expected a duration like 24h, 7d or 30d", 2) from None
    if seconds <= 0:
        raise CliError(f"{option}: found {text!r}; expected a positive duration like 7d", 2)
    return seconds
