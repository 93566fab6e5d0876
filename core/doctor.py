"""`llmpulse doctor`: is the database file sound? SQLite's own integrity check, the schema version against
this llmpulse, and the size of the write-ahead log — read-only, safe beside a running daemon."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmpulse.core.schema import MIGRATIONS

# A WAL much larger than this means checkpoints are not getting through (a reader holding an old snapshot
# for hours, or a process that never closes): worth knowing before the disk says so.
LARGE_WAL_BYTES = 256 << 20
MAX_INTEGRITY_LINES = 50


@dataclass
class DoctorReport:
    path: str
    size_bytes: int | None = None
    wal_bytes: int = 0
    schema_version: int | None = None
    expected_version: int = len(MIGRATIONS)
    integrity: list[str] = field(default_factory=list)  # ["ok"] when sound
    problems: list[str] = field(default_factory=list)  # each makes `doctor` exit 1
    notes: list[str] = field(default_factory=list)  # worth knowing, not wrong

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def examine(path: str | Path) -> DoctorReport:
    """Check the database at `path` without changing it."""
    path = Path(path)
    report = DoctorReport(str(path))
    if not path.is_file():
        report.problems.append(f"no database file at {path}")
        return report
    report.size_bytes = path.stat().st_size
    wal = path.with_name(path.name + "-wal")
    report.wal_bytes = wal.stat().st_size if wal.exists() else 0
    if report.size_bytes == 0:
        report.problems.append("the database file is empty (0 bytes): it holds nothing")
        return report
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        report.problems.append(f"cannot open: {exc}")
        return report
    try:
        report.integrity = [row[0] for row in con.execute(f"PRAGMA integrity_check({MAX_INTEGRITY_LINES})")]
        if report.integrity != ["ok"]:
            report.problems.append(f"integrity check found {len(report.integrity)} problem(s)")
        report.schema_version = int(con.execute("PRAGMA user_version").fetchone()[0])
        try:
            applied = {row[0] for row in con.execute("SELECT name FROM schema_migrations")}
        except sqlite3.Error:
            report.problems.append("no schema_migrations table: not an llmpulse database")
            applied = set()
        known = {m.name for m in MIGRATIONS}
        missing = [m.name for m in MIGRATIONS if m.name not in applied]
        if applied and missing:
            report.notes.append(
                f"{len(missing)} migration(s) not applied yet (first: {missing[0]}): the next writing command upgrades it"
            )
        if applied - known:
            report.notes.append("written by a newer llmpulse (migrations this version does not know)")
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"not a usable database: {exc}")
    finally:
        con.close()
    if report.wal_bytes > LARGE_WAL_BYTES:
        report.notes.append(
            f"the write-ahead log is {report.wal_bytes / (1 << 20):,.0f} MiB: checkpoints are not getting through "
            "(a reader holding an old snapshot?)"
        )
    return report
