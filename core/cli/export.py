"""`llmpulse export --since 30d --out DIR [--format csv|jsonl]`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from llmpulse.core.cli.common import CliError, context_from, open_store, period_seconds, require_database
from llmpulse.core.export import FORMATS
from llmpulse.core.vocabulary import counted


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="usage, roll-ups, probes, alerts, budgets and migrations of a period into one folder",
        description="Write what llmpulse knows over a period into DIR, one file per kind (usage with "
        "usage.jsonl in the `llmpulse import` format, usage_rollups, probes, alerts, alert_transitions, "
        "alert_deliveries, budgets, migrations, migration_events) and manifest.json saying what is "
        "included and for which period. Keys and secrets are never in it.",
    )
    p.add_argument("--since", default="30d", metavar="DURATION", help="how far back, e.g. 24h, 7d (default 30d)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created if missing)")
    p.add_argument("--format", choices=FORMATS, default="jsonl", help="file format (default jsonl)")
    p.set_defaults(handler=export_command)


async def export_command(args: argparse.Namespace) -> int:
    seconds = period_seconds(args.since)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out: {out} is a file; expected a folder to write into", 2)
    ctx = context_from(args)
    now = time.time()
    require_database(ctx)  # only reads: a missing database is said, not created empty
    store = await open_store(ctx)
    try:
        from llmpulse.core import __version__
        from llmpulse.core.export import export  # per command: the CLI starts without it
        from llmpulse.core.usage.budgets import budget_statuses

        budgets = [b.to_json() for b in await budget_statuses(store, ctx.config.usage, now)]
        try:
            result = await export(store, out, now - seconds, now + 1, args.format, budgets, __version__)
        except OSError as exc:
            raise CliError(f"--out: cannot write {out}: {exc.strerror}; expected a writable folder", 2) from None
    finally:
        await store.close()
    for f in result.files:
        print(f"{f.rows:>9,}  {f.name}")
    print(f"wrote {counted(len(result.files), 'file')} and manifest.json to {out}")
    return 0
