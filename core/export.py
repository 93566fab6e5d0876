"""`llmpulse export`: what llmpulse knows over a period, one file per kind, with a manifest.

All files are read inside one read transaction, so they are one consistent picture even while a
collector writes (WAL readers see a snapshot). Rows stream from SQLite to disk; memory does not grow
with the period. `usage.jsonl` is always written, in the `llmpulse import` line format, so usage
round-trips into another database; our estimated cost is left out on purpose — an imported `cost_usd` is
a provider's own figure, so a line carries `cost_usd` only when the provider reported one (kept as
`reported_cost_usd`), and the importing side prices the tokens again. Every string is
redacted (loaded keys and anything shaped like a key) and, in CSV, stripped of terminal control
sequences with spreadsheet formula prefixes neutralised.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from llmpulse.core.redact import redact
from llmpulse.core.store import Store
from llmpulse.core.usage.records import KNOWN_FIELDS, TEXT_FIELDS, TOKEN_FIELDS

ExportFormat = Literal["csv", "jsonl"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "jsonl")

# The import line format: the fields `llmpulse import` reads, as stored. cost_usd is written only for a
# provider-reported cost (see _import_line); `usage` (a raw provider object) is never stored.
USAGE_IMPORT_FIELDS = ("ts", "provider", "model", *TOKEN_FIELDS, "latency_ms", "status", "is_fallback", *TEXT_FIELDS)
assert set(USAGE_IMPORT_FIELDS) == KNOWN_FIELDS - {"usage", "cost_usd"}


@dataclass(frozen=True)
class Table:
    """One exported file: a query over [since, until) and what it holds."""

    name: str
    description: str
    sql: str
    params: Callable[[float, float], tuple[Any, ...]]


def _window(since: float, until: float) -> tuple[Any, ...]:
    return (since, until)


TABLES: tuple[Table, ...] = (
    Table(
        "usage",
        "raw usage records (kept for the configured retention), with the estimated cost",
        "SELECT id, ts, provider, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
        "latency_ms, status, error_kind, is_fallback, fallback_from, department, agent, user, task_type, "
        "category, endpoint, request_id, cost_usd, reported_cost_usd FROM usage_records WHERE ts >= ? AND ts < ? "
        "ORDER BY ts, id",
        _window,
    ),
    Table(
        "usage_rollups",
        "hourly and daily roll-ups per dimension (kept after raw records are pruned)",
        "SELECT grain, start, dim, key, requests, errors, fallbacks, input_tokens, output_tokens, "
        "cache_read_tokens, cache_write_tokens, cost_usd, unknown_price FROM usage_rollups "
        "WHERE grain IN ('h', 'd') AND start >= ? AND start < ? ORDER BY grain, dim, start, key",
        _window,
    ),
    Table(
        "probes",
        "every probe result (errors as stored: redacted)",
        "SELECT provider_id, checked_at, status, error_kind, error, latency_ms, http_status, rate_limit, balance "
        "FROM probe_results WHERE checked_at >= ? AND checked_at < ? ORDER BY checked_at, id",
        _window,
    ),
    Table(
        "alerts",
        "alerts open at any time in the period",
        "SELECT id, rule, subject, severity, state, message, first_seen, last_seen, count, firing_since, "
        "acked_by, acked_at, note, silenced_until, silenced_by, escalated, escalated_at, resolved_at, resolved_by, "
        "closed_reason FROM alerts WHERE first_seen < ? AND (resolved_at IS NULL OR resolved_at >= ?) ORDER BY id",
        lambda since, until: (until, since),
    ),
    Table(
        "alert_transitions",
        "every change to those alerts, with its time and who made it",
        "SELECT t.alert_id, t.at, t.event, t.from_state, t.to_state, t.actor, t.detail FROM alert_transitions t "
        "JOIN alerts a ON a.id = t.alert_id WHERE a.first_seen < ? AND (a.resolved_at IS NULL OR a.resolved_at >= ?) "
        "ORDER BY t.alert_id, t.at, t.id",
        lambda since, until: (until, since),
    ),
    Table(
        "alert_deliveries",
        "notices sent, failed or held per channel for those alerts",
        "SELECT d.alert_id, d.channel, d.event, d.status, d.attempts, d.created_at, d.updated_at, d.error "
        "FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id "
        "WHERE a.first_seen < ? AND (a.resolved_at IS NULL OR a.resolved_at >= ?) ORDER BY d.alert_id, d.id",
        lambda since, until: (until, since),
    ),
    Table(
        "migrations",
        "where each model migration stands now",
        "SELECT name, phase, entered_at, updated_at FROM migration_state ORDER BY name",
        lambda since, until: (),
    ),
    Table(
        "migration_events",
        "phase history: every phase change in the period with its cause",
        "SELECT name, at, from_phase, to_phase, cause, share_requests FROM migration_events "
        "WHERE at >= ? AND at < ? ORDER BY name, at, id",
        _window,
    ),
)

_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell safe to open in a terminal or a spreadsheet: no control sequences, and text that a
    spreadsheet would run as a formula (=, +, -, @) starts with a quote. Numbers pass unchanged."""
    if isinstance(value, (dict, list, tuple)):
        # A budget's warn_at or spend_unknown: as JSON (escaped, so a provider's error text inside cannot
        # carry a control sequence), then cleaned like any text — not Python's repr, which was neither.
        value = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, str):
        return value
    text = redact(_CONTROL.sub("", value)) or ""
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


@dataclass
class ExportedFile:
    name: str
    rows: int
    description: str


@dataclass
class ExportResult:
    out_dir: Path
    files: list[ExportedFile] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Iterator[dict[str, Any]]:
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    try:
        while batch := cur.fetchmany(2000):
            for row in batch:
                yield dict(zip(names, tuple(row)))
    finally:
        cur.close()


def _import_line(row: dict[str, Any]) -> dict[str, Any]:
    line = {k: row[k] for k in USAGE_IMPORT_FIELDS if row.get(k) is not None}
    line["is_fallback"] = bool(row["is_fallback"])
    if row.get("reported_cost_usd") is not None:  # the provider's own figure travels; our estimate does not
        line["cost_usd"] = row["reported_cost_usd"]
    return line


class _Writer:
    """One output file in one format; counts what it wrote."""

    def __init__(self, path: Path, fmt: ExportFormat):
        self.fmt = fmt
        self.file: TextIO = path.open("w", encoding="utf-8", newline="")
        self.csv: Any = None
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            # json.dumps escapes control characters, so a JSON line cannot drive a terminal.
            self.file.write((redact(json.dumps(row, ensure_ascii=False)) or "") + "\n")
        else:
            if self.csv is None:
                self.csv = csv.writer(self.file, lineterminator="\n")
                self.csv.writerow(list(row))
            self.csv.writerow([csv_cell(v) for v in row.values()])
        self.rows += 1

    def close(self) -> None:
        self.file.close()


def _export_sync(
    conn: sqlite3.Connection,
    out_dir: Path,
    fmt: ExportFormat,
    since: float,
    until: float,
    budgets: list[dict[str, Any]],
) -> tuple[list[ExportedFile], float | None, float | None]:
    """Write every file; return them with the earliest raw record and daily roll-up still kept."""
    files: list[ExportedFile] = []
    conn.execute("BEGIN")  # one read transaction: every file from the same snapshot
    try:
        for table in TABLES:
            writer = _Writer(out_dir / f"{table.name}.{fmt}", fmt)
            import_writer = (
                _Writer(out_dir / "usage.jsonl", "jsonl") if table.name == "usage" and fmt == "csv" else None
            )
            try:
                for row in _rows(conn, table.sql, table.params(since, until)):
                    writer.write(_import_line(row) if table.name == "usage" and fmt == "jsonl" else row)
                    if import_writer is not None:
                        import_writer.write(_import_line(row))
            finally:
                writer.close()
                if import_writer is not None:
                    import_writer.close()
            description = table.description
            if table.name == "usage" and fmt == "jsonl":
                description = "raw usage records in the `llmpulse import` line format (cost is priced again on import)"
            files.append(ExportedFile(f"{table.name}.{fmt}", writer.rows, description))
            if import_writer is not None:
                files.append(
                    ExportedFile("usage.jsonl", import_writer.rows, "the same records in the `llmpulse import` format")
                )
        earliest = conn.execute("SELECT MIN(ts) FROM usage_calls").fetchone()[0]
        first_rollup = conn.execute("SELECT MIN(start) FROM usage_rollups WHERE grain = 'd'").fetchone()[0]
    finally:
        conn.execute("COMMIT")
    writer = _Writer(out_dir / f"budgets.{fmt}", fmt)
    try:
        for budget in budgets:
            writer.write(budget)
    finally:
        writer.close()
    files.append(ExportedFile(f"budgets.{fmt}", writer.rows, "each budget as it stands now: spent, limit, projection"))
    return files, earliest, first_rollup


async def export(
    store: Store,
    out_dir: Path,
    since: float,
    until: float,
    fmt: ExportFormat,
    budgets: list[dict[str, Any]],
    version: str,
) -> ExportResult:
    """Write every file and the manifest into out_dir (created if missing); return what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files, raw_from, rollups_from = await store.run_sync(_export_sync, out_dir, fmt, since, until, budgets)
    manifest = {
        "llmpulse_version": version,
        "created_at": time.time(),
        "period": {"since": since, "until": until},
        "format": fmt,
        "files": [{"name": f.name, "rows": f.rows, "holds": f.description} for f in files],
        "raw_usage_kept_from": raw_from,
        "daily_rollups_from": rollups_from,
        "not_included": "API keys, admin keys, tokens, webhook URLs and passwords: never stored, never exported",
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return ExportResult(out_dir, files, manifest)
