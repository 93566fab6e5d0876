"""A big batch's roll-ups summed and spread with numpy: `llmpulse import`'s batches of 200,000 calls.

RollupSums (rollup.py) sums a call at a time in Python (~2 µs a call) and spreads the groups over
their dimensions group by group: right for the Recorder's live calls, a few hundred a second, and for a
handful of calls stored at once. An import in random time order makes that 3.6 s of every 1M calls in
the storing process, more than the SQLite inserts. Here the same sums are a few whole-array passes in C:
the calls grouped per (minute or hour, "what") and (day, "who") as RollupSums groups them, each group
counted once per dimension it belongs to, the groups of one (grain, start, dimension, key) added up —
RollupSums.rows' rows, in its order.

Counts and tokens are exact integers either way; the summed cost is a float, added up in another order
than RollupSums adds it (as two batches upserted into one row already are), so it can differ from
RollupSums' in its last bits. tests/test_usage_storage checks the two against each other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from llmpulse.core.usage.rollup import (
    BUCKETS,
    LATENCY_BOUNDS_MS,
    MINUTE_DIMS,
    UPSERT_ROLLUP,
    RollupKeys,
)

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

_BOUNDS = np.asarray(LATENCY_BOUNDS_MS, dtype=np.float64)
_GRAINS = ("d", "h", "m")  # the primary key's order
# the counters of a roll-up row (rollup.COUNTERS): requests, errors, fallbacks, the four token counts,
# cost, unknown price, l0..l15. Column indexes into the matrices below:
_REQUESTS, _ERRORS, _FALLBACKS, _TOKENS, _COST, _UNKNOWN, _LATENCY = 0, 1, 2, 3, 7, 8, 9
_WIDTH = _LATENCY + BUCKETS


class _DimKeys:
    """Small numbers for the (dimension, key) pairs, and per "what" or "who" part of RollupKeys the
    pairs its calls count in, flattened (offsets into one array) so a group is spread with one gather."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], int] = {}
        self.pairs: list[tuple[str, str]] = []

    def of(self, pair: tuple[str, str]) -> int:
        got = self.ids.get(pair)
        if got is None:
            got = self.ids[pair] = len(self.pairs)
            self.pairs.append(pair)
        return got

    def flatten(
        self, parts: Sequence[tuple[list[tuple[str, str]], bool, bool]], first: int | None = None
    ) -> tuple[Ints, Ints, Ints]:
        """(offsets, counts, flat ids) of each part's pairs (only its first `first` pairs when given)."""
        counts = [len(dims if first is None else dims[:first]) for dims, _, _ in parts]
        flat = [self.of(pair) for dims, _, _ in parts for pair in (dims if first is None else dims[:first])]
        offsets = np.zeros(len(parts), dtype=np.int64)
        if parts:
            np.cumsum(counts[:-1], out=offsets[1:])
        return offsets, np.asarray(counts, dtype=np.int64), np.asarray(flat, dtype=np.int64)


def _groups(keys: Ints) -> tuple[Ints, Ints]:
    """(each distinct key, the index of each call's key among them)."""
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, inverse.reshape(-1)


def _sum_groups(
    inverse: Ints,
    groups: int,
    error: Ints,
    fallback: Ints,
    tokens: Sequence[Ints],
    cost: Floats,
    priced: npt.NDArray[np.bool_],
    bucket: Ints,
    timed: npt.NDArray[np.bool_],
) -> Floats:
    """The counters (_WIDTH columns) of each group, from its calls (`error`, `fallback` per call: 0 or 1)."""
    out = np.zeros((groups, _WIDTH), dtype=np.float64)
    out[:, _REQUESTS] = np.bincount(inverse, minlength=groups)
    out[:, _ERRORS] = np.bincount(inverse, weights=error, minlength=groups)
    out[:, _FALLBACKS] = np.bincount(inverse, weights=fallback, minlength=groups)
    for i, column in enumerate(tokens):
        out[:, _TOKENS + i] = np.bincount(inverse, weights=column, minlength=groups)
    out[:, _COST] = np.bincount(inverse, weights=cost, minlength=groups)
    out[:, _UNKNOWN] = np.bincount(inverse, weights=~priced, minlength=groups)
    latency = np.bincount(inverse[timed] * BUCKETS + bucket, minlength=groups * BUCKETS)
    out[:, _LATENCY:] = latency.reshape(groups, BUCKETS)
    return out


def _add_up(starts: Ints, parts: Ints, counters: Floats, width: int) -> tuple[Ints, Ints, Floats]:
    """Rows of the same (start, part) added up: (start, part, counters) once per distinct pair, `width`
    being more than any part."""
    unique, inverse = _groups(starts * width + parts)
    summed = np.empty((len(unique), _WIDTH), dtype=np.float64)
    for column in range(_WIDTH):
        summed[:, column] = np.bincount(inverse, weights=counters[:, column], minlength=len(unique))
    return unique // width, unique % width, summed


def _spread(
    starts: Ints, parts: Ints, counters: Floats, offsets: Ints, counts: Ints, flat: Ints
) -> tuple[Ints, Ints, Floats]:
    """Each group (start, part, counters) counted under every (dimension, key) of its part: (start,
    pair id, counters) a row per group and pair, not yet added up."""
    n = counts[parts]
    group = np.repeat(np.arange(len(parts)), n)
    # the pair's position within its group's part: 0, 1, ... n-1 for each group
    first = np.repeat(np.cumsum(n) - n, n)
    pair = flat[offsets[parts][group] + (np.arange(len(group)) - first)]
    return starts[group], pair, counters[group]


class ColumnSums:
    """A batch's calls summed and spread into usage_rollups rows (RollupSums.rows' rows and order); the
    same `oldest_minute`, `unknown_price` and `write` as RollupSums, for _ingest_job."""

    def __init__(
        self,
        keys: RollupKeys,
        oldest_minute: float,
        ts: Floats,
        what: Ints,
        who: Ints,
        tokens: Sequence[Ints],
        latency: Floats,
        cost: Floats,
    ) -> None:
        """The batch's calls as columns: latency and cost NaN where unknown (None in the rows)."""
        self.oldest_minute = oldest_minute
        priced = ~np.isnan(cost)
        cost = np.where(priced, cost, 0.0)
        timed = ~np.isnan(latency)
        bucket = np.searchsorted(_BOUNDS, latency[timed], side="left").astype(np.int64)
        seconds = ts.astype(np.int64)  # never negative: truncation is the floor, as int() in RollupSums
        # (minute or, before the minute roll-ups, the hour's first minute; what) and (day; who), as RollupSums
        minute = np.where(ts >= oldest_minute, seconds // 60, seconds // 3600 * 60)
        whats = np.asarray([(error, fallback) for _, error, fallback in keys.what], dtype=np.int64).reshape(-1, 2)
        whos = np.asarray([(error, fallback) for _, error, fallback in keys.who], dtype=np.int64).reshape(-1, 2)
        self.unknown_price = int(len(ts) - np.count_nonzero(priced))

        by_what, what_inverse = _groups(minute * len(keys.what) + what)
        what_counters = _sum_groups(
            what_inverse, len(by_what), whats[what, 0], whats[what, 1], tokens, cost, priced, bucket, timed
        )
        by_who, who_inverse = _groups(seconds // 86400 * len(keys.who) + who)
        who_counters = _sum_groups(
            who_inverse, len(by_who), whos[who, 0], whos[who, 1], tokens, cost, priced, bucket, timed
        )
        group_what = by_what % len(keys.what)
        group_start = by_what // len(keys.what) * 60
        group_who = by_who % len(keys.who)
        group_day = by_who // len(keys.who) * 86400

        pairs = _DimKeys()
        all_what = pairs.flatten(keys.what)
        minute_what = pairs.flatten(keys.what, len(MINUTE_DIMS))
        all_who = pairs.flatten(keys.who)
        self._pairs = pairs.pairs
        width = len(pairs.pairs)
        # per grain: (start, pair, counters) of every group counted in every dimension it belongs to,
        # added up; each grain from the smallest sums it can be (hours from the (hour, what) sums, not
        # the minute groups; days from the hour rows)
        is_minute = group_start >= oldest_minute
        minutes = _add_up(
            *_spread(group_start[is_minute], group_what[is_minute], what_counters[is_minute], *minute_what), width
        )
        hours = _add_up(
            *_spread(*_add_up(group_start - group_start % 3600, group_what, what_counters, len(keys.what)), *all_what),
            width,
        )
        days_who = _spread(group_day, group_who, who_counters, *all_who)
        days = _add_up(
            np.concatenate((hours[0] - hours[0] % 86400, days_who[0])),
            np.concatenate((hours[1], days_who[1])),
            np.concatenate((hours[2], days_who[2])),
            width,
        )
        self._grains = [days, hours, minutes]

    def rows(self, oldest_minute: float) -> list[tuple[Any, ...]]:
        """usage_rollups rows (grain, start, dim, key, COUNTERS) in the primary key's order, minute rows
        only from `oldest_minute` on (a later cut-off than the batch's: those minutes are in the hours)."""
        dims = [dim for dim, _ in self._pairs]
        names = [key for _, key in self._pairs]
        # ranks of the pairs by (dimension, key): the primary key's order is (grain, dim, start, key)
        order = sorted(range(len(self._pairs)), key=self._pairs.__getitem__)
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        dim_rank = {dim: i for i, dim in enumerate(sorted(set(dims)))}
        pair_dim = np.asarray([dim_rank[d] for d in dims], dtype=np.int64)
        out: list[tuple[Any, ...]] = []
        for grain, (starts, pairs, counters) in zip(_GRAINS, self._grains, strict=True):
            if grain == "m":
                keep = starts >= oldest_minute
                starts, pairs, counters = starts[keep], pairs[keep], counters[keep]
            sort = np.lexsort((rank[pairs], starts, pair_dim[pairs]))
            starts, pairs, counters = starts[sort], pairs[sort], counters[sort]
            ints = counters.astype(np.int64)
            columns: list[list[Any]] = [ints[:, i].tolist() for i in range(_WIDTH)]
            columns[_COST] = counters[:, _COST].tolist()
            pair_list = pairs.tolist()
            out.extend(
                zip(
                    [grain] * len(pair_list),
                    starts.tolist(),
                    [dims[p] for p in pair_list],
                    [names[p] for p in pair_list],
                    *columns,
                    strict=True,
                )
            )
        return out

    def write(self, conn: sqlite3.Connection, oldest_minute: float) -> None:
        """Upsert the sums into usage_rollups (inside the caller's transaction)."""
        conn.executemany(UPSERT_ROLLUP, self.rows(oldest_minute))
