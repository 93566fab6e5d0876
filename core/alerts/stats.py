"""Alert statistics over a period: what fired, how fast people answered, which rules are noisy, and
how the notices went out — the numbers a team tunes thresholds with and fights alert fatigue with.

An alert belongs to the period it was opened in (`first_seen`). Time to acknowledge runs from its first
sighting to its first `acknowledged` transition; time to resolve from its first sighting to
`resolved_at` — an alert closed because its provider was disabled never resolved, and is left out of
it. Quantiles are exact, by the nearest-rank method (the value at rank ⌈q·n⌉ of the sorted
durations), so every reported figure is a real alert's duration, never an interpolation.
Deliveries belong to the period they were created in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from llmpulse.core.store import Store


def nearest_rank(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0 < q ≤ 1) of already-sorted values by nearest rank; None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class DurationStats:
    count: int
    median_s: float | None
    p90_s: float | None

    @classmethod
    def of(cls, durations: Sequence[float]) -> DurationStats:
        ordered = sorted(durations)
        return cls(len(ordered), nearest_rank(ordered, 0.5), nearest_rank(ordered, 0.9))


@dataclass(frozen=True)
class GroupCount:
    key: str
    alerts: int  # alerts opened in the period
    fired: int  # times those alerts fired, re-fires included


@dataclass(frozen=True)
class ChannelDeliveries:
    channel: str
    sent: int
    failed: int
    held: int
    pending: int  # still sending


@dataclass(frozen=True)
class AlertStats:
    since: float
    until: float
    alerts: int
    by_rule: list[GroupCount]
    by_severity: list[GroupCount]
    by_subject: list[GroupCount]
    time_to_ack: DurationStats
    time_to_resolve: DurationStats
    noisiest_rules: list[GroupCount]
    deliveries: list[ChannelDeliveries] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _groups(rows: Sequence[Any], column: str) -> list[GroupCount]:
    alerts: dict[str, int] = {}
    fired: dict[str, int] = {}
    for row in rows:
        key = str(row[column])
        alerts[key] = alerts.get(key, 0) + 1
        fired[key] = fired.get(key, 0) + int(row["count"])
    groups = [GroupCount(k, alerts[k], fired[k]) for k in alerts]
    return sorted(groups, key=lambda g: (-g.alerts, -g.fired, g.key))


async def alert_stats(store: Store, since: float, until: float, noisiest: int = 5) -> AlertStats:
    """Statistics of the alerts opened in [since, until) and the deliveries created then. Read only."""
    rows = await store.fetchall(
        """
        SELECT a.id, a.rule, a.subject, a.severity, a.count, a.first_seen, a.resolved_at, a.closed_reason,
               (SELECT MIN(t.at) FROM alert_transitions t
                 WHERE t.alert_id = a.id AND t.event = 'acknowledged') AS first_ack_at
        FROM alerts a WHERE a.first_seen >= ? AND a.first_seen < ?
        """,
        (since, until),
    )
    to_ack = [r["first_ack_at"] - r["first_seen"] for r in rows if r["first_ack_at"] is not None]
    to_resolve = [
        r["resolved_at"] - r["first_seen"] for r in rows if r["resolved_at"] is not None and r["closed_reason"] is None
    ]
    by_rule = _groups(rows, "rule")
    # Noisiest: most fires (re-fires of one alert count), then most alerts.
    noisy = sorted(by_rule, key=lambda g: (-g.fired, -g.alerts, g.key))
    delivery_rows = await store.fetchall(
        """
        SELECT channel,
               SUM(status = 'sent') AS sent, SUM(status = 'failed') AS failed,
               SUM(status = 'held') AS held, SUM(status = 'sending') AS pending
        FROM alert_deliveries WHERE created_at >= ? AND created_at < ?
        GROUP BY channel ORDER BY channel
        """,
        (since, until),
    )
    deliveries = [
        ChannelDeliveries(r["channel"], int(r["sent"]), int(r["failed"]), int(r["held"]), int(r["pending"]))
        for r in delivery_rows
    ]
    return AlertStats(
        since=since,
        until=until,
        alerts=len(rows),
        by_rule=by_rule,
        by_severity=_groups(rows, "severity"),
        by_subject=_groups(rows, "subject"),
        time_to_ack=DurationStats.of(to_ack),
        time_to_resolve=DurationStats.of(to_resolve),
        noisiest_rules=noisy[:noisiest],
        deliveries=deliveries,
    )
