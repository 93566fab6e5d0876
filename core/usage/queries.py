"""Questions asked of the usage roll-ups so they stay fast at millions of records: breakdowns by any
dimension over any range, daily trends, per-provider request statistics for the health model, the
dashboard's summary, unknown prices, fallback pairs; and retention.

Counts, tokens and costs come from the roll-ups alone. Percentiles do not: interpolating inside the
histogram buckets put p95 1.5-12% too high (up to +54% in small groups, sometimes above the slowest
call), so p50/p95 are exact (nearest rank) from the raw calls while they are kept — one indexed range
scan. Once a range's raw calls are gone (retention), the histogram gives an estimate, marked as such
(`p95_exact` False) and never above its bucket's upper bound."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import json
import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import NANO_USD, price_table_version
from llmpulse.core.usage.rollup import BUCKETS, DIM_GRAINS, DIM_SQL, DIMS, GRAINS, LATENCY_BOUNDS_MS, MINUTE_KEEP_S

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
    p50_ms: float | None = None
    p95_exact: bool = False  # True: nearest rank over the raw calls; False: estimated from the histogram
    timed: int = 0  # calls with a latency (the histogram's count)
    avg_latency_ms: float | None = None  # set by average_latencies() while the raw calls are kept

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    # Efficiency. Cost figures count only the priced calls; where some calls' price is unknown their
    # tokens cannot be split off, so the per-token figures are left out rather than understated.
    @property
    def priced_requests(self) -> int:
        return self.requests - self.unknown_price_count

    @property
    def cost_per_request(self) -> float | None:
        return self.cost_usd / self.priced_requests if self.priced_requests else None

    @property
    def tokens_per_request(self) -> float | None:
        return self.tokens / self.requests if self.requests else None

    @property
    def usd_per_1k_tokens(self) -> float | None:
        if self.unknown_price_count or not self.tokens:
            return None
        return self.cost_usd / self.tokens * 1000

    @property
    def tokens_per_usd(self) -> float | None:
        if self.unknown_price_count or not self.cost_usd:
            return None
        return self.tokens / self.cost_usd

    def to_json(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "tokens": self.tokens,
            "cost_per_request": self.cost_per_request,
            "tokens_per_request": self.tokens_per_request,
            "usd_per_1k_tokens": self.usd_per_1k_tokens,
            "tokens_per_usd": self.tokens_per_usd,
        }


@dataclass
class RequestStats:
    requests: int
    errors: int
    error_rate: float | None
    p95_ms: float | None
    fallbacks: int
    p50_ms: float | None = None  # from the same calls as p95_ms
    p95_exact: bool = True  # False: p50/p95 estimated from the histogram (past HEALTH_EXACT_CALLS_MAX calls)


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
    # This month, the providers whose budgets count a usage report llmpulse does not know (never pulled,
    # last pull failed, too short), each with why: the month's requests and cost leave them out.
    spend_unknown: dict[str, str] = field(default_factory=dict)


def p95_from_hist(counts: Sequence[int], q: float = 0.95) -> float | None:
    """A percentile estimated from the fixed latency buckets (only once the raw calls are gone),
    interpolated inside the bucket it falls in; in the open last bucket, its lower bound (nothing is
    known above it, so nothing higher is claimed)."""
    total = sum(counts)
    if not total:
        return None
    target = q * total
    running = 0
    for i, c in enumerate(counts):
        if c and running + c >= target:
            lower = 0.0 if i == 0 else float(LATENCY_BOUNDS_MS[i - 1])
            if i >= len(LATENCY_BOUNDS_MS):
                return lower
            upper = float(LATENCY_BOUNDS_MS[i])
            return lower + (upper - lower) * (target - running) / c
        running += c
    return float(LATENCY_BOUNDS_MS[-1])


def segments(since: float, until: float, now: float | None = None, finest: str = "m") -> list[tuple[str, float, float]]:
    """Cover [since, until) with the coarsest roll-up buckets that fit: (grain, first start, end).

    Precision is a minute at both ends wherever minute roll-ups are kept ("the last 24h" is the last
    86,400 s to the minute, not from the top of the hour 24 hours ago); older than that, the hour. A
    range ending now ends with the current hour's bucket, which holds nothing later than now.
    `finest` "h": a dimension without minute roll-ups (DIM_GRAINS), whole hours at both ends."""
    wall = time.time() if now is None else now
    end = -(-until // 60) * 60
    if until >= wall - 60:
        end = -(-end // 3600) * 3600
    t = since - since % 60
    oldest_minute = wall - MINUTE_KEEP_S if finest == "m" else math.inf
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


@dataclass(frozen=True)
class Plan:
    """How a dimension's figures over a range are read: roll-up buckets (grain, first start, end), plus
    or minus the raw calls of some parts (lo, hi, +1 or -1) — the buckets' parts outside the range taken
    off, or a partial day of a dimension rolled up per day only (department, agent, user) added."""

    segments: list[tuple[str, float, float]]
    raw: list[tuple[float, float, int]]


def _day_plan(since: float, until: float, wall: float, oldest_raw: float | None) -> Plan:
    """Whole UTC days from the day roll-ups; each partial day at an end from the raw calls — its part
    inside the range added, or the whole day's roll-up minus its part outside, whichever reads fewer
    calls. Adding needs every raw call of the part (none pruned: it starts at or after the oldest kept
    call); past retention the whole day counts, as its roll-up does."""
    day = GRAINS["d"]
    after = math.nextafter(until, math.inf)  # a call stamped exactly `until` counts
    lo, hi = since - since % day, -(-until // day) * day
    if hi <= since:
        return Plan([], [])

    def calls(a: float, b: float) -> float:  # the span of [a, b) that can hold calls (none after now)
        return max(0.0, min(b, max(wall, a)) - a)

    def can_add(a: float) -> bool:
        return oldest_raw is not None and a >= oldest_raw

    first, last = (lo if since == lo else lo + day), (hi if until == hi else hi - day)
    if first >= last:  # no whole day inside: the range's own raw calls, or its days minus the rest
        if can_add(since) and calls(since, after) <= calls(lo, since) + calls(after, hi):
            return Plan([], [(since, after, 1)])
        return Plan([("d", lo, hi)], [(a, b, -1) for a, b in ((lo, since), (after, hi)) if b > a])
    raw: list[tuple[float, float, int]] = []
    if since > lo:
        if can_add(since) and calls(since, first) < calls(lo, since):
            raw.append((since, first, 1))
        else:
            first = lo
            raw.append((lo, since, -1))
    if until < hi:
        if can_add(last) and calls(last, after) < calls(after, hi):
            raw.append((last, after, 1))
        else:
            raw.append((after, hi, -1))
            last = hi
    return Plan([("d", first, last)], raw)


async def plan(store: Store, dim: str, since: float, until: float) -> Plan:
    """The roll-up buckets and raw parts that give `dim`'s figures over [since, until) to the second."""
    finest = DIM_GRAINS[dim][0]
    wall = time.time()
    if finest == "d":
        oldest = await store.fetchone("SELECT MIN(ts) FROM usage_calls")
        return _day_plan(since, until, wall, None if oldest is None or oldest[0] is None else float(oldest[0]))
    segs = segments(since, until, wall, finest)
    return Plan(segs, [(lo, hi, -1) for lo, hi in _edges(since, until, segs)])


def _where(p: Plan) -> tuple[str, list[Any]]:
    parts, params = [], []
    for grain, lo, hi in p.segments:
        parts.append("(grain = ? AND start >= ? AND start < ?)")
        params += [grain, lo, hi]
    return "(" + (" OR ".join(parts) or "0") + ")", params


# A dimension's key read from the raw calls (c JOIN usage_attrs a), as the roll-ups key it; '' is "none".
_RAW_KEY = {
    "total": "'*'",
    "provider": "a.provider",
    "model": "a.model",
    "provider_model": "a.provider || '/' || a.model",
    # NULL (left out) for a call that is not a fallback
    "fallback": "CASE WHEN a.is_fallback AND a.fallback_from != '' THEN a.fallback_from || '>' || a.provider END",
}
# Dimensions a call may carry no value for (department, agent, ...): they get a "(no department)" row.
OPTIONAL_DIMS = tuple(d for d, (key, where) in DIM_SQL.items() if where == f"{key} IS NOT NULL")


def none_key(dim: str) -> str:
    """The row of calls that carry no value for an optional dimension: '(no department)'."""
    return f"(no {dim})"


def _raw_key(dim: str) -> str:
    if dim in OPTIONAL_DIMS:
        return f"COALESCE(NULLIF(a.{dim}, ''), '{none_key(dim)}')"
    return _RAW_KEY[dim]


def _bounds(since: float, until: float) -> tuple[float, float] | None:
    segs = segments(since, until)
    return (segs[0][1], segs[-1][2]) if segs else None


QUANTILES = (0.5, 0.95)


@dataclass(frozen=True)
class _Want:
    """Where one group's quantile lies: its rank among the calls in histogram bucket (lo, hi]."""

    key: str
    q: float
    lo: float
    hi: float
    rank: int  # 1-based within the bucket
    in_bucket: int  # the bucket's count in the roll-ups: the raw calls must all be there to be exact


def _locate(key: str, hist: Sequence[int], q: float) -> _Want | None:
    """Nearest rank ceil(q*n) over the histogram's n calls: which bucket holds it, and its rank there."""
    n = sum(hist)
    if not n:
        return None
    target = max(1, math.ceil(q * n - 1e-9))
    running = 0
    for i, c in enumerate(hist):
        if c and running + c >= target:
            lo = -math.inf if i == 0 else float(LATENCY_BOUNDS_MS[i - 1])
            hi = float(LATENCY_BOUNDS_MS[i]) if i < len(LATENCY_BOUNDS_MS) else math.inf
            return _Want(key, q, lo, hi, target - running, c)
        running += c
    return None


async def _exact_quantiles(
    store: Store, dim: str, since: float, until: float, hists: dict[str, list[int]]
) -> dict[tuple[str, float], float]:
    """{(key, q): latency} by nearest rank over the raw calls. The roll-ups' histogram says which bucket
    each rank falls in and how many calls lie below it, so only that bucket's calls are sorted; a figure
    is given only where the raw calls of that bucket are all still there (not yet past retention).
    The histograms cover [since, until) exactly (the buckets' parts outside it subtracted), so do the calls."""
    bounds = (since, math.nextafter(until, math.inf)) if _bounds(since, until) else None
    wants = [w for key, hist in hists.items() for q in QUANTILES if (w := _locate(key, hist, q)) is not None]
    if bounds is None or not wants:
        return {}
    # Only calls in a wanted bucket leave SQLite (at most 16 distinct buckets).
    buckets = sorted({(w.lo, w.hi) for w in wants})
    in_buckets = " OR ".join("(latency_ms > ? AND latency_ms <= ?)" for _ in buckets)
    bucket_params = [x if math.isfinite(x) else math.copysign(1e300, x) for pair in buckets for x in pair]
    # A range holding much of the table is read faster straight through than by the ts index (whose
    # every hit is a random lookup of the row): measured 16 vs 130 ms for 100k calls.
    in_range = sum(sum(h) for h in hists.values())
    largest = await store.fetchone("SELECT MAX(id) FROM usage_calls")
    scan = " NOT INDEXED" if largest and largest[0] and in_range * 8 > int(largest[0]) else ""
    rows = await store.fetchall(
        f"SELECT attrs, latency_ms FROM usage_calls{scan} WHERE ts >= ? AND ts < ? AND ({in_buckets})",
        [bounds[0], bounds[1], *bucket_params],
    )
    # Each group as the attribution ids it is made of — only those the range's calls use: with varied
    # attribution (users, agents) usage_attrs holds ~one row per few calls, and reading all of it for
    # every snapshot cost 300 ms at 200k calls. The scan above joins on an integer, never a key per call.
    by_attr: dict[int, list[int]] = {}
    used = sorted({int(r[0]) for r in rows})
    if used:
        wanted_by_key: dict[str, list[int]] = {}
        for i, w in enumerate(wants):
            wanted_by_key.setdefault(w.key, []).append(i)
        for attr_id, key in await store.fetchall(
            f"SELECT a.id, {_raw_key(dim)} FROM usage_attrs a WHERE a.id IN (SELECT value FROM json_each(?))",
            [json.dumps(used)],
        ):
            if key in wanted_by_key:
                by_attr[int(attr_id)] = wanted_by_key[key]
    found: list[list[float]] = [[] for _ in wants]
    for attr_id, ms in rows:
        for i in by_attr.get(attr_id, ()):
            w = wants[i]
            if w.lo < ms <= w.hi:
                found[i].append(ms)
    out: dict[tuple[str, float], float] = {}
    for w, values in zip(wants, found, strict=True):
        if len(values) == w.in_bucket:  # every call of the bucket is still there: the rank is exact
            values.sort()
            out[(w.key, w.q)] = float(values[w.rank - 1])
    return out


async def average_latencies(store: Store, dim: str, since: float, until: float, rows: Sequence[GroupRow]) -> None:
    """Set each row's avg_latency_ms from the raw calls, where every timed call of the group is still
    kept (the roll-ups' histogram count must match): an average over part of a group would be a guess.
    The rows cover [since, until] exactly (breakdown subtracts the buckets' parts outside it)."""
    bounds = (since, math.nextafter(until, math.inf)) if _bounds(since, until) else None
    if bounds is None or not rows:
        return
    per_attr = await store.fetchall(
        "SELECT attrs, COUNT(latency_ms), TOTAL(latency_ms) FROM usage_calls WHERE ts >= ? AND ts < ? GROUP BY attrs",
        bounds,
    )
    keys: dict[int, str] = {}  # only the attributions the range uses (usage_attrs can be large)
    for attr_id, key in await store.fetchall(
        f"SELECT a.id, {_raw_key(dim)} FROM usage_attrs a WHERE a.id IN (SELECT value FROM json_each(?))",
        [json.dumps([int(r[0]) for r in per_attr])],
    ):
        keys[int(attr_id)] = key
    sums: dict[str, list[float]] = {}
    for attr_id, timed, total_ms in per_attr:
        key = keys.get(int(attr_id))
        if key is not None:
            acc = sums.setdefault(key, [0, 0.0])
            acc[0] += timed
            acc[1] += total_ms
    for g in rows:
        timed, total_ms = sums.get(g.key, (0, 0.0))
        if timed and timed == g.timed:
            g.avg_latency_ms = total_ms / timed


def _use_exact(rows: list[GroupRow], exact: dict[tuple[str, float], float]) -> None:
    for g in rows:
        if (g.key, 0.95) in exact:
            g.p95_ms, g.p95_exact = exact[(g.key, 0.95)], True
        if (g.key, 0.5) in exact:
            g.p50_ms = exact[(g.key, 0.5)]


def _edges(since: float, until: float, segs: list[tuple[str, float, float]]) -> list[tuple[float, float]]:
    """The parts of the roll-up buckets covering [since, until) that lie outside it: the start of the
    first minute (hour, past the minute roll-ups) before `since`, the end of the last after `until`."""
    if not segs:
        return []
    bounds = (segs[0][1], segs[-1][2])
    # A call stamped exactly `until` counts (the range ends now, and now's calls are in it).
    after = math.nextafter(until, math.inf)
    return [(lo, hi) for lo, hi in ((bounds[0], since), (after, bounds[1])) if hi > lo]


_EDGE_SUMS = ", ".join(
    [
        "COUNT(*)",
        "TOTAL(a.status = 'error')",
        "TOTAL(a.is_fallback)",
        "TOTAL(c.input_tokens)",
        "TOTAL(c.output_tokens)",
        "TOTAL(c.cache_read_tokens)",
        f"TOTAL(c.cost_nusd) / {NANO_USD}",
        "COUNT(*) - COUNT(c.cost_nusd)",
        f"TOTAL(c.latency_ms <= {LATENCY_BOUNDS_MS[0]})",
        *(f"TOTAL(c.latency_ms > {lo} AND c.latency_ms <= {hi})" for lo, hi in itertools.pairwise(LATENCY_BOUNDS_MS)),
        f"TOTAL(c.latency_ms > {LATENCY_BOUNDS_MS[-1]})",
    ]
)


async def _raw_sums(store: Store, dim: str, p: Plan, key: str | None = None) -> dict[str, list[float]]:
    """Per key, the roll-up columns of the plan's raw parts, signed, from the raw calls (while kept):
    added to the buckets' sums, they make a range exact to the second — "24h" is the last 86,400 s, not
    from the start of a minute (or hour, or day) before it."""
    if dim not in _RAW_KEY and dim not in OPTIONAL_DIMS:
        return {}
    out: dict[str, list[float]] = {}
    for lo, hi, sign in p.raw:
        for k, sums in (await _part_sums(store, dim, lo, hi, key)).items():
            acc = out.setdefault(k, [0.0] * len(sums))
            for i, v in enumerate(sums):
                acc[i] += sign * v
    return out


# A past part's sums, remembered: a budget scoped to a user, in a time zone whose midnight is not UTC's,
# reads the same hours of raw calls at its period's start on every snapshot (measured 10-58 ms a budget
# at 25,000 calls a day). Calls are only ever added (roll-ups and calls in one transaction), so the hour
# roll-ups' request count over the part, with the oldest kept call (pruning), says whether it changed.
_PART_CACHE: collections.OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], dict[str, list[float]]]] = (
    collections.OrderedDict()
)
PART_CACHE_SIZE = 512


async def _part_version(store: Store, lo: float, hi: float) -> tuple[Any, ...]:
    """Changes whenever a call in [lo, hi) is stored or pruned (read before the part's calls: a batch
    landing between the two reads only makes the next read miss)."""
    hours = await store.fetchone(
        "SELECT TOTAL(requests), COUNT(*) FROM usage_rollups WHERE grain = 'h' AND dim = 'total' AND key = '*' "
        "AND start >= ? AND start < ?",
        (lo - lo % 3600, -(-hi // 3600) * 3600),
    )
    oldest = await store.fetchone("SELECT MIN(ts) FROM usage_calls")
    return (*(tuple(hours) if hours else ()), oldest[0] if oldest else None)


async def _part_sums(store: Store, dim: str, lo: float, hi: float, key: str | None) -> dict[str, list[float]]:
    """Per key, the roll-up columns of the raw calls in [lo, hi) (for one key, or all)."""
    # wholly past (a call for "now" may still be on its way) and long enough to be worth it
    cached = hi <= time.time() - 60 and hi - lo >= 3600
    if cached:
        name = (str(store.path), dim, key, lo, hi)
        version = await _part_version(store, lo, hi)
        hit = _PART_CACHE.get(name)
        if hit is not None and hit[0] == version:
            _PART_CACHE.move_to_end(name)
            return hit[1]
    key_sql = _raw_key(dim)
    only = f" AND {key_sql} = ?" if key is not None else ""
    rows = await store.fetchall(
        f"SELECT {key_sql}, {_EDGE_SUMS} FROM usage_calls c JOIN usage_attrs a ON a.id = c.attrs "
        f"WHERE c.ts >= ? AND c.ts < ?{only} GROUP BY 1",
        [lo, hi, *([key] if key is not None else [])],
    )
    out = {r[0]: [float(v or 0) for v in tuple(r)[1:]] for r in rows if r[0] is not None}
    if cached:
        _PART_CACHE[name] = (version, out)
        while len(_PART_CACHE) > PART_CACHE_SIZE:
            _PART_CACHE.popitem(last=False)
    return out


_COST = 7  # the one float column of a roll-up row as read here (key first)


def _plus(r: Any, delta: list[float] | None, *, hist: bool = True) -> list[Any]:
    """A roll-up row with the plan's raw parts applied (`hist=False`: the row carries no histogram)."""
    row = [r[0]] + [float(r[i] or 0.0) if i == _COST else int(r[i] or 0) for i in range(1, len(r))]
    if delta:
        for i, v in enumerate(delta, start=1):
            if hist or i < 9:
                row[i] += v if i == _COST else round(v)
    return row


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
        p50_ms=p95_from_hist(hist, 0.5),
        timed=sum(hist),
    )


def _hist(r: Any) -> list[int]:
    return [int(v or 0) for v in r[9 : 9 + BUCKETS]]


# A roll-up row of a key no bucket holds: integer counts, the cost (index 7) a float.
_ZERO = [0.0 if i == _COST - 1 else 0 for i in range(8 + BUCKETS)]
_SUMS = (
    "SUM(requests), SUM(errors), SUM(fallbacks), SUM(input_tokens), SUM(output_tokens), "
    f"SUM(cache_read_tokens), SUM(cost_usd), SUM(unknown_price), {HIST}"
)


async def breakdown(
    store: Store,
    by: str,
    since: float,
    until: float,
    filters: Any = None,
    *,
    latency: bool = True,
    exact_calls_max: int | None = None,
    usage_api: Collection[str] = (),
) -> list[GroupRow]:
    """Usage in [since, until) grouped by one dimension, most expensive first. The rows add up to the
    total: for an optional dimension (department, agent, user, task_type) the calls that carry none are
    a row of their own, '(no department)'. `latency=False` skips the exact percentiles;
    `exact_calls_max`: past that many calls in the range, the percentiles are the histogram's estimate
    (`p95_exact` False) — what something asked every second uses to stay fast at any volume.
    `usage_api`: providers counted by their own usage reports instead of their recorded calls (their
    `[usage_api.<provider>] budgets = "usage_api"`, see usage_api_deltas): requests (where the report
    counts them), tokens and cost by the report, attributed through the config's project and key
    mapping; success rate and latency stay the recorded calls' (a report has none)."""
    if by not in BY_CHOICES and by != "total":
        raise ValueError(f"by: found {by!r}; expected one of {', '.join(BY_CHOICES)}")
    if filters:
        raise ValueError("filters are not supported by the roll-ups; group by one dimension")
    p = await plan(store, by, since, until)
    where, params = _where(p)
    stored: list[Any] = await store.fetchall(
        f"SELECT key, {_SUMS} FROM usage_rollups WHERE dim = ? AND {where} GROUP BY key", [by, *params]
    )
    raw = await _raw_sums(store, by, p)
    # Keys only the raw parts hold (a user whose calls are all in today's partial day) count too; the
    # calls without one are the rest of the total (below), never a row of their own from the raw parts.
    raw.pop(none_key(by), None)
    stored = [*stored, *([key, *_ZERO] for key in sorted(raw.keys() - {r[0] for r in stored}))]
    rows = [row for r in stored if (row := _plus(r, raw.get(r[0])))[1] > 0]
    if by in OPTIONAL_DIMS:
        whole_plan = await plan(store, "total", since, until)
        whole_where, whole_params = _where(whole_plan)
        stored_whole = await store.fetchone(
            f"SELECT '*', {_SUMS} FROM usage_rollups WHERE dim = 'total' AND key = '*' AND {whole_where}",
            whole_params,
        )
        whole = (
            _plus(stored_whole, (await _raw_sums(store, "total", whole_plan)).get("*"))
            if stored_whole is not None
            else None
        )
        if whole is not None and int(whole[1] or 0) > sum(int(r[1]) for r in rows):
            # The total minus the named rows, column by column (histogram included).
            rest = [none_key(by)] + [(whole[i] or 0) - sum((r[i] or 0) for r in rows) for i in range(1, len(whole))]
            rows.append(rest)
    recorded = {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}
    if usage_api:
        rows = _swap_in([list(r) for r in rows], await usage_api_deltas(store, by, since, until, usage_api))
    out = [_row(r[0], r) for r in rows]
    for g in out:
        # errors, fallbacks and latency exist only for recorded calls: the success rate is theirs
        requests, errors = recorded.get(g.key, (0, 0))
        g.success_rate = (requests - errors) / requests if requests else None
    hists = {r[0]: _hist(r) for r in rows}
    if latency and out and (exact_calls_max is None or sum(g.timed for g in out) <= exact_calls_max):
        _use_exact(out, await _exact_quantiles(store, by, since, until, hists))
    out.sort(key=lambda g: (-g.cost_usd, -g.requests, g.key))
    return out


# Which provider_usage column holds each dimension's key. The usage reports know no user, task type or
# category: that usage is '(no user)' and so on; department and agent come from the config's mapping.
def _report_key(dim: str) -> str:
    if dim in ("department", "agent"):
        return f"COALESCE(NULLIF({dim}, ''), '{none_key(dim)}')"
    if dim in OPTIONAL_DIMS:
        return f"'{none_key(dim)}'"
    return {
        "total": "'*'",
        "provider": "provider_id",
        "model": "model",
        "provider_model": "provider_id || '/' || model",
    }[dim]


@dataclass
class UsageApiDelta:
    """For one group: what replacing some providers' recorded calls with their own usage reports changes
    (the report's figures minus the recorded calls'). Requests change only for a provider whose report
    counts them (OpenAI's does, Anthropic's does not: there the recorded calls' count stays)."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    unknown_price: int = 0


async def usage_api_deltas(
    store: Store, dim: str, since: float, until: float, providers: Collection[str], key: str | None = None
) -> dict[str, UsageApiDelta]:
    """Per group of `dim` (or only `key`): the change that counts `providers` by their usage reports
    instead of their recorded calls — what `[usage_api.<provider>] budgets = "usage_api"` means for
    budgets and breakdowns alike, so the same traffic is never counted twice.

    The recorded side is the roll-ups for the total and per provider, else the raw calls in [since,
    until] (while kept: `[storage] retention`); the report side is the buckets
    whose start falls in [since, until). A bucket-group of unknown price counts as its requests (one,
    where the report counts none)."""
    out: dict[str, UsageApiDelta] = {}
    if not providers:
        return out
    names = sorted(providers)
    marks = ", ".join("?" for _ in names)
    only_rec = f" AND {_raw_key(dim)} = ?" if key is not None else ""
    only_rep = f" AND {_report_key(dim)} = ?" if key is not None else ""
    keyed = [key] if key is not None else []
    reported = await store.fetchall(
        f"SELECT provider_id, {_report_key(dim)}, SUM(requests), COUNT(requests), TOTAL(input_tokens), "
        "TOTAL(output_tokens), TOTAL(cache_read_tokens), TOTAL(cost_usd), "
        "TOTAL(CASE WHEN cost_usd IS NULL THEN COALESCE(requests, 1) END) "
        f"FROM provider_usage WHERE provider_id IN ({marks}) AND bucket_start >= ? AND bucket_start < ?{only_rep} "
        "GROUP BY 1, 2",
        [*names, since, until, *keyed],
    )
    counts_requests = {str(r[0]) for r in reported if r[3]}
    for pid in names:
        if pid not in counts_requests and not any(r[0] == pid for r in reported):
            # nothing reported in the range: whether its report counts requests, its other buckets say
            row = await store.fetchone(
                "SELECT 1 FROM provider_usage WHERE provider_id = ? AND requests IS NOT NULL LIMIT 1", [pid]
            )
            if row is not None:
                counts_requests.add(pid)
    for pid, k, req, _, tin, tout, tcr, cost, unknown in reported:
        d = out.setdefault(str(k), UsageApiDelta())
        if pid in counts_requests:
            d.requests += int(req or 0)
        d.input_tokens += int(tin)
        d.output_tokens += int(tout)
        d.cache_read_tokens += int(tcr)
        d.cost_usd += float(cost)
        d.unknown_price += int(unknown)
    recorded_calls: list[Any]
    if dim in ("total", "provider"):
        # a provider's own totals are in the roll-ups: no raw call read (the dashboard asks every second)
        recorded_calls = []
        for pid in names:
            k = "*" if dim == "total" else pid
            if key is None or key == k:
                g = await total(store, since, until, "provider", pid)
                sums = (g.requests, g.input_tokens, g.output_tokens, g.cache_read_tokens, g.cost_usd)
                recorded_calls.append((pid, k, *sums, g.unknown_price_count))
    else:
        recorded_calls = await store.fetchall(
            f"SELECT a.provider, {_raw_key(dim)}, COUNT(*), TOTAL(c.input_tokens), TOTAL(c.output_tokens), "
            f"TOTAL(c.cache_read_tokens), TOTAL(c.cost_nusd) / {NANO_USD}, COUNT(*) - COUNT(c.cost_nusd) "
            "FROM usage_calls c JOIN usage_attrs a ON a.id = c.attrs "
            f"WHERE a.provider IN ({marks}) AND c.ts >= ? AND c.ts < ?{only_rec} GROUP BY 1, 2",
            [*names, since, math.nextafter(until, math.inf), *keyed],
        )
    for pid, k, n, tin, tout, tcr, cost, unknown in recorded_calls:
        d = out.setdefault(str(k), UsageApiDelta())
        if pid in counts_requests:
            d.requests -= int(n)
        d.input_tokens -= int(tin)
        d.output_tokens -= int(tout)
        d.cache_read_tokens -= int(tcr)
        d.cost_usd -= float(cost)
        d.unknown_price -= int(unknown)
    return out


def _swap_in(rows: list[list[Any]], deltas: dict[str, UsageApiDelta]) -> list[list[Any]]:
    """Roll-up rows (key, requests, errors, fallbacks, input, output, cache read, cost, unknown, l0..)
    with the deltas added; a group only a usage report knows gets a row; one left with nothing, none."""
    by_key = {r[0]: r for r in rows}
    for k, d in deltas.items():
        r = by_key.get(k)
        if r is None:
            r = by_key[k] = [k, *_ZERO]
            rows.append(r)
        r[1] += d.requests
        r[4] += d.input_tokens
        r[5] += d.output_tokens
        r[6] += d.cache_read_tokens
        r[7] += d.cost_usd
        r[8] += d.unknown_price
    return [r for r in rows if r[1] > 0 or r[4] + r[5] > 0]


async def total(
    store: Store,
    since: float,
    until: float,
    dim: str = "total",
    key: str = "*",
    latency: bool = False,
    usage_api: Collection[str] = (),
) -> GroupRow:
    """One group's totals; `latency` also reads the histogram for its p95 (budgets do not need it);
    `usage_api` as in breakdown."""
    p = await plan(store, dim, since, until)
    where, params = _where(p)
    hist = HIST if latency else ", ".join("0" for _ in range(BUCKETS))
    stored = await store.fetchone(
        f"SELECT ?, SUM(requests), SUM(errors), SUM(fallbacks), SUM(input_tokens), SUM(output_tokens), "
        f"SUM(cache_read_tokens), SUM(cost_usd), SUM(unknown_price), {hist} FROM usage_rollups "
        f"WHERE dim = ? AND key = ? AND {where}",
        [key, dim, key, *params],
    )
    r = _plus(stored, (await _raw_sums(store, dim, p, key)).get(key), hist=latency)
    requests, errors = int(r[1] or 0), int(r[2] or 0)
    if usage_api:
        (r,) = _swap_in([list(r)], await usage_api_deltas(store, dim, since, until, usage_api, key)) or [[key, *_ZERO]]
    row = _row(key, r)
    row.success_rate = (requests - errors) / requests if requests else None
    if latency and row.requests and dim in (*_RAW_KEY, *OPTIONAL_DIMS):
        _use_exact([row], await _exact_quantiles(store, dim, since, until, {key: _hist(r)}))
    return row


async def daily_by(store: Store, by: str, since: float, until: float) -> list[tuple[float, str, int, int, float]]:
    """(UTC day start, key, requests, tokens, cost) per day from the day roll-ups."""
    rows = await store.fetchall(
        "SELECT start, key, requests, input_tokens + output_tokens, cost_usd FROM usage_rollups "
        "WHERE grain = 'd' AND dim = ? AND start >= ? AND start < ? ORDER BY start, key",
        (by, since - since % 86400, until),
    )
    return [(float(r[0]), r[1], int(r[2]), int(r[3]), float(r[4])) for r in rows]


async def daily_totals(
    store: Store, since: float, until: float, usage_api: Collection[str] = ()
) -> list[tuple[float, int, float]]:
    """(UTC day start, requests, cost) for each day of [since, until), each clipped to the range — so
    the first and last days count only their part inside it and the rows add up to the range's total
    (`usage_api` as in breakdown)."""
    out: list[tuple[float, int, float]] = []
    day = since - since % 86400
    while day < until:
        part = await total(store, max(day, since), min(day + 86400, until), usage_api=usage_api)
        out.append((day, part.requests, part.cost_usd))
        day += 86400
    return out


@dataclass(frozen=True)
class BucketSums:
    start: float  # the UTC hour or day the figures belong to
    key: str
    requests: int
    tokens: int  # input + output
    cost_usd: float


async def series(store: Store, dim: str, since: float, until: float, width: float) -> list[BucketSums]:
    """Per UTC hour (`width` 3600) or day (86400) and key, `dim`'s figures over [since, until) to the
    second: whole buckets from the roll-ups of that grain, the parts of the first and last bucket inside
    the range from the raw calls (while kept). Reading the first bucket whole counted what came before
    `since`: "24h" showed the hour before it, and its weekdays and days did not add up to the total."""
    grain = {3600.0: "h", 86400.0: "d"}[float(width)]
    after = math.nextafter(until, math.inf)  # a call stamped exactly `until` counts
    first_whole, end_whole = -(-since // width) * width, until - until % width
    sums: dict[tuple[float, str], list[float]] = {}
    if grain not in DIM_GRAINS[dim]:  # not rolled up at that grain: every bucket from the raw calls
        parts = [(max(since, b), min(after, b + width)) for b in _starts(since, until, width)]
    elif first_whole >= after:  # inside one bucket
        parts = [(since, after)]
    else:
        for start, key, requests, tokens, cost in await store.fetchall(
            "SELECT start, key, requests, input_tokens + output_tokens, cost_usd FROM usage_rollups "
            "WHERE grain = ? AND dim = ? AND start >= ? AND start < ?",
            (grain, dim, first_whole, end_whole),
        ):
            sums[(float(start), str(key))] = [float(requests), float(tokens), float(cost)]
        parts = [(since, first_whole), (end_whole, after)]
    for lo, hi in parts:
        if hi <= lo:
            continue
        if grain == "d" and "h" in DIM_GRAINS[dim]:  # a partial day: its whole hours rolled up, the rest raw
            for b in await series(store, dim, lo, math.nextafter(hi, -math.inf), 3600):
                acc = sums.setdefault((lo - lo % width, b.key), [0.0, 0.0, 0.0])
                acc[0] += b.requests
                acc[1] += b.tokens
                acc[2] += b.cost_usd
            continue
        for key, raw in (await _part_sums(store, dim, lo, hi, None)).items():
            if dim in OPTIONAL_DIMS and key == none_key(dim):
                continue  # as in the roll-ups, which keep no row for calls without one
            acc = sums.setdefault((lo - lo % width, key), [0.0, 0.0, 0.0])
            acc[0] += raw[0]
            acc[1] += raw[3] + raw[4]
            acc[2] += raw[_COST - 1]
    return [
        BucketSums(start, key, int(v[0]), int(v[1]), v[2]) for (start, key), v in sorted(sums.items()) if v[0] or v[2]
    ]


def _starts(since: float, until: float, width: float) -> list[float]:
    first = since - since % width
    return [first + width * i for i in range(int((until - first) // width) + 1) if first + width * i <= until]


async def hourly_totals(store: Store, since: float, until: float) -> list[tuple[float, int, float]]:
    """(hour start, requests, cost) for the whole traffic — the busiest hours and the burn rate; the
    first and last hour count only their part inside [since, until)."""
    return [(b.start, b.requests, b.cost_usd) for b in await series(store, "total", since, until, 3600)]


# The collector keeps the health window's traffic itself, exact at any volume (usage.traffic_window),
# and publishes it; this read is what is left for a viewer on a database no collector ever published to
# (and for a collector whose window overflowed). Its percentiles are exact (nearest rank over the raw
# calls) up to this many calls in the window and the roll-ups' histogram estimate beyond (`p95_exact`
# False, shown "≈"): the exact ones read every call of the window (0.5 ms per 1,000).
HEALTH_EXACT_CALLS_MAX = 10_000


async def provider_request_stats(store: Store, since: float, until: float) -> dict[str, RequestStats]:
    """Real traffic per provider from the roll-ups, where no collector published its exact figures (see
    HEALTH_EXACT_CALLS_MAX), for the health model and the alert rules. The window is exact to the
    second, except that its first, partial minute is left out when it holds more than
    HEALTH_EXACT_CALLS_MAX calls: the part before `since` is taken off from the raw calls, and at tens of
    thousands of calls a second that minute alone is a million rows to read every round."""
    first_minute = since - since % 60
    if since > first_minute:
        heavy = await store.fetchone(
            "SELECT requests FROM usage_rollups WHERE grain = 'm' AND dim = 'total' AND key = '*' AND start = ?",
            [first_minute],
        )
        if heavy is not None and int(heavy[0] or 0) > HEALTH_EXACT_CALLS_MAX:
            since = first_minute + 60
    return {
        g.key: RequestStats(
            g.requests,
            g.errors,
            (g.errors / g.requests) if g.requests else None,
            g.p95_ms,
            g.fallbacks,
            g.p50_ms,
            g.p95_exact,
        )
        for g in await breakdown(store, "provider", since, until, exact_calls_max=HEALTH_EXACT_CALLS_MAX)
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


async def usage_summary(
    store: Store, now: float, tz: str | ZoneInfo = "UTC", usage_api: Collection[str] = ()
) -> UsageSummary:
    """Today's and this month's requests and cost (`usage_api` as in breakdown), the last 24 h's."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    today = await total(store, period_start(now, "day", zone), now, usage_api=usage_api)
    month = await total(store, period_start(now, "month", zone), now, usage_api=usage_api)
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
    rows = await breakdown(
        store, "provider_model", since, until if until is not None else since + 10 * 365 * 86400, latency=False
    )
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
    p = await plan(store, "fallback", since, until)
    where, params = _where(p)
    counts = {
        str(r[0]): int(r[1])
        for r in await store.fetchall(
            f"SELECT key, SUM(requests) FROM usage_rollups WHERE dim = 'fallback' AND {where} GROUP BY key", params
        )
    }
    for key, sums in (await _raw_sums(store, "fallback", p)).items():
        counts[key] = counts.get(key, 0) + round(sums[0])
    ranked = sorted(((n, key) for key, n in counts.items() if n > 0), key=lambda t: (-t[0], t[1]))
    return [(key.split(">", 1)[0], key.split(">", 1)[1], n) for n, key in ranked]


async def prune_usage(store: Store, now: float, retention_s: float) -> int:
    """Drop raw records past retention and minute roll-ups past two days; hour and day roll-ups stay.
    In bounded chunks, each its own short write: a week of records at once held the write lock for
    seconds while every other writer waited on the busy timeout."""
    from llmpulse.core.health_state import delete_in_chunks

    # Never the largest id: usage_calls has no AUTOINCREMENT, so SQLite would give that id again to the
    # next call, and the collector's traffic window (which reads the ids above the largest it has seen)
    # would miss it. That one old call goes with the next prune after a newer one arrives.
    removed = await delete_in_chunks(
        store, "usage_calls", "ts < ? AND id < (SELECT MAX(id) FROM usage_calls)", (now - retention_s,)
    )
    # Attributions no kept call refers to (last used before the cut-off): the roll-ups keep their names.
    await delete_in_chunks(store, "usage_attrs", "last_ts < ?", (now - retention_s,))
    await delete_in_chunks(
        store, "usage_rollups", "grain = 'm' AND start < ?", (now - MINUTE_KEEP_S,), key="grain, dim, start, key"
    )
    return removed


assert set(BY_CHOICES) <= set(DIMS)


@dataclass(frozen=True)
class ReportedCost:
    """What a provider itself said its calls cost (OpenRouter's usage.cost, an imported cost_usd), beside
    our estimate for the same calls — so a price-table gap or a negotiated rate shows instead of hiding."""

    provider: str
    calls: int
    reported_usd: float
    estimated_usd: float | None  # None: some of these calls have no price in our table

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "calls": self.calls,
            "reported_usd": self.reported_usd,
            "estimated_usd": self.estimated_usd,
        }


async def reported_costs(store: Store, since: float, until: float) -> list[ReportedCost]:
    """Per provider, the calls in [since, until) whose provider reported a cost (raw records: the few
    that carry one are found through a partial index)."""
    rows = await store.fetchall(
        f"SELECT a.provider, COUNT(*), TOTAL(c.reported_cost_usd), TOTAL(c.cost_nusd) / {NANO_USD}, COUNT(c.cost_nusd) "
        "FROM usage_calls c JOIN usage_attrs a ON a.id = c.attrs "
        "WHERE c.reported_cost_usd IS NOT NULL AND c.ts >= ? AND c.ts < ? GROUP BY a.provider ORDER BY a.provider",
        (since, until),
    )
    return [ReportedCost(p, int(n), float(rep), float(est) if priced == n else None) for p, n, rep, est, priced in rows]
