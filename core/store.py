"""The SQLite store: one file, WAL, a busy timeout, named forward migrations run at open.

Several processes (a daemon, TUIs over SSH, `llmpulse record` from cron) open the same file at once:
WAL lets readers run beside the one writer, the busy timeout makes writers queue instead of failing,
and migrations run inside BEGIN IMMEDIATE so two processes starting together apply each one once.

Reliability rules every caller gets for free:
- A connection is never left inside a transaction: a failed or cancelled BEGIN, statement or COMMIT
  rolls back, and each new transaction or job first rolls back anything a cancelled one left open.
- A busy database (another process holding the write lock longer than SQLite's busy timeout: a backup,
  a long prune) is waited for, never reported as a failure: the operation is retried until the lock is
  free, and `busy_since(path)` says since when this process has been waiting (the dashboard shows it).
- A full disk is one clear error, "disk full: <path>" (DiskFullError), and what was committed stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from llmpulse.core.errors import LlmpulseError
from llmpulse.core.schema import MIGRATIONS, Migration

# SQLite's own wait for a lock, per attempt. Beyond it the operation is retried (see _retrying), so this is
# only how soon a wait becomes visible as "database busy since ...".
BUSY_TIMEOUT_MS = 2_000
BUSY_RETRY_PAUSE_S = 0.05
T = TypeVar("T")
log = logging.getLogger("llmpulse.store")

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL = 5, 6, 13


class StoreError(LlmpulseError):
    """The database cannot be opened or is not an llmpulse database."""

    exit_code = 2


class DiskFullError(StoreError):
    """The disk (or the file system's quota) holding the database is full; committed data is intact."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__(f"disk full: {path} (what was stored before is kept; free space and run again)")


# path -> when this process began waiting for the database's write lock (absent: not waiting).
_BUSY_SINCE: dict[Path, float] = {}
_BUSY_WAITERS: dict[Path, int] = {}  # operations of this process waiting on that path now


def busy_since(path: str | Path) -> float | None:
    """Since when (unix time) this process has been waiting for `path`'s lock; None when it is not."""
    return _BUSY_SINCE.get(Path(path).resolve())


def _error_code(exc: sqlite3.Error) -> int:
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _is_busy(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = _error_code(exc)
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return True
    text = str(exc)
    return "database is locked" in text or "database is busy" in text


def _is_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        _error_code(exc) == _SQLITE_FULL or "database or disk is full" in str(exc)
    )


def _begin_immediate(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:  # left open by a job whose waiter was cancelled: it is not ours to keep
        conn.rollback()
    conn.execute("BEGIN IMMEDIATE")


def _rollback_if_open(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.rollback()


def _commit(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT (busy, disk full) leaves the transaction open
            conn.rollback()
        raise


def _job(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """A run_sync job: starts outside any transaction and never leaves one open."""
    if conn.in_transaction:
        conn.rollback()
    try:
        return fn(conn, *args)
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise


def _statement(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | dict[str, Any]) -> int:
    cur = conn.execute(sql, params)
    try:
        return cur.rowcount
    finally:
        cur.close()


def _fetchall(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[Any]:
    cur = conn.execute(sql, params)
    try:
        return cur.fetchall()
    finally:
        cur.close()


def _fetchone(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | dict[str, Any]) -> Any:
    cur = conn.execute(sql, params)
    try:
        return cur.fetchone()
    finally:
        cur.close()


# Every open Store of this process, so an app can close what cancelled tasks left open before its event
# loop goes: a connection thread finishing work for a closed loop dies with "Event loop is closed".
_OPEN: weakref.WeakSet[Store] = weakref.WeakSet()


class Store:
    def __init__(self, conn: aiosqlite.Connection, path: Path):
        self.conn = conn
        self.path = path
        self.closed = False
        # One transaction at a time on this connection: coroutines sharing a Store (an ack while the
        # collector writes, a recorder's flush) would otherwise meet "cannot start a transaction within a
        # transaction", or commit each other's half-done work.
        self._tx_lock = asyncio.Lock()
        self._key = path.resolve()
        self.readonly = False
        _OPEN.add(self)

    @classmethod
    async def open(
        cls, path: str | Path, migrations: Sequence[Migration] = MIGRATIONS, *, readonly: bool = False
    ) -> Store:
        """Open (creating and migrating) the database. `readonly`: SQLite itself refuses every write on
        this connection — what viewers use, so reading can never change what the collector decided."""
        path = Path(path)
        _check_path(path)
        if readonly:
            return await cls._open_readonly(path, migrations)
        _check_writable(path)
        _check_not_emptied(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so batches are one transaction.
            conn = await aiosqlite.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from None
        conn.row_factory = aiosqlite.Row
        store = cls(conn, path)
        try:
            for pragma in (
                f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
                # Pages freed by pruning go back to the file system (PRAGMA incremental_vacuum after each
                # prune) instead of the file only growing. Takes effect on a new database only: an
                # existing one keeps its mode until someone runs VACUUM once.
                "PRAGMA auto_vacuum = INCREMENTAL",
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = NORMAL",
                "PRAGMA foreign_keys = ON",
            ):
                await store.execute(pragma)
            await store._migrate(migrations)
        except BaseException as exc:
            _OPEN.discard(store)
            store.closed = True
            await conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"{path} is not a usable llmpulse database: {exc}") from None
            raise
        return store

    @classmethod
    async def open_reader(cls, path: str | Path, migrations: Sequence[Migration] = MIGRATIONS) -> Store:
        """A read-only connection for a viewer. A database that does not exist yet (or predates this
        version's schema) is created or upgraded first — schema only, never a judgement — then reopened
        read-only."""
        path = Path(path)
        _check_path(path)
        try:
            return await cls._open_readonly(path, migrations)
        except StoreError:
            if _is_other_than_file(path):
                raise
        await (await cls.open(path, migrations)).close()
        return await cls._open_readonly(path, migrations)

    @classmethod
    async def _open_readonly(cls, path: Path, migrations: Sequence[Migration]) -> Store:
        uri = _readonly_uri(path)
        try:
            conn = await aiosqlite.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from None
        conn.row_factory = aiosqlite.Row
        store = cls(conn, path)
        store.readonly = True
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            async with conn.execute("SELECT name FROM schema_migrations") as cur:
                applied = {row[0] for row in await cur.fetchall()}
        except sqlite3.DatabaseError as exc:
            await store.close()
            raise StoreError(f"{path} is not a usable llmpulse database: {exc}") from None
        if any(m.name not in applied for m in migrations):
            await store.close()
            raise StoreError(
                f"{path} was written by an older llmpulse: run the daemon (or any writing command) once to upgrade it"
            )
        return store

    async def _migrate(self, migrations: Sequence[Migration]) -> None:
        await self.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        applied = {row[0] for row in await self.fetchall("SELECT name FROM schema_migrations")}
        pending = [m for m in migrations if m.name not in applied]
        if not pending:
            return
        async with self.transaction():
            async with self.conn.execute("SELECT name FROM schema_migrations") as cur:
                applied = {row[0] for row in await cur.fetchall()}  # another process may have won
            for migration in migrations:
                if migration.name in applied:
                    continue
                for statement in _split_sql(migration.sql):
                    await self.conn.execute(statement)
                if migration.then is not None:
                    await self._on_thread(migration.then)
                await self.conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (migration.name, time.time()))
            await self.conn.execute(f"PRAGMA user_version = {len(migrations)}")

    async def close(self) -> None:
        """Close; a writer first checkpoints the WAL into the database file, so what was acknowledged
        does not live only in the -wal file. PASSIVE: it copies what no reader still needs and never
        waits for a reader or another writer, so closing costs no busy timeout beside a running daemon."""
        if self.closed:
            return
        self.closed = True
        try:
            if not self.readonly:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            await self.conn.close()
        except BaseException:
            # Cut short (an exit's deadline cancelled us mid-checkpoint): the connection's worker thread
            # must still be told to end, or it waits for work forever and the process never exits.
            self.conn.stop()
            raise
        finally:
            _OPEN.discard(self)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Await attempt() until it is not refused for a busy database; say so while waiting.

        attempt must be safe to repeat after a busy error (a statement, or a job that rolls back whole).
        A full disk becomes DiskFullError naming the file."""
        waited_since: float | None = None
        try:
            while True:
                try:
                    return await attempt()
                except sqlite3.OperationalError as exc:
                    if _is_full(exc):
                        raise DiskFullError(self.path) from None
                    if not _is_busy(exc):
                        raise
                    if waited_since is None:
                        waited_since = time.time() - BUSY_TIMEOUT_MS / 1000
                        _BUSY_WAITERS[self._key] = _BUSY_WAITERS.get(self._key, 0) + 1
                        first = _BUSY_SINCE.setdefault(self._key, waited_since)
                        log.warning(
                            "database busy since %s: another process holds the write lock on %s; waiting",
                            time.strftime("%H:%M:%S", time.localtime(first)),
                            self.path,
                        )
                    await asyncio.sleep(BUSY_RETRY_PAUSE_S)
        finally:
            if waited_since is not None:
                _BUSY_WAITERS[self._key] -= 1
                if not _BUSY_WAITERS[self._key]:  # the last waiter of this process got through
                    del _BUSY_WAITERS[self._key]
                    _BUSY_SINCE.pop(self._key, None)
                log.warning("database no longer busy after %.1fs: %s", time.time() - waited_since, self.path)

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(sqlite3_connection, *args) as one job on the connection's thread. Once queued it runs
        even if the awaiting task is cancelled, so cleanup queued here always happens."""
        # aiosqlite's private _execute is untyped; it returns what fn returns.
        result: T = await self.conn._execute(fn, self.conn._conn, *args)  # type: ignore[no-untyped-call]
        return result

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE: take the write lock up front so read-then-write cannot be raced. Other
        coroutines' transactions on this Store wait their turn (do not nest: it would wait for itself).
        A busy database is waited for at BEGIN (nothing has run yet, so it is safe to repeat); whatever
        happens after — an error, a cancellation, a failed COMMIT — the connection leaves the transaction."""
        async with self._tx_lock:
            try:
                await self._retrying(lambda: self._on_thread(_begin_immediate))
                yield self.conn
            except BaseException as exc:
                await self._on_thread(_rollback_if_open)
                if _is_full(exc):
                    raise DiskFullError(self.path) from None
                raise
            else:
                try:
                    await self._on_thread(_commit)
                except sqlite3.OperationalError as exc:
                    if _is_full(exc):
                        raise DiskFullError(self.path) from None
                    raise

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(sqlite3_connection, *args) on the connection's own thread, as one job.

        For work of many statements (a usage batch): each awaited statement is a hop to the connection
        thread and back, and every hop waits for the event loop to come round — with the loop busy
        recording calls, a batch of 25 statements spent most of its time waiting, not in SQLite. One
        job runs them back to back, in SQLite's C code with the GIL released while the application's
        Python carries on, and no other coroutine's statement can land in the middle of its transaction.
        A job may BEGIN and COMMIT its own transaction: it takes its turn with transaction() users. It is
        repeated while the database is busy, so it must do all or nothing (roll back on error).
        aiosqlite offers no public call for this; _execute is the method its own execute() uses."""
        async with self._tx_lock:
            return await self._retrying(lambda: self._on_thread(_job, fn, *args))

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one statement; return the rows it changed."""
        return await self._retrying(lambda: self._on_thread(_statement, sql, params))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        await self._retrying(lambda: self.conn.executemany(sql, rows))

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[aiosqlite.Row]:
        return await self._retrying(lambda: self._on_thread(_fetchall, sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> aiosqlite.Row | None:
        row: aiosqlite.Row | None = await self._retrying(lambda: self._on_thread(_fetchone, sql, params))
        return row

    async def schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0


def _readonly_uri(path: Path) -> str:
    if not path.is_file():
        raise StoreError(f"no database at {path}: nothing has collected there yet (run 'llmpulse daemon')")
    return f"{path.resolve().as_uri()}?mode=ro"


def _check_path(path: Path) -> None:
    """A directory (or device) where the database file should be is one clear error, before SQLite turns
    it into "unable to open database file" and a worker-thread traceback."""
    if path.is_dir():
        raise StoreError(
            f"database path {path} is a directory; expected the path of a database file, e.g. {path / 'llmpulse.db'}"
        )
    if path.exists() and not path.is_file():
        raise StoreError(f"database path {path} is not a regular file; expected the path of a database file")


def _check_writable(path: Path) -> None:
    """A database this process cannot write would fail at its first write, mid-command; say so at open.
    SQLite also needs its folder writable for the -wal and -shm files next to the database."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError(
            f"database {path} is read-only for this user; expected a file this user can write "
            "(commands that only read, like report and alerts, can still use it)"
        )
    existing = folder if folder.exists() else None
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        wal = path.with_name(path.name + "-wal")
        if not path.exists() or not wal.exists():
            raise StoreError(
                f"database folder {existing} is read-only for this user; expected a folder this user can write "
                "(SQLite keeps its -wal and -shm files beside the database)"
            )


def _check_not_emptied(path: Path) -> None:
    """A zero-byte file where a database was (its -wal or -shm files still beside it) is a database that
    was truncated or replaced: refuse to start over empty in it, which would hide the loss. A zero-byte
    file alone (a `touch`) becomes a new database, and that is said out loud."""
    try:
        if not path.is_file() or path.stat().st_size:
            return
    except OSError:
        return
    siblings = [p.name for p in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")) if p.exists()]
    if siblings:
        raise StoreError(
            f"database {path} is empty (0 bytes) but {' and '.join(siblings)} are beside it: it was a database "
            "a moment ago; refusing to start a new one over it. Restore it from a backup, or remove it and "
            f"{' and '.join(siblings)} to start afresh"
        )
    log.warning("database %s is an empty file: creating a new llmpulse database in it", path)


def _is_other_than_file(path: Path) -> bool:
    return path.exists() and not path.is_file()


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (sqlite3 runs one per execute inside our transaction)."""
    statements, buf = [], []
    for line in script.splitlines():
        buf.append(line)
        candidate = "\n".join(buf).strip()
        if candidate.endswith(";") and sqlite3.complete_statement(candidate):
            statements.append(candidate)
            buf = []
    tail = "\n".join(buf).strip()
    if tail:
        statements.append(tail)
    return statements


async def close_all_stores(timeout: float = 1.0) -> None:
    """Close every Store still open in this process (at app exit), waiting for work already in flight."""
    stores = [s for s in list(_OPEN) if not s.closed]
    if stores:
        closing = [asyncio.ensure_future(s.close()) for s in stores]
        _done, late = await asyncio.wait(closing, timeout=timeout)
        for task in late:  # Store.close stops the worker thread when cancelled
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=0.1)
