"""Usage patterns over a period, from the hourly and daily roll-ups (and the raw calls of the period's
partial first and last hour or day, so every figure covers exactly the period): when the traffic comes
(hour of day and weekday, in the budget time zone), which models are used most and which grow fastest,
and each group's daily trend.

Hour roll-ups start on whole UTC hours; in a zone whose offset is not whole hours (India, +5:30) an
hour's traffic is counted in the local hour its UTC hour starts in.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from llmpulse.core.store import Store
from llmpulse.core.usage.queries import series

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
TOP = 5


@dataclass(frozen=True)
class Slot:
    """Requests and cost in one hour of the day (0-23) or one weekday (0 = Monday)."""

    slot: int
    requests: int
    cost_usd: float


@dataclass(frozen=True)
class ModelUse:
    model: str  # provider/model
    requests: int
    cost_usd: float
    first_half: int  # requests in the first half of the period
    second_half: int  # ... and in the second
    growth: float | None  # second/first - 1; None: no traffic in the first half (new)


@dataclass(frozen=True)
class Trend:
    """One group's requests and cost per UTC day, oldest first (days with no traffic are 0)."""

    key: str
    days: list[float]
    requests: list[int]
    cost_usd: list[float]


@dataclass
class Patterns:
    timezone: str
    by_hour: list[Slot] = field(default_factory=list)
    by_weekday: list[Slot] = field(default_factory=list)
    most_used: list[ModelUse] = field(default_factory=list)
    fastest_growing: list[ModelUse] = field(default_factory=list)
    trends: list[Trend] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def _hourly(store: Store, dim: str, since: float, until: float) -> list[tuple[float, str, int, float]]:
    return [(b.start, b.key, b.requests, b.cost_usd) for b in await series(store, dim, since, until, 3600)]


def _slots(hours: list[tuple[float, str, int, float]], tz: ZoneInfo) -> tuple[list[Slot], list[Slot]]:
    by_hour: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
    by_day: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
    for start, _, requests, cost in hours:
        local = dt.datetime.fromtimestamp(start, tz)
        for table, slot in ((by_hour, local.hour), (by_day, local.weekday())):
            table[slot][0] += requests
            table[slot][1] += cost
    return (
        [Slot(h, int(by_hour[h][0]), by_hour[h][1]) for h in range(24)],
        [Slot(d, int(by_day[d][0]), by_day[d][1]) for d in range(7)],
    )


def _models(rows: list[tuple[float, str, int, float]], since: float, until: float) -> list[ModelUse]:
    middle = since + (until - since) / 2
    sums: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0, 0])
    for start, key, requests, cost in rows:
        s = sums[key]
        s[0] += requests
        s[1] += cost
        s[2 if start < middle else 3] += requests
    out = []
    for key, (total, cost_sum, first, second) in sums.items():
        growth = None if first == 0 else second / first - 1.0
        out.append(ModelUse(key, int(total), cost_sum, int(first), int(second), growth))
    return out


async def usage_patterns(store: Store, by: str, since: float, until: float, tz: ZoneInfo) -> Patterns:
    """Patterns of [since, until); `by` is the dimension the daily trends are per (report's --by)."""
    totals = await _hourly(store, "total", since, until)
    by_hour, by_weekday = _slots(totals, tz)
    models = _models(await _hourly(store, "provider_model", since, until), since, until)
    most_used = sorted(models, key=lambda m: (-m.requests, m.model))[:TOP]
    # Growth needs traffic in both halves to mean something; a model new in the second half leads.
    growing = [m for m in models if m.second_half > m.first_half]
    fastest = sorted(growing, key=lambda m: (m.growth is not None, -(m.growth or 0.0), -m.second_half, m.model))
    first_day = since - since % 86400
    days = [
        first_day + 86400 * i for i in range(int((until - first_day) // 86400) + 1) if first_day + 86400 * i < until
    ]
    index = {d: i for i, d in enumerate(days)}
    per_key: dict[str, Trend] = {}
    for b in await series(store, by, since, until, 86400):
        trend = per_key.setdefault(b.key, Trend(b.key, days, [0] * len(days), [0.0] * len(days)))
        i = index.get(b.start)
        if i is not None:
            trend.requests[i] += b.requests
            trend.cost_usd[i] += b.cost_usd
    trends = sorted(per_key.values(), key=lambda t: (-sum(t.cost_usd), -sum(t.requests), t.key))
    return Patterns(str(tz), by_hour, by_weekday, most_used, fastest[:TOP], trends)
