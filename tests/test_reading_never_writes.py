"""Reading never writes: the dashboard's snapshot, `migration`, `status`, `report` and `alerts` only read.

The proof is SQLite's own: the readers run on a connection opened read-only, where any write (a phase
advance decided while drawing, a lease taken) fails — and the file's data_version does not move."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time

from llmpulse.core.collector import Collector
from llmpulse.core.config import load_context
from llmpulse.core.migration import migration_statuses
from llmpulse.core.snapshot import build_snapshot
from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.records import record_from_mapping
from llmpulse.core.usage.rollup import ingest


def _ctx(tmp_path):
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).date()
    deadline = start + dt.timedelta(days=60)
    (tmp_path / "llmpulse.toml").write_text(
        "[[migrations]]\n"
        'name = "to-mini"\nfrom = ["gpt-4o"]\nto = "gpt-4o-mini"\n'
        f"start = {start.isoformat()}\ndeadline = {deadline.isoformat()}\n"
        'window = "1h"\n'
    )
    return load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "r.db"), environ={})


def _data_version(path) -> tuple[int, int]:
    """(rows in migration_events, schema + data fingerprint) read with plain sqlite3."""
    conn = sqlite3.connect(path)
    try:
        events = conn.execute("SELECT COUNT(*) FROM migration_events").fetchone()[0]
        state = conn.execute("SELECT COUNT(*) FROM migration_state").fetchone()[0]
        return events, state
    finally:
        conn.close()


async def test_snapshot_and_migration_status_never_advance_a_phase(tmp_path):
    ctx = _ctx(tmp_path)
    now = time.time()
    store = await Store.open(ctx.db_path)
    # Every call of the last hour on the new model: the share (100%) earns automatic advances.
    records = [
        record_from_mapping({"ts": now - 60 * i, "provider": "openai", "model": "gpt-4o-mini"}, now)
        for i in range(1, 30)
    ]
    await ingest(store, records, Pricing())
    await store.close()
    before = _data_version(ctx.db_path)
    assert before == (0, 0)

    reader = await Store.open(ctx.db_path, readonly=True)
    try:
        # A write would raise "attempt to write a readonly database" here.
        snap = await build_snapshot(reader, ctx, now)
        (m,) = snap.migrations
        assert m.phase == "preparation" and m.share_requests == 1.0  # measured, not decided
        (m2,) = await migration_statuses(reader, ctx.config, now)
        assert m2.phase == "preparation"
    finally:
        await reader.close()
    assert _data_version(ctx.db_path) == before

    # The collector is the one that decides, and records why.
    store = await Store.open(ctx.db_path)
    try:
        report = await Collector(ctx, store, on_event=lambda _: None).run_round()
        assert not [e for e in report.errors if e.startswith("migrations")]
        (m3,) = await migration_statuses(store, ctx.config, now)
        assert m3.phase != "preparation"
    finally:
        await store.close()
    assert _data_version(ctx.db_path)[0] > 0


async def test_reading_commands_leave_the_file_byte_for_byte_unchanged(tmp_path):
    import hashlib

    from tests.cli_helpers import run_cli

    ctx = _ctx(tmp_path)
    now = time.time()
    store = await Store.open(ctx.db_path)
    records = [
        record_from_mapping({"ts": now - 60 * i, "provider": "openai", "model": "gpt-4o-mini"}, now)
        for i in range(1, 30)
    ]
    await ingest(store, records, Pricing())
    await store.close()
    digest = hashlib.sha256(ctx.db_path.read_bytes()).hexdigest()
    for command in (["migration"], ["migration", "--json"], ["report"], ["alerts"], ["budgets"]):
        proc = run_cli(tmp_path, "--db", str(ctx.db_path), *command)
        assert proc.returncode == 0, (command, proc.stderr)
        assert hashlib.sha256(ctx.db_path.read_bytes()).hexdigest() == digest, command
        assert "preparation" in proc.stdout or command[0] != "migration"
    assert _data_version(ctx.db_path) == (0, 0)
