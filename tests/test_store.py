"""The store: real SQLite files, WAL, migrations applied once even when processes race."""

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from llmpulse.core.schema import MIGRATIONS, Migration
from llmpulse.core.store import Store, StoreError

ROOT = Path(__file__).resolve().parents[1]


async def test_open_creates_schema_in_wal_mode(tmp_path):
    db = tmp_path / "sub" / "pulse.db"
    async with await Store.open(db) as store:
        assert await store.schema_version() == len(MIGRATIONS)
        row = await store.fetchone("PRAGMA journal_mode")
        assert row[0] == "wal"
        names = {r[0] for r in await store.fetchall("SELECT name FROM schema_migrations")}
        assert names == {m.name for m in MIGRATIONS}
    assert db.exists()


async def test_forward_migration_keeps_existing_rows(tmp_path):
    db = tmp_path / "pulse.db"
    first = [Migration("0001_t", "CREATE TABLE t (x INTEGER);")]
    async with await Store.open(db, first) as store:
        await store.execute("INSERT INTO t VALUES (41)")
    second = first + [Migration("0002_t_y", "ALTER TABLE t ADD COLUMN y TEXT DEFAULT 'new';")]
    async with await Store.open(db, second) as store:
        rows = await store.fetchall("SELECT x, y FROM t")
        assert [tuple(r) for r in rows] == [(41, "new")]
        assert await store.schema_version() == 2


async def test_transaction_rolls_back_on_error(tmp_path):
    async with await Store.open(tmp_path / "pulse.db") as store:
        with pytest.raises(RuntimeError):
            async with store.transaction():
                await store.execute("INSERT INTO provider_state (provider_id, updated_at) VALUES ('openai', 1)")
                raise RuntimeError("boom")
        assert await store.fetchall("SELECT * FROM provider_state") == []


async def test_not_a_database_is_a_clear_error(tmp_path):
    bogus = tmp_path / "notes.db"
    bogus.write_text("this is not sqlite " * 100)
    with pytest.raises(StoreError, match="not a usable llmpulse database"):
        await Store.open(bogus)


def test_processes_opening_a_fresh_file_together_apply_each_migration_once(tmp_path):
    db = tmp_path / "race.db"
    code = (
        "import asyncio, sys\n"
        "from llmpulse.core.store import Store\n"
        "async def main():\n"
        "    s = await Store.open(sys.argv[1]); await s.close()\n"
        "asyncio.run(main())\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db)], cwd=ROOT, stderr=subprocess.PIPE) for _ in range(4)
    ]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT name, COUNT(*) FROM schema_migrations GROUP BY name").fetchall()
    conn.close()
    assert {name for name, _ in rows} == {m.name for m in MIGRATIONS}
    assert all(count == 1 for _, count in rows)


async def test_coroutines_sharing_a_store_take_turns_at_transactions(tmp_path):
    """An ack pressed while the collector writes, both on one connection: each transaction waits its turn
    instead of failing with "cannot start a transaction within a transaction"."""
    async with await Store.open(tmp_path / "pulse.db") as store:

        async def write(i: int) -> None:
            async with store.transaction() as conn:
                await conn.execute("INSERT INTO provider_state (provider_id, updated_at) VALUES (?, ?)", (f"p{i}", i))
                await asyncio.sleep(0.01)  # another coroutine runs meanwhile
                if i == 2:
                    raise RuntimeError("boom")  # rolls back its own insert only

        results = await asyncio.gather(*(write(i) for i in range(5)), return_exceptions=True)
        assert [type(r).__name__ for r in results] == ["NoneType", "NoneType", "RuntimeError", "NoneType", "NoneType"]
        rows = await store.fetchall("SELECT provider_id FROM provider_state ORDER BY provider_id")
        assert [r[0] for r in rows] == ["p0", "p1", "p3", "p4"]


async def test_a_close_cut_short_still_ends_the_connection_thread(tmp_path):
    """An exit's deadline may cancel Store.close mid-checkpoint; the worker thread must end all the same,
    or it waits for work forever and the process cannot exit (a dashboard that never quits)."""
    store = await Store.open(tmp_path / "c.db")
    await store.execute("CREATE TABLE t (x)")
    thread = store.conn._thread
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0)  # the checkpoint is queued on the connection's thread
    closing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await closing
    for _ in range(200):
        if not thread.is_alive():
            break
        await asyncio.sleep(0.01)
    alive = thread.is_alive()
    if alive:  # end it here, so a regression fails this test instead of hanging the whole run at exit
        store.conn.stop()
    assert not alive
