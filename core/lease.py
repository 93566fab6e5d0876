"""Named leases beside the database: exactly one process runs the collector for a database.

A daemon and any number of TUIs (ops over SSH) may open one SQLite file. Each would like to probe,
roll up and notify, but only one may, or every alert goes out twice. The holder writes its id and an
expiry into the lease file and renews it every few seconds; a process that finds no holder, itself, or
an expired claim takes the lease. A holder that exits releases it (another takes over at its next try,
about a second later); one that dies or hangs simply stops renewing and is replaced once the expiry
passes.

The lease lives in a small file beside the database (`<database>-lease`, as the round flag lives in
`<database>-round`), not in it: a renewal every two seconds written to the database moved SQLite's
`PRAGMA data_version`, and every dashboard on the database read its whole snapshot again every two
seconds although nothing it shows had changed. Each read-decide-write of the file happens under an
exclusive `flock` held for microseconds — what BEGIN IMMEDIATE did in the database — so two processes
trying at the same moment are serialised by the kernel: exactly one sees the lease free. Readers
(`status`, dashboards) take a shared lock, or read without one if it stays taken (a claim is one
fixed-size write, never torn by a truncation), and never write.

Who collects (issue 18): a holder also records how many providers it can see (has the key or base URL
of). A process that sees more than the holder asks for the lease (`wants_*`); the holder hands it over
at its next renewal — after the round it is in, so two collectors never run rounds at once — and the
asker takes it at its next try. A process that sees fewer may still collect when nobody else does
(budgets, migrations, usage need no key) — but it judges only the providers it sees
(llmpulse.core.alerts.rules.PROVIDER_RULES): the others keep their last verdict, shown with its age.

Where the file cannot be created or locked (a read-only folder, a system without `flock`), taking the
lease fails with the reason, which the collector shows as "this process cannot collect".
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lease file, no collector
    fcntl = None  # type: ignore[assignment]

from llmpulse.core.clock import SYSTEM_CLOCK, Clock
from llmpulse.core.errors import LlmpulseError
from llmpulse.core.store import Store

COLLECTOR_LEASE = "collector"
DEFAULT_TTL = 8.0  # a dead or hung holder is replaced after at most this long
RENEW_EVERY = 2.0  # renewals per TTL: a stalled event loop may delay one or two without losing it
STANDBY_POLL = 1.0  # how often a waiting process tries to take the lease
RECORD_BYTES = 1024  # every claim is written whole at offset 0, padded: a reader never sees it half gone
LOCK_TRIES = 200  # a claim holds the lock for microseconds; a reader gives up waiting after ~20 ms


def process_holder_id() -> str:
    """host:pid:random — unique per process run, readable in the lease file and in logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


# One id per process, so a snapshot can tell whether *this* process holds the collector lease.
PROCESS_HOLDER = process_holder_id()


def lease_path(db_path: str | Path, name: str = COLLECTOR_LEASE) -> Path:
    return Path(str(db_path) + ("-lease" if name == COLLECTOR_LEASE else f"-lease-{name}"))


class LeaseError(LlmpulseError):
    """The lease file cannot be created, opened or locked: this process cannot collect."""


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    holder: str
    acquired_at: float
    expires_at: float
    sees: int = 0  # providers the holder can see (judges)
    # A process that sees more providers and asked for the lease (the holder hands it over at its
    # next renewal); its ask lapses when not repeated within a TTL.
    wants_holder: str | None = None
    wants_sees: int = 0
    wants_until: float = 0.0

    def alive(self, now: float) -> bool:
        return bool(self.holder) and self.expires_at > now

    def wanted_by_more(self, now: float) -> bool:
        """Someone who sees more providers than the holder asked for the lease, and still asks."""
        return self.wants_holder is not None and self.wants_until > now and self.wants_sees > self.sees


def _decode(name: str, raw: bytes) -> LeaseInfo | None:
    try:
        data: Any = json.loads(raw.decode().strip() or "null")
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return LeaseInfo(
            name,
            str(data.get("holder") or ""),
            float(data.get("acquired_at") or 0.0),
            float(data.get("expires_at") or 0.0),
            int(data.get("sees") or 0),
            data.get("wants_holder") or None,
            int(data.get("wants_sees") or 0),
            float(data.get("wants_until") or 0.0),
        )
    except (TypeError, ValueError):
        return None


def _encode(info: LeaseInfo) -> bytes:
    fields = {k: v for k, v in asdict(info).items() if k != "name"}
    raw = json.dumps(fields, separators=(",", ":")).encode()
    if len(raw) > RECORD_BYTES:
        raise LeaseError(f"lease record too long ({len(raw)} bytes)")
    return raw.ljust(RECORD_BYTES)


def _read_fd(fd: int, name: str) -> LeaseInfo | None:
    info = _decode(name, os.pread(fd, RECORD_BYTES, 0))
    return info if info is not None and (info.holder or info.wants_holder) else None


def read_lease_file(path: Path, name: str = COLLECTOR_LEASE) -> LeaseInfo | None:
    """The lease as its file says, read without writing (None: no file, nobody holds or asks)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        locked = False
        if fcntl is not None:
            for _ in range(LOCK_TRIES):
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    locked = True
                    break
                except BlockingIOError:
                    time.sleep(0.0001)
                except OSError:
                    break
        try:
            return _read_fd(fd, name)
        finally:
            if locked and fcntl is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


async def read_lease(store: Store, name: str = COLLECTOR_LEASE) -> LeaseInfo | None:
    """The lease of the database `store` is open on (its file sits beside it)."""
    return read_lease_file(lease_path(store.path, name), name)


class Lease:
    """One process's claim on a named lease. `acquire()` to take it, `renew()` to keep it, `release()`."""

    def __init__(
        self,
        store: Store,
        name: str = COLLECTOR_LEASE,
        *,
        holder: str | None = None,
        ttl: float = DEFAULT_TTL,
        clock: Clock = SYSTEM_CLOCK,
        sees: int = 1,
    ):
        self.store = store
        self.name = name
        self.path = lease_path(store.path, name)
        self.holder = holder or PROCESS_HOLDER
        self.ttl = ttl
        self.clock = clock
        self.sees = sees  # how many providers this process can see (one that sees more takes over)
        self.expires_at: float | None = None  # of our own claim, None when not held

    @property
    def held(self) -> bool:
        return self.expires_at is not None and self.expires_at > self.clock.now()

    async def acquire(self) -> bool:
        """Take the lease if it is free, expired, held by one that sees fewer providers and handed over,
        or already ours (which renews it). True when held."""
        return self._claim(renewing=False)

    async def renew(self) -> bool:
        """Extend our claim. False when we lost it, or when one that sees more providers asks for it:
        stop collecting after this round and `release()` (the asker takes it then)."""
        return self._claim(renewing=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        if fcntl is None:
            raise LeaseError("no flock on this system: the collector lease needs it")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LeaseError(f"cannot open the lease file {self.path}: {exc.strerror or exc}") from None
        try:
            # Held by others for one read and one write (microseconds); never waited for without end —
            # a process stopped inside its claim must not freeze this one's event loop.
            for _ in range(LOCK_TRIES):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(0.0001)
            else:
                raise LeaseError(f"the lease file {self.path} stays locked by another process")
            yield fd
        finally:
            os.close(fd)  # closing releases the lock

    def _claim(self, *, renewing: bool) -> bool:
        with self._locked() as fd:
            now = self.clock.now()
            current = _read_fd(fd, self.name)
            ours = current is not None and current.holder == self.holder
            held_by_other = current is not None and not ours and current.alive(now)
            if ours and current is not None and current.wanted_by_more(now) and current.wants_holder != self.holder:
                # One that sees more providers asks: we hand over. Between rounds (acquire) at once; from
                # a renewal, which may come in the middle of a round, the caller releases after it.
                if not renewing:
                    os.pwrite(fd, _encode(replace(current, holder="", expires_at=0.0)), 0)
                self.expires_at = None
                return False
            if renewing and not ours:
                self.expires_at = None
                return False
            if held_by_other and current is not None:
                # We judge more providers: ask for it (unless one that sees more already asks); the
                # holder hands over at its next renewal.
                asking_already = (
                    current.wanted_by_more(now)
                    and current.wants_holder != self.holder
                    and current.wants_sees >= self.sees
                )
                if self.sees > current.sees and not renewing and not asking_already:
                    asked = replace(current, wants_holder=self.holder, wants_sees=self.sees, wants_until=now + self.ttl)
                    os.pwrite(fd, _encode(asked), 0)
                self.expires_at = None
                return False
            if (
                not ours
                and current is not None
                and current.wanted_by_more(now)
                and current.wants_holder != self.holder
                and current.wants_sees > self.sees
            ):
                # Free, but one that sees more asked first: it takes it at its next try.
                self.expires_at = None
                return False
            acquired_at = current.acquired_at if ours and current is not None else now
            claim = LeaseInfo(self.name, self.holder, acquired_at, now + self.ttl, self.sees)
            os.pwrite(fd, _encode(claim), 0)
            self.expires_at = now + self.ttl
            return True

    async def release(self) -> None:
        """Give the lease up at once so a standby process takes over without waiting for the expiry
        (an ask from another process stays in the file for it)."""
        self.expires_at = None
        with contextlib.suppress(FileNotFoundError), self._locked() as fd:
            current = _read_fd(fd, self.name)
            if current is not None and current.holder == self.holder:
                os.pwrite(fd, _encode(replace(current, holder="", expires_at=0.0)), 0)

    async def current(self) -> LeaseInfo | None:
        return await read_lease(self.store, self.name)
