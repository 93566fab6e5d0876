"""`llmpulse doctor`: check the database file (integrity, schema version, WAL size); exit 1 on a problem."""

from __future__ import annotations

import argparse
import asyncio

from llmpulse.core.cli.common import context_from, print_json
from llmpulse.core.doctor import examine


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "doctor",
        help="check the database: SQLite integrity check, schema version, WAL size (exit 1 on a problem)",
        description="Check the database file without changing it (safe beside a running daemon): "
        "PRAGMA integrity_check, the schema version against this llmpulse, the size of the "
        "write-ahead log. Exit 0 when sound, 1 when something is wrong.",
    )
    d.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    d.set_defaults(handler=doctor_command)


async def doctor_command(args: argparse.Namespace) -> int:
    ctx = context_from(args)
    report = await asyncio.to_thread(examine, ctx.db_path)
    if args.json:
        print_json(report.to_json())
        return 0 if report.ok else 1
    size = "-" if report.size_bytes is None else f"{report.size_bytes:,} bytes"
    print(f"database:  {report.path} ({size}, write-ahead log {report.wal_bytes:,} bytes)")
    if report.schema_version is not None:
        print(f"schema:    version {report.schema_version} (this llmpulse: {report.expected_version})")
    if report.integrity:
        shown = report.integrity if report.integrity != ["ok"] else ["ok"]
        print("integrity: " + "\n           ".join(shown))
    for note in report.notes:
        print(f"note:      {note}")
    for problem in report.problems:
        print(f"PROBLEM:   {problem}")
    print("ok" if report.ok else "problems found")
    return 0 if report.ok else 1
