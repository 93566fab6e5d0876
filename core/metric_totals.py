"""Totals that only ever grow, for Prometheus counters and histograms: pruning raw rows never lowers them.

Usage counters come from the hour and day roll-ups, which pruning keeps (it drops raw calls and minute
roll-ups only). Probe latency has no such roll-up — raw probes are pruned after days — so each probe
round also adds to `probe_latency_totals` (one row per provider: a count, a sum and non-cumulative
bucket counts), in the same transaction that stores the probes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmpulse.core.store import Store

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


async def usage_totals(store: Store) -> dict[tuple[str, str], UsageTotals]:
    """All-time totals per (provider, model), from the day roll-ups (kept forever; one row a day a pair)."""
    rows = await store.fetchall(
        "SELECT key, SUM(requests), SUM(errors), SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), "
        "SUM(cache_write_tokens), SUM(cost_usd) FROM usage_rollups WHERE grain = 'd' AND dim = 'provider_model' "
        "GROUP BY key"
    )
    out: dict[tuple[str, str], UsageTotals] = {}
    for r in rows:
        provider, _, model = str(r[0]).partition("/")  # provider ids have no "/"; model names may
        requests, errors, inp, out_tokens, cache_read, cache_write = (int(v or 0) for v in tuple(r)[1:7])
        out[(provider, model)] = UsageTotals(
            requests, errors, inp, out_tokens, cache_read, cache_write, float(r[7] or 0.0)
        )
    return out


def by_provider(totals: Mapping[tuple[str, str], UsageTotals]) -> dict[str, int]:
    out: dict[str, int] = {}
    for (provider, _), t in totals.items():
        out[provider] = out.get(provider, 0) + t.requests
    return out
