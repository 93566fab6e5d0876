"""Totals that only ever grow, for Prometheus counters and histograms: pruning raw rows never lowers them.

Usage counters come from the hour and day roll-ups, which pruning keeps (it drops raw calls and minute
roll-ups only). Probe latency has no such roll-up — raw probes are pruned after days — so each probe
round also adds to `probe_latency_totals` (one row per provider: a count, a sum and non-cumulative
bucket counts), in the same transaction that stores the probes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llmpulse.core.store import Store

DAY_S = 86400.0
# Upper bounds in seconds, the same as the usage roll-ups' latency buckets (usage/rollup.py), plus +Inf.
PROBE_BUCKETS_S: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0)
_COLUMNS = [f"b{i}" for i in range(len(PROBE_BUCKETS_S) + 1)]


@dataclass(frozen=True)
class LatencyTotals:
    count: int
    sum_s: float
    buckets: tuple[int, ...]  # non-cumulative, one per PROBE_BUCKETS_S bound and a last one for +Inf

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as a Prometheus histogram has them, "+Inf" last."""
        out, running = [], 0
        for bound, n in zip((*(f"{b:g}" for b in PROBE_BUCKETS_S), "+Inf"), self.buckets, strict=True):
            running += n
            out.append((bound, running))
        return out


async def add_probe_latency(conn: Any, results: Iterable[Any]) -> None:
    """Add a round's answered probes (a latency and an HTTP status, as the minute summaries count them)."""
    acc: dict[str, list[float]] = {}
    for r in results:
        if r.latency_ms is None or not r.http_status:
            continue
        seconds = r.latency_ms / 1000.0
        row = acc.setdefault(r.provider_id, [0, 0.0] + [0] * len(_COLUMNS))
        row[0] += 1
        row[1] += seconds
        row[2 + bisect.bisect_left(PROBE_BUCKETS_S, seconds)] += 1
    if not acc:
        return
    names = ", ".join(_COLUMNS)
    marks = ", ".join("?" for _ in range(len(_COLUMNS) + 3))
    adds = ", ".join(f"{c} = {c} + excluded.{c}" for c in ("count", "sum_s", *_COLUMNS))
    await conn.executemany(
        f"INSERT INTO probe_latency_totals (provider_id, count, sum_s, {names}) VALUES ({marks}) "
        f"ON CONFLICT(provider_id) DO UPDATE SET {adds}",
        [(pid, *row) for pid, row in acc.items()],
    )


async def probe_latency_totals(store: Store) -> dict[str, LatencyTotals]:
    rows = await store.fetchall(f"SELECT provider_id, count, sum_s, {', '.join(_COLUMNS)} FROM probe_latency_totals")
    return {
        r["provider_id"]: LatencyTotals(int(r["count"]), float(r["sum_s"]), tuple(int(r[c]) for c in _COLUMNS))
        for r in rows
    }


@dataclass(frozen=True)
class UsageTotals:
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float


_USAGE_SUMS = (
    "SELECT key, SUM(requests), SUM(errors), SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), "
    "SUM(cache_write_tokens), SUM(cost_usd) FROM usage_rollups WHERE grain = 'd' AND dim = 'provider_model' "
)


async def usage_totals(
    store: Store, since: float | None = None, until: float | None = None
) -> dict[tuple[str, str], UsageTotals]:
    """Totals per (provider, model) from the day roll-ups (kept forever; one row a day a pair): all time,
    or the days starting in [since, until)."""
    rows = await store.fetchall(
        _USAGE_SUMS + "AND start >= ? AND start < ? GROUP BY key",
        (-1e18 if since is None else since, 1e18 if until is None else until),
    )
    out: dict[tuple[str, str], UsageTotals] = {}
    for r in rows:
        provider, _, model = str(r[0]).partition("/")  # provider ids have no "/"; model names may
        requests, errors, inp, out_tokens, cache_read, cache_write = (int(v or 0) for v in tuple(r)[1:7])
        out[(provider, model)] = UsageTotals(
            requests, errors, inp, out_tokens, cache_read, cache_write, float(r[7] or 0.0)
        )
    return out


def _add(a: UsageTotals, b: UsageTotals) -> UsageTotals:
    return UsageTotals(
        a.requests + b.requests,
        a.errors + b.errors,
        a.input_tokens + b.input_tokens,
        a.output_tokens + b.output_tokens,
        a.cache_read_tokens + b.cache_read_tokens,
        a.cache_write_tokens + b.cache_write_tokens,
        a.cost_usd + b.cost_usd,
    )


class UsageTotalsCache:
    """All-time usage totals for a scrape every few seconds without summing every day each time.

    Days before yesterday are "settled": summed once and kept; each read sums only the settled boundary's
    later days (today and yesterday: live traffic lands there). The settled part is summed again when the
    boundary moves to a new day, and every `refresh_s` to pick up an import of old records. Roll-up rows
    only ever grow, so neither refresh can lower a total: counters stay monotonic."""

    def __init__(self, refresh_s: float = 600.0):
        self.refresh_s = refresh_s
        self._boundary: float | None = None
        self._summed_at = float("-inf")
        self._settled: dict[tuple[str, str], UsageTotals] = {}

    async def read(self, store: Store, now: float) -> dict[tuple[str, str], UsageTotals]:
        boundary = (now // DAY_S - 1) * DAY_S  # the start of yesterday (UTC), as the day roll-ups start
        if boundary != self._boundary or now - self._summed_at >= self.refresh_s:
            self._settled = await usage_totals(store, until=boundary)
            self._boundary, self._summed_at = boundary, now
        out = dict(self._settled)
        for key, recent in (await usage_totals(store, since=boundary)).items():
            out[key] = _add(out[key], recent) if key in out else recent
        return out
