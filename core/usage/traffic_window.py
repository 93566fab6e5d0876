"""The health window's real traffic, per provider, kept up to date in the collector's memory.

The health model judges each provider by the calls of the last `window` seconds (15 min): requests,
errors, fallbacks, p50 and p95. Read from the database every round, exact percentiles cost a read of
every call in the window (150 ms at 300,000 calls), and the 16-bucket histogram of the roll-ups is off
by up to a bucket's width (1000-1500 ms: -33%..+50%). Here the collector keeps the window's calls
itself: each round it reads only the calls stored since the last one (usage_calls ids above the
largest it has seen), adds them, and lets go of those whose time left the window. p50/p95 are exact
nearest ranks (ceil(q*n)-th of the sorted latencies), so never above the slowest call; every figure
comes from the same calls, exact to the second. A round's cost depends on the calls that arrived and
left since the last round, not on how many the window holds: a call is added and removed in a few
counter updates and a bisection in a bucket of like latencies (LatencyCounts), never by moving through
the window's other calls.

- Out of order: a call's place is its timestamp, not when it arrived (late spans, imports of old lines).
  A call stamped before the window's start is ignored; one stamped after `now` (another host's clock
  a little ahead) waits until `now` reaches it.
- Ids: usage_calls.id is an INTEGER PRIMARY KEY without AUTOINCREMENT, so SQLite gives a new row the
  largest id + 1 — and would give a deleted largest id again. Retention never deletes the largest
  (core/usage/queries.py prune_usage), and a largest id found below the cursor moves the cursor back.
- Memory: about 45 bytes per call in the window (its time, latency and flags in arrays of numbers, and
  the latency again in its bucket; measured with tracemalloc), no Python object per call for the garbage
  collector to walk: 300,000 calls ~13 MB. Past CALLS_MAX calls (2 million, ~90 MB: 2,200 calls/s
  sustained for 15 min) the window lets go of them all and says so (`overflowed`):
  the collector then publishes the roll-ups' figures, their p50/p95 marked as estimates, until the
  window holds few enough calls to be read again whole.
- A new collector (a restart, a takeover) reads the window once: the cursor starts below the smallest
  id stamped inside it.
"""

from __future__ import annotations

import bisect
import heapq
import math
import sqlite3
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate

import aiosqlite

from llmpulse.core.store import Store
from llmpulse.core.usage.queries import RequestStats

QUANTILES = (0.5, 0.95)
# Rows per read: bounds the memory of one fetch (a restart's read of a busy window) without a round
# trip per few calls.
READ_BATCH = 20_000
ERROR, FALLBACK = 1, 2  # a call's flags
CALLS_MAX = 2_000_000  # calls kept in memory; past this, estimates (see the module's notes)
# Calls are kept in slots of this many seconds (each a few lists): expiry drops whole slots, and the slot
# the window's start falls in is cut from the front. Few slots keep the garbage collector's walks short:
# one-second slots for 50 providers were 45,000 slots (135,000 lists) in a full window, and collecting
# them grew the round with the window.
SLOT_S = 10.0
REFILL_BELOW = 0.8  # an overflowed window is read again once the roll-ups count fewer than this share
# LatencyCounts' buckets: 64 a doubling of latency (each at most 1.6% wide: a few whole milliseconds at
# the usual latencies, so a bucket holds few distinct values) from 1 ms up to 2**32 ms, in groups of 64.
_GROUP_BITS = 6
_GROUP = 1 << _GROUP_BITS
_GROUP_MASK = _GROUP - 1
_OCTAVES = 32
_BUCKETS = 1 + _OCTAVES * _GROUP  # bucket 0: below 1 ms
_GROUPS = (_BUCKETS + _GROUP - 1) // _GROUP
_NO_LATENCY = math.nan


# One stored call, as the window needs it: (id, ts, provider, latency_ms or None, flags ERROR|FALLBACK).
# A plain tuple built by sqlite3 itself: the window reads tens of thousands a second under heavy ingest.
CallRow = tuple[int, float, str, float | None, int]


# The one place that knows how calls are stored (usage_calls + usage_attrs, core/schema.py): a change
# of storage changes these two queries. The time filter is kept off the ts index (`+c.ts`): the id
# range is the scan, and an import of old lines is skipped inside SQLite, never read into Python.
# A latency that cannot be ranked (an infinity; SQLite stores NaN as NULL) is read as none.
_CALLS_AFTER = (
    "SELECT c.id, c.ts, a.provider, CASE WHEN c.latency_ms BETWEEN -1e308 AND 1e308 THEN c.latency_ms END, "
    f"(CASE WHEN a.status = 'error' THEN {ERROR} ELSE 0 END) | (CASE WHEN a.is_fallback THEN {FALLBACK} ELSE 0 END) "
    "FROM usage_calls c JOIN usage_attrs a ON a.id = c.attrs "
    "WHERE c.id > ? AND c.id <= ? AND +c.ts >= ? AND +c.ts <= 1e308 ORDER BY c.id LIMIT ?"
)


async def largest_call_id(store: Store) -> int:
    row = await store.fetchone("SELECT COALESCE(MAX(id), 0) FROM usage_calls")
    return int(row[0]) if row else 0


# Read through the time index, the window's entries only: `MIN(id)` with `id` left usable would walk the
# calls from the oldest up to the window's first (a week of history at 300 calls/s: 180 million rows, seconds
# of a restart's first round; `+id` leaves the planner nothing but the time index).
_FIRST_ID_SINCE = "SELECT MIN(+id) FROM usage_calls WHERE ts >= ? AND +id <= ?"


async def first_id_since(store: Store, since: float, upto_id: int) -> int | None:
    """The smallest id of a call stamped at or after `since` (found through the ts index)."""
    row = await store.fetchone(_FIRST_ID_SINCE, (since, upto_id))
    return int(row[0]) if row and row[0] is not None else None


async def calls_since(store: Store, since: float) -> int:
    """How many calls the minute roll-ups count from the minute holding `since` on (a few rows: an upper
    bound of the window's calls, read before deciding to hold them all in memory)."""
    row = await store.fetchone(
        "SELECT COALESCE(SUM(requests), 0) FROM usage_rollups WHERE grain = 'm' AND dim = 'total' AND key = '*' "
        "AND start >= ?",
        (since - since % 60,),
    )
    return int(row[0]) if row else 0


async def calls_after(store: Store, after_id: int, upto_id: int, since: float, limit: int) -> list[CallRow]:
    """Up to `limit` calls with after_id < id <= upto_id stamped at or after `since`, by id."""

    def read(conn: sqlite3.Connection) -> list[CallRow]:
        cursor = conn.cursor()
        cursor.row_factory = None  # plain tuples, not sqlite3.Row
        return cursor.execute(_CALLS_AFTER, (after_id, upto_id, since, limit)).fetchall()

    return await store.run_sync(read)


class LatencyCounts:
    """A multiset of latencies whose nearest-rank lookups are exact and cost the same however many it
    holds. Latencies are kept in buckets (a 64th of a doubling each: 1 ms, 1.016, ..., 2, 2.03, ...),
    each a sorted array of floats, and counted per bucket and per group of 64 buckets: adding or removing
    one is a bisection in its bucket and two counter updates, and a lookup sums the groups' counts, then
    one group's buckets', then indexes one bucket. (A sorted list of every latency grew with the window:
    its inserts and removals bisect and move lists of thousands of floats scattered in memory, 2 ms a
    round more in a full window of 270,000 calls than in a nearly empty one. A bucket's array is a few
    contiguous doubles.)"""

    __slots__ = ("_buckets", "_groups", "_values", "n")

    def __init__(self) -> None:
        self.n = 0
        self._groups = [0] * _GROUPS
        self._buckets: dict[int, list[int]] = {}  # group -> its buckets' counts (only the groups used)
        self._values: dict[int, array[float]] = {}  # bucket -> its latencies, ascending

    def add(self, latencies: Iterable[float]) -> None:
        groups, buckets, values, insort = self._groups, self._buckets, self._values, bisect.insort
        n = self.n
        for ms in latencies:
            b = _bucket(ms)
            group = b >> _GROUP_BITS
            groups[group] += 1
            counts = buckets.get(group)
            if counts is None:
                counts = buckets[group] = [0] * _GROUP
            counts[b & _GROUP_MASK] += 1
            ordered = values.get(b)
            if ordered is None:
                values[b] = array("d", (ms,))
            else:
                insort(ordered, ms)
            n += 1
        self.n = n

    def remove(self, latencies: Iterable[float]) -> None:
        """Take out latencies that were added (each as many times as it was)."""
        groups, buckets, values, find = self._groups, self._buckets, self._values, bisect.bisect_left
        n = self.n
        for ms in latencies:
            b = _bucket(ms)
            group = b >> _GROUP_BITS
            groups[group] -= 1
            buckets[group][b & _GROUP_MASK] -= 1
            ordered = values[b]
            if len(ordered) == 1:
                del values[b]
            else:
                del ordered[find(ordered, ms)]
            n -= 1
        self.n = n

    def nearest_ranks(self, quantiles: Iterable[float]) -> list[float | None]:
        """For each q, the ceil(q*n)-th smallest latency (the rank the roll-up queries' exact percentiles
        use), None when there is none. The sums run in C (accumulate), the search by bisection."""
        if not self.n:
            return [None for _ in quantiles]
        by_group = list(accumulate(self._groups))
        out: list[float | None] = []
        for q in quantiles:
            rank = max(1, math.ceil(q * self.n - 1e-9))
            group = bisect.bisect_left(by_group, rank)  # the first group whose running count reaches rank
            by_bucket = list(accumulate(self._buckets[group], initial=by_group[group - 1] if group else 0))
            # by_bucket[i] counts the latencies below the group's i-th bucket; the rank is in the bucket
            # whose running count first reaches it.
            i = bisect.bisect_left(by_bucket, rank) - 1
            out.append(self._values[(group << _GROUP_BITS) + i][rank - by_bucket[i] - 1])
        return out


def _bucket(ms: float) -> int:
    """The bucket of a latency: 0 below 1 ms, then 64 a doubling up to 2**32 ms, the last one above.
    Read from the float's own exponent and mantissa (exact, no logarithm), so a larger latency never
    falls in a smaller bucket, which exactness needs."""
    if ms < 1.0:
        return 0
    mantissa, exponent = math.frexp(ms)  # ms = mantissa * 2**exponent, 0.5 <= mantissa < 1, exponent >= 1
    if exponent > _OCTAVES:
        return _BUCKETS - 1
    return 1 + ((exponent - 1) << _GROUP_BITS) + int((mantissa - 0.5) * (2 * _GROUP))


class _Slot:
    """The calls of one provider stamped within one slot of SLOT_S seconds. Expiry takes whole slots at once;
    the slot the window's start falls in is put in time order once and cut from the front. Plain arrays of
    numbers, no object per call: the garbage collector has nothing to walk in them."""

    __slots__ = ("flags", "in_order", "latencies", "stamps")

    def __init__(self) -> None:
        self.stamps = array("d")
        self.latencies = array("d")  # NaN: a call without a latency (SQLite never stores NaN: see _CALLS_AFTER)
        self.flags = bytearray()
        self.in_order = True  # stamps ascending (calls mostly arrive in time order)

    def cut_before(self, since: float) -> tuple[array[float], bytearray]:
        """Take out the calls stamped before `since`: their latencies and flags."""
        if not self.in_order:
            order = sorted(range(len(self.stamps)), key=self.stamps.__getitem__)
            self.stamps = array("d", [self.stamps[i] for i in order])
            self.latencies = array("d", [self.latencies[i] for i in order])
            self.flags = bytearray(self.flags[i] for i in order)
            self.in_order = True
        cut = bisect.bisect_left(self.stamps, since)
        latencies, flags = self.latencies[:cut], self.flags[:cut]
        del self.stamps[:cut], self.latencies[:cut], self.flags[:cut]
        return latencies, flags


def _errors(flags: bytearray) -> int:
    return flags.count(ERROR) + flags.count(ERROR | FALLBACK)


def _fallbacks(flags: bytearray) -> int:
    return flags.count(FALLBACK) + flags.count(ERROR | FALLBACK)


@dataclass
class _ProviderCalls:
    latencies: LatencyCounts = field(default_factory=LatencyCounts)  # the timed calls' latencies
    slots: dict[int, _Slot] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)  # heap of the keys of `slots`
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    _stats: RequestStats | None = None  # the figures, until calls arrive or leave

    def add(self, calls: list[CallRow]) -> None:
        """Calls of this provider in the window. The loop is spelled out (no method call per call): under
        heavy ingest it runs tens of thousands of times a second."""
        timed = []
        slots, floor = self.slots, math.floor
        errors = fallbacks = 0
        for _, ts, _, latency_ms, flags in calls:
            key = floor(ts / SLOT_S)
            slot = slots.get(key)
            if slot is None:
                slot = slots[key] = _Slot()
                heapq.heappush(self.order, key)
            stamps = slot.stamps
            if slot.in_order and stamps and ts < stamps[-1]:
                slot.in_order = False
            stamps.append(ts)
            slot.flags.append(flags)
            if flags:
                errors += flags & ERROR
                fallbacks += (flags & FALLBACK) >> 1
            if latency_ms is None:
                slot.latencies.append(_NO_LATENCY)
            else:
                slot.latencies.append(latency_ms)
                timed.append(latency_ms)
        self.requests += len(calls)
        self.errors += errors
        self.fallbacks += fallbacks
        self.latencies.add(timed)
        self._stats = None

    def expire(self, since: float) -> int:
        """Let go of the calls stamped before `since`; returns how many."""
        gone = 0
        while self.order and (self.order[0] + 1) * SLOT_S <= since:
            slot = self.slots.pop(heapq.heappop(self.order))
            gone += self._let_go(slot.latencies, slot.flags)
        if self.order and self.order[0] * SLOT_S < since:  # the slot the window's start falls in
            slot = self.slots[self.order[0]]
            if slot.in_order and slot.stamps[0] >= since:  # nothing of it left the window yet
                return gone
            gone += self._let_go(*slot.cut_before(since))
            if not slot.stamps:
                del self.slots[heapq.heappop(self.order)]
        return gone

    def _let_go(self, latencies: array[float], flags: bytearray) -> int:
        if not flags:
            return 0
        self.requests -= len(flags)
        self.errors -= _errors(flags)
        self.fallbacks -= _fallbacks(flags)
        self.latencies.remove([ms for ms in latencies if ms == ms])  # NaN != NaN: the untimed calls
        self._stats = None
        return len(flags)

    def stats(self) -> RequestStats:
        if self._stats is None:
            p50, p95 = self.latencies.nearest_ranks(QUANTILES)
            self._stats = RequestStats(
                requests=self.requests,
                errors=self.errors,
                error_rate=self.errors / self.requests if self.requests else None,
                p95_ms=p95,
                fallbacks=self.fallbacks,
                p50_ms=p50,
                p95_exact=True,
            )
        return self._stats


@dataclass
class CatchUp:
    """What one catch_up did: the calls it read from the database, and those that left the window."""

    read: int
    expired: int
    full_read: bool  # the window was read whole (first time, or the window moved back)


class TrafficWindow:
    """The last `length_s` seconds of real calls per provider; `catch_up(store, now)` brings it to `now`."""

    def __init__(self, length_s: float) -> None:
        self.length_s = length_s
        self.cursor: int | None = None  # the largest usage_calls id read (None: nothing read yet)
        self.since: float | None = None  # the window's start at the last catch-up
        self.at: float | None = None  # the window's end (`now`) at the last catch-up
        self._calls: dict[str, _ProviderCalls] = {}
        self._ahead: list[tuple[float, int, str, float | None, int]] = []  # heap of calls stamped after `at`
        # More than CALLS_MAX calls in the window: none is kept, stats() is empty, the owner estimates.
        self.overflowed = False

    def reset(self, length_s: float | None = None) -> None:
        """Forget everything: the next catch-up reads the whole window (of a new length, if given)."""
        if length_s is not None:
            self.length_s = length_s
        self.cursor = self.since = self.at = None
        self._calls, self._ahead = {}, []
        self.overflowed = False

    async def catch_up(self, store: Store, now: float) -> CatchUp:
        since = now - self.length_s
        if self.since is not None and since < self.since:
            self.reset()  # the clock went back: calls already let go would belong again
        upto = await largest_call_id(store)
        full = self.cursor is None
        if self.cursor is None:
            limit = CALLS_MAX * REFILL_BELOW if self.overflowed else CALLS_MAX
            if await calls_since(store, since) > limit:
                self._overflow(now)
                return CatchUp(read=0, expired=0, full_read=False)
            self.overflowed = False
            first = await first_id_since(store, since, upto)
            self.cursor = upto if first is None else first - 1
        elif upto < self.cursor:
            # The largest id was deleted: SQLite gives it again to the next call (see the module's notes).
            self.cursor = upto
        expired = sum(calls.expire(since) for calls in self._calls.values())
        read = 0
        while self.cursor < upto:
            rows = await calls_after(store, self.cursor, upto, since, READ_BATCH)
            arrived: dict[str, list[CallRow]] = {}
            for row in rows:
                if row[1] <= now:
                    calls = arrived.get(row[2])
                    if calls is None:
                        calls = arrived[row[2]] = []
                    calls.append(row)
                else:
                    heapq.heappush(self._ahead, row[1:2] + row[0:1] + row[2:])
            for provider, calls in arrived.items():
                self._provider(provider).add(calls)
            read += len(rows)
            self.cursor = rows[-1][0] if len(rows) == READ_BATCH else upto
            if len(self) + len(self._ahead) > CALLS_MAX:
                self._overflow(now)
                return CatchUp(read=read, expired=expired, full_read=full)
        while self._ahead and self._ahead[0][0] <= now:
            ts, call_id, provider, latency_ms, flags = heapq.heappop(self._ahead)
            self._provider(provider).add([(call_id, ts, provider, latency_ms, flags)])
        for provider in [p for p, calls in self._calls.items() if not calls.requests]:
            del self._calls[provider]
        self.since, self.at = since, now
        return CatchUp(read=read, expired=expired, full_read=full)

    def _overflow(self, now: float) -> None:
        """Too many calls to hold: let go of them all; the next catch-up counts again before reading."""
        self.reset()
        self.overflowed = True
        self.at = now

    def _provider(self, provider: str) -> _ProviderCalls:
        calls = self._calls.get(provider)
        if calls is None:
            calls = self._calls[provider] = _ProviderCalls()
        return calls

    def stats(self) -> dict[str, RequestStats]:
        """Per provider with calls in the window: its requests, errors, fallbacks and exact p50/p95."""
        return {provider: calls.stats() for provider, calls in self._calls.items()}

    def __len__(self) -> int:
        return sum(calls.requests for calls in self._calls.values())


# -- published once per round, read by every viewer ---------------------------------------------------


@dataclass(frozen=True)
class PublishedTraffic:
    """The window's figures as a collector's round published them: `at` is the window's end."""

    at: float
    window_s: float
    stats: dict[str, RequestStats]


async def publish(store: Store, stats: dict[str, RequestStats], at: float, window_s: float, lease: str) -> None:
    """Replace the published figures with these, in a transaction of their own."""
    async with store.transaction() as conn:
        await write_published(conn, stats, at, window_s, lease)


async def write_published(
    conn: aiosqlite.Connection, stats: dict[str, RequestStats], at: float, window_s: float, lease: str
) -> None:
    """Replace the published figures with these (one row per provider with calls in the window: a
    provider whose calls all left it has no figures, not its old ones), inside the caller's transaction."""
    rows = [(p, s.requests, s.errors, s.fallbacks, s.p50_ms, s.p95_ms, int(s.p95_exact)) for p, s in stats.items()]
    await conn.execute("DELETE FROM provider_traffic")
    await conn.executemany(
        "INSERT INTO provider_traffic (provider_id, requests, errors, fallbacks, p50_ms, p95_ms, p95_exact) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    await conn.execute(
        "INSERT INTO traffic_published (lease, at, window_s) VALUES (?, ?, ?) "
        "ON CONFLICT(lease) DO UPDATE SET at = excluded.at, window_s = excluded.window_s",
        (lease, at, window_s),
    )


async def published_traffic(store: Store, lease: str) -> PublishedTraffic | None:
    """What the collector last published, None when no collector ever has (a viewer alone)."""
    head = await store.fetchone("SELECT at, window_s FROM traffic_published WHERE lease = ?", (lease,))
    if head is None:
        return None
    rows = await store.fetchall(
        "SELECT provider_id, requests, errors, fallbacks, p50_ms, p95_ms, p95_exact FROM provider_traffic"
    )
    return PublishedTraffic(
        at=float(head[0]),
        window_s=float(head[1]),
        stats={
            str(r[0]): RequestStats(
                requests=int(r[1]),
                errors=int(r[2]),
                error_rate=int(r[2]) / int(r[1]) if r[1] else None,
                p95_ms=r[5],
                fallbacks=int(r[3]),
                p50_ms=r[4],
                p95_exact=bool(r[6]),
            )
            for r in rows
        },
    )
