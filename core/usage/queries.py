"""Questions asked of the usage roll-ups — never of the raw records — so they stay fast at millions of
records: breakdowns by any dimension over any range, daily trends, per-provider request statistics for
the health model, the dashboard's summary, unknown prices, fallback pairs; and retention."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import price_table_version
from llmpulse.core.usage.rollup import BUCKETS, DIMS, GRAINS, LATENCY_BOUNDS_MS, MINUTE_KEEP_S

BY_CHOICES = ("provider", "model", "department", "agent", "user", "task_type", "category", "provider_model")
HIST = ", ".join(f"SUM(l{i})" for i in range(BUCKETS))


@dataclass
class GroupRow:
    key: str
    requests: int
    errors: int
    fallbacks: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cost_usd: float  # of the priced records
    unknown_price_count: int  # records whose price is unknown (not in cost_usd)
    success_rate: float | None
    p95_ms: float | None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "tokens": self.tokens}


@dataclass
class RequestStats:
    requests: int
    errors: int
    error_rate: float | None
    p95_ms: float | None
    fallbacks: int


@dataclass
class UsageSummary:
    requests_today: int
    cost_today: float
    requests_month: int
    cost_month: float
    unknown_price_count: int  # this month
    fallbacks_24h: int
    requests_24h: int
    price_table: str


def p95_from_hist(counts: Sequence[int], q: float = 0.95) -> float | None:
    """A percentile from the fixed latency buckets, interpolated inside the bucket it falls in."""
    total = sum(counts)
    if not total:
        return None
    target = q * total
    running = 0
    for i, c in enumerate(counts):
        if c and running + c >= target:
            lower = 0.0 if i == 0 else float(LATENCY_BOUNDS_MS[i - 1])
            upper = float(LATENCY_BOUNDS_MS[i]) if i < len(LATENCY_BOUNDS_MS) else lower * 2
            return lower + (upper - lower) * (target - running) / c
        running += c
    return float(LATENCY_BOUNDS_MS[-1])


LONG_RANGE_S = 6 * 3600.0  # ranges at least this long start at the top of their first hour


def segments(since: float, until: float, now: float | None = None) -> list[tuple[str, float, float]]:
    """Cover [since, until) with the coarsest roll-up buckets that fit: (grain, first start, end).

    Precision is a minute for short ranges; a range of six hours or more starts at the top of its
    first hour (so "the last 24h" reads ~24 hour rows per key, not up to 118 minute rows), and a range
    ending now ends with the current hour's bucket, which holds nothing later than now."""
    wall = time.time() if now is None else now
    end = -(-until // 60) * 60
    if until >= wall - 60:
        end = -(-end // 3600) * 3600
    t = since - since % 60
    if until - since >= LONG_RANGE_S:
        t = t - t % 3600
    oldest_minute = wall - MINUTE_KEEP_S
    if t < oldest_minute:
        t = t - t % 3600  # no minute roll-ups that far back: the hour is the finest
    if end < oldest_minute:
        end = -(-end // 3600) * 3600
    out: list[tuple[str, float, float]] = []
    while t < end:
        for grain in ("d", "h", "m"):
            width = GRAINS[grain]
            if t % width == 0 and t + width <= end:
                break
        else:
            grain, width = "m", 60.0
        if out and out[-1][0] == grain and out[-1][2] == t:
            out[-1] = (grain, out[-1][1], t + width)
        else:
            out.append((grain, t, t + width))
        t += width
    return out


def _where(since: float, until: float) -> tuple[str, list[Any]]:
    parts, params = [], []
    for grain, lo, hi in segments(since, until):
        parts.append("(grain = ? AND start >= ? AND start < ?)")
        params += [grain, lo, hi]
    return "(" + (" OR ".join(parts) or "0") + ")", params


def _row(key: str, r: Any) -> GroupRow:
    requests, errors = int(r[1] or 0), int(r[2] or 0)
    hist = [int(v or 0) for v in r[9 : 9 + BUCKETS]]
    return GroupRow(
        key=key,
        requests=requests,
        errors=errors,
        fallbacks=int(r[3] or 0),
        input_tokens=int(r[4] or 0),
        output_tokens=int(r[5] or 0),
        cache_read_tokens=int(r[6] or 0),
        cost_usd=float(r[7] or 0.0),
        unknown_price_count=int(r[8] or 0),
        success_rate=(requests - errors) / requests if requests else None,
        p95_ms=p95_from_hist(hist),
    )


async def breakdown(store: Store, by: str, since: float, until: float, filters: Any = None) -> list[GroupRow]:
    """Usage in [since, until) grouped by one dimension, most expensive first."""
    if by not in BY_CHOICES and by != "total":
        raise ValueError(f"by: found {by!r}; expected one of {', '.join(BY_CHOICES)}")
    if filters:
        raise ValueError("filters are not supported by the roll-ups; group by one dimension")
    where, params = _where(since, until)
    rows = await store.fetchall(
        f"SELECT key, SUM(requests), SUM(errors), SUM(fallbacks), SUM(input_tokens), SUM(output_tokens), "
        f"SUM(cache_read_tokens), SUM(cost_usd), SUM(unknown_price), {HIST} FROM usage_rollups "
        f"WHERE dim = ? AND {where} GROUP BY key",
        [by, *params],
    )
    out = [_row(r[0], r) for r in rows]
    out.sort(key=lambda g: (-g.cost_usd, -g.requests, g.key))
    return out


async def total(
    store: Store, since: float, until: float, dim: str = "total", key: str = "*", latency: bool = False
) -> GroupRow:
    """One group's totals; `latency` also reads the histogram for its p95 (budgets do not need it)."""
    where, params = _where(since, until)
    hist = HIST if latency else ", ".join("0" for _ in range(BUCKETS))
    r = await store.fetchone(
        f"SELECT ?, SUM(requests), SUM(errors), SUM(fallbacks), SUM(input_tokens), SUM(output_tokens), "
        f"SUM(cache_read_tokens), SUM(cost_usd), SUM(unknown_price), {hist} FROM usage_rollups "
        f"WHERE dim = ? AND key = ? AND {where}",
        [key, dim, key, *params],
    )
    return _row(key, r)


async def daily_by(store: Store, by: str, since: float, until: float) -> list[tuple[float, str, int, int, float]]:
    """(UTC day start, key, requests, tokens, cost) per day from the day roll-ups."""
    rows = await store.fetchall(
        "SELECT start, key, requests, input_tokens + output_tokens, cost_usd FROM usage_rollups "
        "WHERE grain = 'd' AND dim = ? AND start >= ? AND start < ? ORDER BY start, key",
        (by, since - since % 86400, until),
    )
    return [(float(r[0]), r[1], int(r[2]), int(r[3]), float(r[4])) for r in rows]


async def hourly_totals(store: Store, since: float, until: float) -> list[tuple[float, int, float]]:
    """(hour start, requests, cost) for the whole traffic — the busiest hours and the burn rate."""
    rows = await store.fetchall(
        "SELECT start, requests, cost_usd FROM usage_rollups WHERE grain = 'h' AND dim = 'total' "
        "AND start >= ? AND start < ? ORDER BY start",
        (since - since % 3600, until),
    )
    return [(float(r[0]), int(r[1]), float(r[2])) for r in rows]


async def provider_request_stats(store: Store, since: float, until: float) -> dict[str, RequestStats]:
    """Real traffic per provider, for the health model and the alert rules."""
    return {
        g.key: RequestStats(
            g.requests, g.errors, (g.errors / g.requests) if g.requests else None, g.p95_ms, g.fallbacks
        )
        for g in await breakdown(store, "provider", since, until)
    }


def period_start(now: float, period: str, tz: ZoneInfo) -> float:
    local = dt.datetime.fromtimestamp(now, tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start = day
    elif period == "week":
        start = day - dt.timedelta(days=local.weekday())
    else:
        start = day.replace(day=1)
    return dt.datetime(start.year, start.month, start.day, tzinfo=tz).timestamp()  # wall-clock midnight


def period_end(start: float, period: str, tz: ZoneInfo) -> float:
    local = dt.datetime.fromtimestamp(start, tz)
    if period == "day":
        nxt = local + dt.timedelta(days=1)
    elif period == "week":
        nxt = local + dt.timedelta(days=7)
    else:
        nxt = (local.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    # wall-clock midnight in the zone (DST days are 23 or 25 hours long)
    return dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp()


async def usage_summary(store: Store, now: float, tz: str | ZoneInfo = "UTC") -> UsageSummary:
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    today = await total(store, period_start(now, "day", zone), now)
    month = await total(store, period_start(now, "month", zone), now)
    last_day = await total(store, now - 86400.0, now)
    return UsageSummary(
        requests_today=today.requests,
        cost_today=today.cost_usd,
        requests_month=month.requests,
        cost_month=month.cost_usd,
        unknown_price_count=month.unknown_price_count,
        fallbacks_24h=last_day.fallbacks,
        requests_24h=last_day.requests,
        price_table=price_table_version(),
    )


async def unknown_price_models(store: Store, since: float, until: float | None = None) -> list[tuple[str, str, int]]:
    """(provider, model, records) for models in use whose price is unknown."""
    rows = await breakdown(store, "provider_model", since, until if until is not None else since + 10 * 365 * 86400)
    return sorted(
        (
            (g.key.split("/", 1)[0], g.key.split("/", 1)[1], g.unknown_price_count)
            for g in rows
            if g.unknown_price_count
        ),
        key=lambda t: -t[2],
    )


async def fallback_pairs(store: Store, since: float, until: float) -> list[tuple[str, str, int]]:
    """(from provider, to provider, requests) of fallbacks in the range, most frequent first."""
    where, params = _where(since, until)
    rows = await store.fetchall(
        f"SELECT key, SUM(requests) FROM usage_rollups WHERE dim = 'fallback' AND {where} "
        "GROUP BY key ORDER BY SUM(requests) DESC",
        params,
    )
    return [(r[0].split(">", 1)[0], r[0].split(">", 1)[1], int(r[1])) for r in rows]


async def prune_usage(store: Store, now: float, retention_s: float) -> int:
    """Drop raw records past retention and minute roll-ups past two days; hour and day roll-ups stay."""
    async with store.transaction() as conn:
        cur = await conn.execute("DELETE FROM usage_calls WHERE ts < ?", (now - retention_s,))
        removed = cur.rowcount
        await conn.execute("DELETE FROM usage_rollups WHERE grain = 'm' AND start < ?", (now - MINUTE_KEEP_S,))
    return removed


assert set(BY_CHOICES) <= set(DIMS)
