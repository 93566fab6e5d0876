"""The import's roll-up sums with numpy (core/usage/rollup_columns.py) are RollupSums' sums: the same
usage_rollups rows in the same order, every count and token exact, the cost equal but for the order its
floats were added in — for calls of every kind RollupSums sums (errors, fallbacks, cached tokens, no
latency, latencies on the bucket bounds, unknown prices, calls older than the minute roll-ups, task
types and categories, who-dimensions given or not)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from llmpulse.core.usage.rollup import LATENCY_BOUNDS_MS, RollupKeys, RollupSums
from llmpulse.core.usage.rollup_columns import ColumnSums

NOW = 1_795_000_020.0  # two days before it is a whole minute: calls on the minute roll-ups' cut-off
COST = 4 + 7  # (grain, start, dim, key) then requests, errors, fallbacks, 4 token counts: then cost_usd


def attributions(rng: random.Random, n: int) -> list[tuple[Any, ...]]:
    """Stored attributions (ATTR_FIELDS order, '' for none)."""
    out = []
    for _ in range(n):
        error = rng.random() < 0.2
        fallback = rng.random() < 0.2
        out.append(
            (
                rng.choice(["openai", "anthropic", "groq"]),
                rng.choice(["gpt-4o", "m-1", "m-2"]),
                "error" if error else "ok",
                "rate_limited" if error else "",
                int(fallback),
                rng.choice(["openai", ""]) if fallback else "",
                rng.choice(["", "ops", "research"]),
                rng.choice(["", "bot-1", "bot-2"]),
                rng.choice(["", "u1", "u2", "u3"]),
                rng.choice(["", "chat"]),
                rng.choice(["", "support"]),
                "",
            )
        )
    return out


def calls(rng: random.Random, n: int, keys: RollupKeys, attrs: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """(ts, what, who, input, output, cache read, cache write, latency, cost): what RollupSums.add_many takes."""
    out = []
    for _ in range(n):
        what, who = keys.of(rng.choice(attrs))
        cache_read = rng.choice([0, 0, rng.randrange(50)])
        latency = rng.choice([None, float(rng.choice(LATENCY_BOUNDS_MS)), float(rng.randrange(40_000))])
        cost = rng.choice([None, round(rng.random() * 0.05, 9), 0.0])
        ts = NOW - rng.random() * 4 * 86400  # half of them older than the minute roll-ups keep
        out.append(
            (ts, what, who, rng.randrange(50, 5000) + cache_read, rng.randrange(900), cache_read, 0, latency, cost)
        )
    return out


def column_sums(keys: RollupKeys, oldest: float, batch: list[tuple[Any, ...]]) -> ColumnSums:
    ts, what, who, tin, tout, tcr, tcw, latency, cost = zip(*batch, strict=True)
    return ColumnSums(
        keys,
        oldest,
        np.array(ts, dtype=np.float64),
        np.array(what, dtype=np.int64),
        np.array(who, dtype=np.int64),
        [np.array(column, dtype=np.int64) for column in (tin, tout, tcr, tcw)],
        np.array(latency, dtype=np.float64),  # None: NaN
        np.array(cost, dtype=np.float64),
    )


def assert_same_rows(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine[:COST] == theirs[:COST]  # grain, start, dim, key, every count
        assert mine[COST + 1 :] == theirs[COST + 1 :]  # unknown price, latency buckets
        assert mine[COST] == pytest.approx(theirs[COST], rel=1e-12, abs=1e-15)
        assert all(type(a) is type(b) for a, b in zip(mine, theirs, strict=True))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_column_sums_are_rollup_sums(seed):
    rng = random.Random(seed)
    keys = RollupKeys()
    attrs = attributions(rng, 40)
    batch = calls(rng, 5000, keys, attrs)
    oldest = NOW - 2 * 86400
    # on the cut-off and just before it: summed per minute, per hour
    batch += [(ts, *call[1:]) for ts, call in zip((oldest, oldest - 0.5, oldest + 59.5), batch, strict=False)]
    reference = RollupSums(oldest, keys)
    reference.add_many(batch)
    got = column_sums(keys, oldest, batch)
    assert got.unknown_price == reference.unknown_price == sum(1 for call in batch if call[8] is None)
    expected = reference.rows(oldest)
    assert {row[0] for row in expected} == {"m", "h", "d"}  # every grain is compared
    assert_same_rows(got.rows(oldest), expected)
    # a later cut-off (the batch waited): fewer minute rows, the hours and days as they were
    later = oldest + 3 * 3600
    assert_same_rows(got.rows(later), reference.rows(later))
    assert len(got.rows(later)) < len(expected)


def test_the_sums_count_each_call_once_per_dimension():
    """Independently of both: the day total is every call, and each user's day is their calls."""
    rng = random.Random(9)
    keys = RollupKeys()
    attrs = attributions(rng, 12)
    batch = calls(rng, 2000, keys, attrs)
    rows = column_sums(keys, NOW - 2 * 86400, batch).rows(NOW - 2 * 86400)
    day_total = {row[1]: row[4] for row in rows if row[0] == "d" and row[2] == "total"}
    by_day: dict[int, int] = {}
    for call in batch:
        day = int(call[0]) // 86400 * 86400
        by_day[day] = by_day.get(day, 0) + 1
    assert day_total == by_day
    users = {(row[1], row[3]): row[4] for row in rows if row[0] == "d" and row[2] == "user"}
    who_user = _users_of(keys)
    counted: dict[tuple[int, str], int] = {}
    for call in batch:
        user = who_user[call[2]]
        if user:
            key = (int(call[0]) // 86400 * 86400, user)
            counted[key] = counted.get(key, 0) + 1
    assert users == counted


def _users_of(keys: RollupKeys) -> dict[int, str]:
    """who -> its user ('' for none), from the (dimension, key) pairs RollupKeys keeps for it."""
    return {o: next((key for dim, key in dims if dim == "user"), "") for o, (dims, _, _) in enumerate(keys.who)}
