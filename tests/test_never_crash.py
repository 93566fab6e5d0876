"""The collector never dies and never stops silently: transactions cut off mid-way, another process
holding the write lock for longer than SQLite's busy timeout, one provider's nonsense header. Real files,
real second processes holding the lock, real sockets."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmpulse.core.collector import Collector
from llmpulse.core.config import HealthSettings, ProbeSettings, load_context
from llmpulse.core.health import record_probe_results
from llmpulse.core.lease import Lease
from llmpulse.core.probe import probe_all
from llmpulse.core.schema import Migration
from llmpulse.core.simulator.fleet import FakeProvider, Fleet, Response
from llmpulse.core.snapshot import collector_info
from llmpulse.core.store import BUSY_TIMEOUT_MS, Store, busy_since
from tests.cli_helpers import run_cli, start_cli
from tests.conftest import providers_for

KEY = "sk-proj-NeverCrash0123456789abcdef"
HOLD_S = BUSY_TIMEOUT_MS / 1000 + 1.2  # longer than SQLite's own wait: only a retry gets through


def hold_write_lock(db: Path, seconds: float | None) -> subprocess.Popen:
    """Another process (a backup, a long prune) holding the database's write lock for `seconds`, or
    until a line arrives on its stdin when `seconds` is None."""
    wait = f"time.sleep({seconds})" if seconds is not None else "sys.stdin.readline()"
    code = (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        f"{wait}\n"
        "c.execute('ROLLBACK')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


async def test_a_lease_renewal_never_waits_on_the_database_nor_leaves_a_transaction_open(tmp_path):
    """The lease lives beside the database (a renewal used to be a write transaction, which waited behind
    a backup's lock and, cancelled there, could leave one open): renewing while another process holds
    the database's write lock finishes at once, and the store's connection stays out of a transaction."""
    db = tmp_path / "lease.db"
    store = await Store.open(db)
    try:
        lease = Lease(store, holder="me")
        assert await lease.acquire()
        blocker = hold_write_lock(db, 0.6)
        renewal = asyncio.ensure_future(lease.renew())
        await asyncio.sleep(0.2)  # the other process still holds the database's write lock
        assert renewal.done() and renewal.result() is True
        blocker.wait(timeout=10)
        assert await lease.renew()
        assert not store.conn._conn.in_transaction
    finally:
        await store.close()


async def test_a_failed_commit_leaves_no_transaction_open(tmp_path):
    # A deferred foreign key is checked at COMMIT: the COMMIT fails, which leaves SQLite's transaction open.
    migrations = [
        Migration(
            "0001_parent_child",
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);\n"
            "CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);",
        )
    ]
    store = await Store.open(tmp_path / "fk.db", migrations)
    try:
        with pytest.raises(Exception, match="FOREIGN KEY"):
            async with store.transaction() as conn:
                await conn.execute("INSERT INTO child VALUES (42)")
        assert not store.conn._conn.in_transaction
        async with store.transaction() as conn:
            await conn.execute("INSERT INTO parent VALUES (42)")
            await conn.execute("INSERT INTO child VALUES (42)")
        assert [tuple(r) for r in await store.fetchall("SELECT p FROM child")] == [(42,)]
    finally:
        await store.close()


def test_record_and_import_wait_for_a_database_locked_longer_than_the_busy_timeout(tmp_path):
    db = tmp_path / "busy.db"
    assert run_cli(tmp_path, "--db", str(db), "record", "--provider", "openai", "--model", "gpt-4o").returncode == 0
    lines = "".join(
        json.dumps({"provider": "openai", "model": "gpt-4o", "input_tokens": i, "request_id": f"r{i}"}) + "\n"
        for i in range(1, 201)
    )
    blocker = hold_write_lock(db, None)
    base = [sys.executable, "-m", "llmpulse.core.cli", "--db", str(db)]
    env = {"XDG_CONFIG_HOME": str(tmp_path / "x"), "XDG_DATA_HOME": str(tmp_path / "y"), "PATH": "/usr/bin:/bin"}
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "cwd": tmp_path, "env": env}
    importer = subprocess.Popen([*base, "import", "-"], stdin=subprocess.PIPE, **pipes)
    record = subprocess.Popen(
        [*base, "record", "--provider", "openai", "--model", "gpt-4o", "--input-tokens", "7"], **pipes
    )
    assert importer.stdin is not None and record.stderr is not None
    importer.stdin.write(lines)
    importer.stdin.close()
    # Once the record command says it is waiting (it is past SQLite's own busy timeout), wait a little
    # longer, then let the lock go: both commands must then finish with everything stored.
    waiting = record.stderr.readline()
    assert "database busy since" in waiting, waiting
    time.sleep(0.5)
    blocker.communicate("release\n", timeout=10)
    rec_err = waiting + record.stderr.read()
    assert importer.stdout is not None and importer.stderr is not None
    imp_out, imp_err = importer.stdout.read(), importer.stderr.read()
    importer.wait(timeout=60)
    record.wait(timeout=60)
    assert record.returncode == 0, rec_err
    assert importer.returncode == 0, imp_err
    assert "internal error" not in rec_err + imp_err
    assert "imported 200 records" in imp_out
    con = __import__("sqlite3").connect(db)
    try:
        assert con.execute("SELECT COUNT(*), SUM(input_tokens) FROM usage_records").fetchone() == (
            202,
            7 + sum(range(1, 201)),
        )
    finally:
        con.close()


async def test_the_collector_keeps_collecting_through_a_long_lock_and_says_the_database_is_busy(tmp_path):
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        (tmp_path / "llmpulse.toml").write_text(
            f'[probe]\ninterval = "0.2s"\ntimeout = "1s"\n[providers.openai]\nbase_url = "{fleet.base_url("openai")}"\n'
        )
        ctx = load_context(
            config_path=str(tmp_path / "llmpulse.toml"),
            db_path=str(tmp_path / "c.db"),
            environ={"OPENAI_API_KEY": KEY},
        )
        store = await Store.open(ctx.db_path)
        reader = await Store.open(ctx.db_path)
        events: list[str] = []
        stop = asyncio.Event()
        collector = Collector(ctx, store, on_event=events.append)
        task = asyncio.ensure_future(collector.run_forever(stop))
        try:
            for _ in range(100):
                await asyncio.sleep(0.05)
                if collector.rounds >= 1:
                    break
            blocker = await asyncio.to_thread(hold_write_lock, Path(ctx.db_path), HOLD_S)
            seen_busy = None
            for _ in range(200):
                await asyncio.sleep(0.05)
                info = await collector_info(reader, time.time())
                if info.db_busy_since is not None:
                    seen_busy = info.db_busy_since
                    break
            assert seen_busy is not None and seen_busy <= time.time()
            await asyncio.to_thread(blocker.wait, 10)
            rounds_after_lock = collector.rounds
            for _ in range(100):
                await asyncio.sleep(0.05)
                if collector.rounds >= rounds_after_lock + 2:
                    break
            assert collector.rounds >= rounds_after_lock + 2, events
            assert not task.done()
            assert busy_since(ctx.db_path) is None
            assert (await collector_info(reader, time.time())).db_busy_since is None
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await reader.close()
            await store.close()


async def test_one_providers_infinite_rate_limit_header_affects_only_that_provider(tmp_path):
    with Fleet([FakeProvider("openai", key=KEY), FakeProvider("groq", kind="groq", key=KEY)]) as fleet:
        fleet.add_route(
            "groq",
            "GET",
            "/models",
            lambda fake, req: Response.json(
                200,
                {"object": "list", "data": [{"id": "llama-3.3-70b-versatile", "object": "model"}]},
                {"x-ratelimit-limit-requests": "inf", "x-ratelimit-remaining-requests": "nan", "retry-after": "1e999"},
            ),
        )
        providers = providers_for(fleet, {"OPENAI_API_KEY": KEY, "GROQ_API_KEY": KEY})
        results = await probe_all(providers, ProbeSettings(timeout=2.0))
        by_id = {r.provider_id: r for r in results}
        assert by_id["openai"].status == "healthy" and by_id["openai"].rate_limit.requests_limit == 1000
        assert by_id["groq"].status == "healthy"
        assert by_id["groq"].rate_limit is None or by_id["groq"].rate_limit.requests_limit is None
        store = await Store.open(tmp_path / "p.db")
        try:
            await record_probe_results(store, results, HealthSettings(), time.time())
            stored = {r[0] for r in await store.fetchall("SELECT provider_id FROM probe_results")}
            assert stored == {"openai", "groq"}
        finally:
            await store.close()


def test_ack_waits_for_a_database_locked_longer_than_the_busy_timeout(tmp_path):
    from llmpulse.core.alerts.engine import AlertEngine
    from llmpulse.core.alerts.rules import Condition
    from llmpulse.core.clock import ManualClock

    db = tmp_path / "ack.db"

    async def seed() -> None:
        store = await Store.open(db)
        await AlertEngine(store, None, ManualClock(1_795_000_000.0)).process(
            [Condition("provider_down", "groq", "critical", "Groq down")]
        )
        await store.close()

    asyncio.run(seed())
    blocker = hold_write_lock(db, None)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "x"), "XDG_DATA_HOME": str(tmp_path / "y"), "PATH": "/usr/bin:/bin"}
    ack = subprocess.Popen(
        [sys.executable, "-m", "llmpulse.core.cli", "--db", str(db), "alerts", "ack", "1", "--by", "dana"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert ack.stderr is not None
    waiting = ack.stderr.readline()
    assert "database busy since" in waiting, waiting
    blocker.communicate("release\n", timeout=10)
    _, err = ack.communicate(timeout=60)
    assert ack.returncode == 0, waiting + err
    assert "internal error" not in err
    con = __import__("sqlite3").connect(db)
    try:
        assert con.execute("SELECT state, acked_by FROM alerts WHERE id = 1").fetchone() == ("acknowledged", "dana")
    finally:
        con.close()


def test_the_daemon_survives_a_hanging_provider_and_readers_beside_it(tmp_path):
    """The issue's field report: interval 1 s, one provider that hangs, `alerts --json` every moment
    beside it. The daemon used to die within seconds ("cannot start a transaction within a transaction")."""
    import signal
    import sqlite3

    with Fleet(
        [FakeProvider("openai", key=KEY), FakeProvider("groq", kind="groq", key=KEY, behaviour="hang")]
    ) as fleet:
        (tmp_path / "llmpulse.toml").write_text(
            '[probe]\ninterval = "1s"\ntimeout = "0.8s"\n'
            f'[providers.openai]\nbase_url = "{fleet.base_url("openai")}"\n'
            f'[providers.groq]\nbase_url = "{fleet.base_url("groq")}"\n'
        )
        db = tmp_path / "d.db"

        def daemon_rounds(db: Path) -> int:
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
                    row = con.execute("SELECT rounds FROM collector_status").fetchone()
            except sqlite3.OperationalError:  # not created yet, or busy
                return 0
            return int(row[0]) if row else 0

        daemon = start_cli(tmp_path, "--db", str(db), "daemon", env={"OPENAI_API_KEY": KEY, "GROQ_API_KEY": KEY})
        try:
            # Readers one after another beside the daemon until it has done five rounds (each with the hung
            # probe timing out) and at least five readers have read: the old daemon died within seconds.
            # The deadline only bounds a failing run.
            deadline = time.monotonic() + 60
            readers = rounds = 0
            while time.monotonic() < deadline and daemon.poll() is None and (rounds < 5 or readers < 5):
                r = run_cli(tmp_path, "--db", str(db), "alerts", "--json", env={"OPENAI_API_KEY": KEY})
                readers += r.returncode == 0
                rounds = daemon_rounds(db)
            assert daemon.poll() is None, daemon.communicate()[1]
            assert rounds >= 5 and readers >= 5, (rounds, readers)
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=30)
        assert "transaction within a transaction" not in err and "Traceback" not in err, err
