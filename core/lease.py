"""Named leases in the database: exactly one process runs the collector for a database.

A daemon and any number of TUIs (ops over SSH) may open one SQLite file. Each would like to probe,
roll up and notify, but only one may, or every alert goes out twice. The holder writes its id and an
expiry into `leases` and renews it every few seconds; a process that finds no row, its own row, or an
expired row takes the lease. A holder that exits releases it (another takes over at its next try, about a
second later); one that dies simply stops renewing and is replaced once the expiry passes.

Who collects (issue 18): a holder also records how many providers it can see (has the key or base URL
of). A process that sees more providers than the holder takes the lease over at its next try (the holder
finds out at its next renewal and stands by), so the daemon with every key gets collection back from a
dashboard that took over while it was down. A process that sees fewer may still collect when nobody
else does (budgets, migrations, usage need no key) — but it judges only the providers it sees
(llmpulse.core.alerts.rules.PROVIDER_RULES): the others keep their last verdict, shown with its age.

All reads and writes of a lease happen inside BEGIN IMMEDIATE, so two processes trying at the same moment
are serialised by SQLite: exactly one sees the lease free. Use a Store (connection) of its own for the
lease, so renewal never waits on, or nests inside, another task's transaction on a shared connection.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from llmpulse.core.clock import SYSTEM_CLOCK, Clock
from llmpulse.core.store import Store

COLLECTOR_LEASE = "collector"
DEFAULT_TTL = 8.0  # a dead holder is replaced after at most this long
RENEW_EVERY = 2.0  # renewals per TTL: a busy database may delay one or two without losing it
STANDBY_POLL = 1.0  # how often a waiting process tries to take the lease


def process_holder_id() -> str:
    """host:pid:random — unique per process run, readable in `leases` and in logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


# One id per process, so a snapshot can tell whether *this* process holds the collector lease.
PROCESS_HOLDER = process_holder_id()


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    holder: str
    acquired_at: float
    expires_at: float
    sees: int = 0  # providers the holder can see (judges)

    def alive(self, now: float) -> bool:
        return self.expires_at > now


async def read_lease(store: Store, name: str = COLLECTOR_LEASE) -> LeaseInfo | None:
    row = await store.fetchone("SELECT name, holder, acquired_at, expires_at, sees FROM leases WHERE name = ?", (name,))
    if row is None:
        return None
    return LeaseInfo(
        row["name"], row["holder"], float(row["acquired_at"]), float(row["expires_at"]), int(row["sees"] or 0)
    )


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
        self.holder = holder or PROCESS_HOLDER
        self.ttl = ttl
        self.clock = clock
        self.sees = sees  # how many providers this process can see (one that sees more takes over)
        self.expires_at: float | None = None  # of our own claim, None when not held

    @property
    def held(self) -> bool:
        return self.expires_at is not None and self.expires_at > self.clock.now()

    async def acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours (which renews it). True when held."""
        return await self._claim(take_free=True)

    async def renew(self) -> bool:
        """Extend our claim. False when someone else holds it now (we lost it: stop collecting)."""
        return await self._claim(take_free=True, must_hold=True)

    async def _claim(self, *, take_free: bool, must_hold: bool = False) -> bool:
        async with self.store.transaction() as conn:
            now = self.clock.now()
            async with conn.execute(
                "SELECT holder, acquired_at, expires_at, sees FROM leases WHERE name = ?", (self.name,)
            ) as cur:
                row = await cur.fetchone()
            ours = row is not None and row["holder"] == self.holder
            # A holder that sees fewer providers than we do gives way: we judge more of them.
            free = row is None or float(row["expires_at"]) <= now or int(row["sees"] or 0) < self.sees
            if must_hold and not ours and not free:
                self.expires_at = None
                return False
            if not (ours or (take_free and free)):
                self.expires_at = None
                return False
            acquired_at = float(row["acquired_at"]) if ours and row is not None else now
            await conn.execute(
                "INSERT INTO leases (name, holder, acquired_at, expires_at, sees) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at, "
                "expires_at = excluded.expires_at, sees = excluded.sees",
                (self.name, self.holder, acquired_at, now + self.ttl, self.sees),
            )
            self.expires_at = now + self.ttl
            return True

    async def release(self) -> None:
        """Give the lease up at once so a standby process takes over without waiting for the expiry."""
        self.expires_at = None
        await self.store.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (self.name, self.holder))

    async def current(self) -> LeaseInfo | None:
        return await read_lease(self.store, self.name)
