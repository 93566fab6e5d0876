"""Ingest: store and roll up priced usage records in one transaction.

Each record is added to roll-ups per dimension at the grains that dimension keeps (DIM_GRAINS): what
was called (total, provider, model, provider/model, task_type, category, fallback pairs) per hour and
day, total and provider also per minute; who called (department, agent, user) per UTC day only — with
varied attribution a user's hour holds about one call, so an hour roll-up per user cost as much as the
call itself (issue 14: 62 of 223 bytes a record). Finer ranges of a "who" dimension add or take off
the raw calls of the partial days (queries.plan), exact while the raw calls are kept.

The first summing step is done in Python as records are collected (RollupSums): one group per minute
(hour, for calls older than the minute roll-ups keep) and "what" combination, one per day and "who"
combination — a handful of groups however varied the attribution. A batch goes in as one job on the
database thread (Store.run_sync): its calls as multi-row INSERTs, then the groups spread over their
dimensions and grains (RollupSums.rows) and upserted. Latency goes into fixed histogram buckets (l0..l15), which
is how p95 comes from roll-ups once the raw calls are gone.
"""

from __future__ import annotations

import bisect
import operator
import sqlite3
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Protocol

from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import NANO_USD, Pricing
from llmpulse.core.usage.records import ATTR_FIELDS, CALL_COLUMNS, UsageRecord, attrs_key, attrs_of, call_row
from llmpulse.core.usage.request_ids import ShapeTags, shape_tags

LATENCY_BOUNDS_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000, 30000)
BUCKETS = len(LATENCY_BOUNDS_MS) + 1
GRAINS = {"m": 60.0, "h": 3600.0, "d": 86400.0}
MINUTE_KEEP_S = 2 * 86400.0  # minute roll-ups cover only this much recent time (hours and days: all)
DIMS = (
    "total",
    "provider",
    "model",
    "provider_model",
    "department",
    "agent",
    "user",
    "task_type",
    "category",
    "fallback",
)
# The grains each dimension is rolled up at (schema migration 0198). The finest is what queries.plan
# covers a range with; the rest of the range comes from the raw calls.
WHO_DIMS = ("department", "agent", "user")
DIM_GRAINS: dict[str, tuple[str, ...]] = {
    "total": ("m", "h", "d"),
    "provider": ("m", "h", "d"),
    "model": ("h", "d"),
    "provider_model": ("h", "d"),
    "task_type": ("h", "d"),
    "category": ("h", "d"),
    "fallback": ("h", "d"),
    **dict.fromkeys(WHO_DIMS, ("d",)),
}
MINUTE_DIMS = tuple(dim for dim, grains in DIM_GRAINS.items() if "m" in grains)
WHAT_DIMS = tuple(dim for dim in DIMS if dim not in WHO_DIMS)
COUNTERS = (
    "requests",
    "errors",
    "fallbacks",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "unknown_price",
) + tuple(f"l{i}" for i in range(BUCKETS))


# How each dimension's key is read from a roll-up group (names as stored: '' is "none"), and which
# groups have one. Queries read the same keys from the raw calls (queries._raw_key).
DIM_SQL = {
    "total": ("'*'", "1"),
    "provider": ("provider", "1"),
    "model": ("model", "1"),
    "provider_model": ("provider || '/' || model", "1"),
    "department": ("department", "department IS NOT NULL"),
    "agent": ("agent", "agent IS NOT NULL"),
    "user": ("user", "user IS NOT NULL"),
    "task_type": ("task_type", "task_type IS NOT NULL"),
    "category": ("category", "category IS NOT NULL"),
    "fallback": ("fallback_from || '>' || provider", "is_fallback AND fallback_from IS NOT NULL"),
}
# A record whose dedupe key is already stored (or twice in one batch) is ignored by the UNIQUE index;
# the rows that did go in are exactly those above the largest id before the batch. Rows go in CHUNK at a
# time as one multi-row INSERT: one statement to bind and step instead of CHUNK (measured 1.2 vs 2.0 µs
# a row), and the GIL is released for the whole chunk.
CHUNK = 500
# A row carries its cost in dollars (already a whole number of nano-dollars: pricing.NANO_USD); the
# column holds the nano-dollars. Rounded by adding a half and truncating (a cost is never negative):
# SQLite's round() made the whole insert 35% slower (1.3 µs a row, measured on 1M calls).
_MARKS = {c: f"CAST(? * {NANO_USD} + 0.5 AS INTEGER)" if c == "cost_nusd" else "?" for c in CALL_COLUMNS}
# Most chunks have no dedupe key (their calls have request ids) and no reported cost: left out of the
# statement (NULL by default) they are two values a row fewer to bind and read (~8% of the insert).
_OFTEN_NULL = ("dedupe_key", "reported_cost_usd")
_LEAN_COLUMNS = tuple(c for c in CALL_COLUMNS if c not in _OFTEN_NULL)


def insert_calls_sql(rows: int, columns: Sequence[str] = CALL_COLUMNS) -> str:
    marks = "(" + ", ".join(_MARKS[c] for c in columns) + ")"
    return f"INSERT OR IGNORE INTO usage_calls ({', '.join(columns)}) VALUES " + ", ".join(marks for _ in range(rows))


INSERT_CALLS = insert_calls_sql(CHUNK)
_INSERT_LEAN = insert_calls_sql(CHUNK, _LEAN_COLUMNS)
_REQUEST_ID = CALL_COLUMNS.index("request_id")
_OFTEN_NULL_AT = sorted((CALL_COLUMNS.index(c) for c in _OFTEN_NULL), reverse=True)
_INSERT_ATTRS = (
    f"INSERT INTO usage_attrs (key, {', '.join(ATTR_FIELDS)}) VALUES (?, {', '.join('?' for _ in ATTR_FIELDS)})"
)
_SELECT_ATTR_ID = f"SELECT id FROM usage_attrs WHERE key = ? AND {' AND '.join(f'{c} = ?' for c in ATTR_FIELDS)}"


def attr_id(conn: sqlite3.Connection, attrs: tuple[Any, ...]) -> int:
    """The usage_attrs id of an attribution (ATTR_FIELDS order), stored now if it is new. Inside the
    caller's write transaction: nobody else can add the same one between the look and the insert."""
    key = attrs_key(attrs)
    row = conn.execute(_SELECT_ATTR_ID, (key, *attrs)).fetchone()
    if row is not None:
        return int(row[0])
    conn.execute(_INSERT_ATTRS, (key, *attrs))
    return int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])


UPSERT_ROLLUP = (
    f"INSERT INTO usage_rollups (grain, start, dim, key, {', '.join(COUNTERS)}) "
    f"VALUES ({', '.join('?' for _ in range(4 + len(COUNTERS)))}) ON CONFLICT (grain, dim, start, key) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in COUNTERS)
)


_NO_LATENCY = (0,) * BUCKETS


class RollupKeys:
    """Small numbers for the "what" and "who" parts of the attributions seen, so a call is summed with
    two integer-keyed dictionary updates however many fields its attribution has; and for each part,
    the (dimension, key) pairs its calls count in, with whether they are errors and fallbacks."""

    __slots__ = ("what", "what_ids", "who", "who_ids")

    def __init__(self) -> None:
        self.what: list[tuple[list[tuple[str, str]], bool, bool]] = []
        self.who: list[tuple[list[tuple[str, str]], bool, bool]] = []
        self.what_ids: dict[tuple[Any, ...], int] = {}
        self.who_ids: dict[tuple[Any, ...], int] = {}

    def of(self, attrs: Sequence[Any]) -> tuple[int, int]:
        """(what, who) of an attribution as stored (ATTR_FIELDS order: '' is "none")."""
        provider, model, status, _, is_fallback, fallback_from, department, agent, user, task_type, category, _ = attrs
        error, fallback = status == "error", bool(is_fallback)
        what = (provider, model, status, fallback, fallback_from, task_type, category)
        w = self.what_ids.get(what)
        if w is None:
            w = self.what_ids[what] = len(self.what)
            keys = [("total", "*"), ("provider", provider), ("model", model), ("provider_model", f"{provider}/{model}")]
            keys += [(dim, value) for dim, value in (("task_type", task_type), ("category", category)) if value]
            if fallback and fallback_from:
                keys.append(("fallback", f"{fallback_from}>{provider}"))
            self.what.append((keys, error, fallback))
        who = (status, fallback, department, agent, user)
        o = self.who_ids.get(who)
        if o is None:
            o = self.who_ids[who] = len(self.who)
            keys = [(dim, value) for dim, value in zip(WHO_DIMS, (department, agent, user), strict=True) if value]
            self.who.append((keys, error, fallback))
        return w, o


class SummedBatch(Protocol):
    """A batch's calls summed for its roll-ups, ready for _ingest_job: RollupSums (a call at a time) or
    rollup_columns.ColumnSums (a big batch at once)."""

    @property
    def oldest_minute(self) -> float: ...

    @property
    def unknown_price(self) -> int: ...

    def write(self, conn: sqlite3.Connection, oldest_minute: float) -> None: ...


class RollupSums:
    """A batch's calls summed while they are collected: per minute (or hour) and "what", per day and
    "who" (~0.6 µs a call). Used only when every call of the batch was stored; a batch with duplicates
    is summed again from the rows that went in (the same code, over what SQLite kept).

    Calls older than `oldest_minute` (now - MINUTE_KEEP_S when the batch began) are summed per hour: no
    minute roll-up keeps them. The cut-off only moves forward, so a call summed per hour here is also
    too old for the minute roll-up at flush (ingest_rows checks)."""

    __slots__ = ("keys", "oldest_minute", "what", "who")

    def __init__(self, oldest_minute: float, keys: RollupKeys | None = None) -> None:
        self.oldest_minute = oldest_minute
        self.keys = keys if keys is not None else RollupKeys()
        # (minute since the epoch, what) and (day since the epoch, who) ->
        # [requests, unknown price, input, output, cache read, cache write, cost, l0..l15]
        self.what: dict[tuple[int, int], list[Any]] = {}
        self.who: dict[tuple[int, int], list[Any]] = {}

    def add_many(self, calls: Iterable[tuple[Any, ...]]) -> None:
        """Count calls, each (ts, what, who, input, output, cache read, cache write, latency, cost): the
        values of its usage_calls row, `what` and `who` from RollupKeys.of. One loop for a batch, both
        groups spelled out: this runs once a call (a method call a call, or a loop over the two groups,
        cost a third more)."""
        sums_what, sums_who = self.what, self.who
        what_get, who_get = sums_what.get, sums_who.get
        oldest, bounds, bisect_left = self.oldest_minute, LATENCY_BOUNDS_MS, bisect.bisect_left
        for ts, what, who, tin, tout, tcr, tcw, latency, cost in calls:
            # ts is never negative: its minute, or its hour's first minute past the minute roll-ups
            t = int(ts)
            gk = (t // 60 if ts >= oldest else t // 3600 * 60, what)
            a = what_get(gk)
            if a is None:
                a = sums_what[gk] = [0, 0, 0, 0, 0, 0, 0.0, *_NO_LATENCY]
            gk = (t // 86400, who)
            b = who_get(gk)
            if b is None:
                b = sums_who[gk] = [0, 0, 0, 0, 0, 0, 0.0, *_NO_LATENCY]
            a[0] += 1
            b[0] += 1
            a[2] += tin
            b[2] += tin
            a[3] += tout
            b[3] += tout
            if tcr:
                a[4] += tcr
                b[4] += tcr
            if tcw:
                a[5] += tcw
                b[5] += tcw
            if cost is None:
                a[1] += 1
                b[1] += 1
            else:
                a[6] += cost
                b[6] += cost
            if latency is not None:
                i = 7 + bisect_left(bounds, latency)
                a[i] += 1
                b[i] += 1

    @property
    def unknown_price(self) -> int:
        return sum(acc[1] for acc in self.what.values())

    def merge(self, other: RollupSums) -> None:
        if other.keys is not self.keys:
            raise ValueError("sums keyed by different RollupKeys")
        for mine, theirs in ((self.what, other.what), (self.who, other.who)):
            for key, acc in theirs.items():
                have = mine.get(key)
                mine[key] = acc if have is None else [a + b for a, b in zip(have, acc, strict=True)]

    def rows(self, oldest_minute: float) -> list[tuple[Any, ...]]:
        """The sums as usage_rollups rows (grain, start, dim, key, COUNTERS), in the primary key's order:
        each group counted in every dimension and grain it belongs to (DIM_GRAINS), minute rows only from
        `oldest_minute` on. In Python: summing a batch's few thousand groups this way cost a quarter of
        what the same spread did as one SQL statement."""
        out: dict[tuple[Any, ...], list[Any]] = {}

        def put(key: tuple[Any, ...], counts: list[Any]) -> None:
            have = out.get(key)
            if have is None:
                out[key] = counts.copy()
            else:
                have[:] = map(operator.add, have, counts)  # in C: a third of a Python loop's time

        def counters(acc: list[Any], error: bool, fallback: bool) -> list[Any]:
            n = acc[0]
            return [n, n if error else 0, n if fallback else 0, *acc[2:7], acc[1], *acc[7:]]

        hours: dict[tuple[int, int], list[Any]] = {}
        for (minute, w), acc in self.what.items():
            start = minute * 60
            if start >= oldest_minute:  # a minute group (an hour group starts before the cut-off)
                dims, error, fallback = self.keys.what[w]
                counts = counters(acc, error, fallback)
                for dim, key in dims[:2]:  # total and provider: MINUTE_DIMS
                    put(("m", start, dim, key), counts)
            hour_key = (start - start % 3600, w)
            have = hours.get(hour_key)
            if have is None:
                hours[hour_key] = acc.copy()
            else:
                have[:] = map(operator.add, have, acc)
        for (hour, w), acc in hours.items():
            dims, error, fallback = self.keys.what[w]
            counts = counters(acc, error, fallback)
            for dim, key in dims:
                put(("h", hour, dim, key), counts)
        for (_, hour, dim, key), counts in [item for item in out.items() if item[0][0] == "h"]:
            put(("d", hour - hour % 86400, dim, key), counts)
        for (day, o), acc in self.who.items():
            dims, error, fallback = self.keys.who[o]
            counts = counters(acc, error, fallback)
            for dim, key in dims:
                put(("d", day * 86400, dim, key), counts)
        return sorted(((*k, *v) for k, v in out.items()), key=lambda r: (r[0], r[2], r[1], r[3]))

    def write(self, conn: sqlite3.Connection, oldest_minute: float) -> None:
        """Upsert the sums into usage_rollups (inside the caller's transaction)."""
        conn.executemany(UPSERT_ROLLUP, self.rows(oldest_minute))


# usage_attrs ids already known per open Store (ids never change or go away: safe to remember).
_ATTR_IDS: weakref.WeakKeyDictionary[Store, dict[tuple[Any, ...], int]] = weakref.WeakKeyDictionary()


def known_attr_ids(store: Store) -> dict[tuple[Any, ...], int]:
    ids = _ATTR_IDS.get(store)
    if ids is None:
        ids = _ATTR_IDS[store] = {}
    return ids


class AttrRefs:
    """What a usage_calls row's attrs column holds while the row waits to be stored: the attribution's
    usage_attrs id when known, else a negative placeholder that ingest resolves inside its transaction.
    Rows stay all-integer, so a batch is never scanned or rebuilt in Python to find new attributions."""

    def __init__(self, store: Store):
        self.ids = known_attr_ids(store)
        self.placeholders: dict[int, tuple[Any, ...]] = {}  # placeholder -> attribution (kept: rows may still use it)
        self._placeholder_of: dict[tuple[Any, ...], int] = {}

    def ref(self, attrs: tuple[Any, ...]) -> int:
        known = self.ids.get(attrs)
        if known is not None:
            return known
        ref = self._placeholder_of.get(attrs)
        if ref is None:
            ref = self._placeholder_of[attrs] = -(len(self.placeholders) + 1)
            self.placeholders[ref] = attrs
        return ref


def record_row(r: UsageRecord, pricing: Pricing, attrs_ref: int) -> tuple[Any, ...]:
    """A record as its usage_calls row, priced now if it has no cost yet."""
    if r.cost_usd is None:
        r.cost_usd = pricing.cost(
            r.provider, r.model, r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens, r.ts
        )
    return call_row(r, attrs_ref)


@dataclass
class IngestResult:
    stored: int
    duplicates: int
    unknown_price: int


async def ingest(
    store: Store, records: Sequence[UsageRecord], pricing: Pricing, now: float | None = None
) -> IngestResult:
    """Price and store records, skipping ones already stored (same dedupe key), and roll them up."""
    refs = AttrRefs(store)
    sums = RollupSums((time.time() if now is None else now) - MINUTE_KEEP_S)
    keys = sums.keys
    rows, summed = [], []
    for r in records:
        attrs = attrs_of(r)
        row = record_row(r, pricing, refs.ref(attrs))
        rows.append(row)
        what, who = keys.of(attrs)
        summed.append((row[1], what, who, *row[3:9]))
    sums.add_many(summed)
    return await ingest_rows(store, rows, now, sums, refs.placeholders)


def _touch_attrs(
    conn: sqlite3.Connection,
    rows: Sequence[tuple[Any, ...]],
    resolved: dict[int, int],
    known: Mapping[tuple[Any, ...], int],
    found: dict[tuple[Any, ...], int],
) -> None:
    """Mark the batch's attributions as used (usage_attrs.last_ts: pruning drops those no kept call can
    refer to). One a process still remembers but pruning removed is stored again, and the batch's rows
    are pointed at its new id through `resolved`."""
    # over the rows in C (itemgetter): a generator here cost 0.2 s of the database thread per 1M calls
    refs = set(map(operator.itemgetter(2), rows))
    ids = sorted({resolved.get(ref, ref) for ref in refs})
    newest = max(map(operator.itemgetter(1), rows))
    touched = 0
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        marks = ", ".join("?" for _ in part)
        touched += conn.execute(
            f"UPDATE usage_attrs SET last_ts = MAX(last_ts, ?) WHERE id IN ({marks})", (newest, *part)
        ).rowcount
    if touched == len(ids):
        return
    present: set[int] = set()
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        marks = ", ".join("?" for _ in part)
        present.update(r[0] for r in conn.execute(f"SELECT id FROM usage_attrs WHERE id IN ({marks})", part))
    attrs_of_id = {v: k for k, v in known.items()}
    for gone in set(ids) - present:
        attrs = attrs_of_id[gone]
        resolved[gone] = found[attrs] = attr_id(conn, attrs)
        conn.execute("UPDATE usage_attrs SET last_ts = MAX(last_ts, ?) WHERE id = ?", (newest, resolved[gone]))


_STORED_SINCE = (
    f"SELECT c.ts, {', '.join(f'a.{f}' for f in ATTR_FIELDS)}, c.input_tokens, c.output_tokens, "
    f"c.cache_read_tokens, c.cache_write_tokens, c.latency_ms, c.cost_nusd / {NANO_USD} "
    "FROM usage_calls c JOIN usage_attrs a ON a.id = c.attrs WHERE c.id > ?"
)


def sums_of_stored(conn: sqlite3.Connection, after_id: int, oldest_minute: float) -> RollupSums:
    """The calls stored above `after_id`, summed as RollupSums sums them as they arrive: a batch that
    held duplicates is rolled up from what SQLite kept, so the two can never disagree about what counts."""
    sums = RollupSums(oldest_minute)
    keys, width = sums.keys, len(ATTR_FIELDS)
    summed = []
    for row in conn.execute(_STORED_SINCE, (after_id,)):
        what, who = keys.of(row[1 : 1 + width])
        summed.append((row[0], what, who, *row[1 + width :]))
    sums.add_many(summed)
    return sums


def _ingest_job(
    conn: sqlite3.Connection,
    rows: Sequence[tuple[Any, ...]],
    resolved: dict[int, int],
    new: dict[int, tuple[Any, ...]],
    oldest_minute: float,
    sums: SummedBatch | None,
    known: Mapping[tuple[Any, ...], int],
    shapes: ShapeTags,
    stored_ids: Sequence[Any] | None,
) -> tuple[int, int, dict[tuple[Any, ...], int], Any]:
    """The whole batch on the connection's thread: (stored, unknown_price, ids of attributions stored now,
    request-id shapes learned: for ShapeTags.commit)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        learned = None
        # the request ids as stored (request_ids), unless the caller had them all by the shapes it knew:
        # the shapes a batch needs beyond those are looked up (and added) in this transaction
        if stored_ids is None and any(row[_REQUEST_ID] is not None for row in rows):
            stored_ids, learned = shapes.stored_forms(conn, list(map(operator.itemgetter(_REQUEST_ID), rows)))
        found: dict[tuple[Any, ...], int] = {}
        for ref, attrs in new.items():
            resolved[ref] = found[attrs] = attr_id(conn, attrs)
        _touch_attrs(conn, rows, resolved, known, found)
        (last_id,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM usage_calls").fetchone()
        stored = 0
        width = len(CALL_COLUMNS)
        for i in range(0, len(rows), CHUNK):
            part = rows[i : i + CHUNK]
            params = list(chain.from_iterable(part))
            if resolved:
                refs = params[2::width]
                params[2::width] = list(map(resolved.get, refs, refs))
            if stored_ids is not None:
                params[_REQUEST_ID::width] = stored_ids[i : i + CHUNK]
            n = len(part)
            if all(params[column::width].count(None) == n for column in _OFTEN_NULL_AT):
                for narrower, column in enumerate(_OFTEN_NULL_AT):  # the later first: the earlier stays put
                    del params[column :: width - narrower]
                sql = _INSERT_LEAN if n == CHUNK else insert_calls_sql(n, _LEAN_COLUMNS)
            else:
                sql = INSERT_CALLS if n == CHUNK else insert_calls_sql(n)
            stored += conn.execute(sql, params).rowcount
        if sums is None or stored != len(rows) or sums.oldest_minute > oldest_minute:
            sums = sums_of_stored(conn, last_id, oldest_minute)
        unknown = sums.unknown_price
        sums.write(conn, oldest_minute)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return stored, unknown, found, learned


async def ingest_rows(
    store: Store,
    rows: Sequence[tuple[Any, ...]],
    now: float | None = None,
    sums: SummedBatch | None = None,
    placeholders: Mapping[int, tuple[Any, ...]] | None = None,
    stored_ids: Sequence[Any] | None = None,
) -> IngestResult:
    """Store priced usage_calls rows (CALL_COLUMNS order; attrs a usage_attrs id or a placeholder from
    `placeholders`, see AttrRefs) and roll them up, in one transaction: a crash leaves the whole batch or
    none of it. Deduplication runs inside SQLite, as one job on the connection's thread
    (Store.run_sync); `sums`, when the caller kept them while collecting the rows, spare summing the
    stored rows again (done when some were duplicates); `stored_ids`, the rows' request ids as stored
    (ShapeTags.known_forms), spare working them out on the connection's thread."""
    if not rows:
        return IngestResult(0, 0, 0)
    oldest_minute = (time.time() if now is None else now) - MINUTE_KEEP_S
    ids = known_attr_ids(store)
    resolved: dict[int, int] = {}
    new: dict[int, tuple[Any, ...]] = {}
    for ref, attrs in (placeholders or {}).items():
        known = ids.get(attrs)
        if known is None:
            new[ref] = attrs
        else:
            resolved[ref] = known
    shapes = shape_tags(store)
    stored, unknown, found, learned = await store.run_sync(
        _ingest_job, rows, resolved, new, oldest_minute, sums, ids, shapes, stored_ids
    )
    ids.update(found)  # only once committed: a rolled-back id may be reused by someone else
    if learned is not None:
        shapes.commit(learned)
    return IngestResult(stored=stored, duplicates=len(rows) - stored, unknown_price=unknown)
