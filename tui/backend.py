"""What the dashboard asks of the core, in one place: snapshots to draw, details for the detail screens,
and the user's decisions (acknowledge, silence, resolve, enable/disable, probe now) carried out.

`Backend` is the protocol the app codes against; `llmpulse.tui.core_backend.CoreBackend` implements it with the
real core on a real database. Tests inject a CoreBackend on a temporary database with a ManualClock, or
a fixed one for screenshots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

# The core's types the dashboard draws, named here so panels and screens take them from the Backend
# module (their one way into the core) rather than from the core's modules.
from llmpulse.core.alerts.engine import Alert, Transition
from llmpulse.core.alerts.stats import AlertStats
from llmpulse.core.health import ProviderHealth
from llmpulse.core.health_state import LatencyHistory
from llmpulse.core.migration import MigrationStatus, SideStats
from llmpulse.core.migration.risk import PhaseTarget
from llmpulse.core.probe import ProbeResult
from llmpulse.core.snapshot import CollectorInfo, Header, Snapshot
from llmpulse.core.usage.budgets import BudgetStatus
from llmpulse.core.usage.patterns import WEEKDAYS, Patterns, Trend
from llmpulse.core.usage.queries import GroupRow, UsageSummary

__all__ = [
    "WEEKDAYS",
    "Alert",
    "AlertStats",
    "Backend",
    "BudgetStatus",
    "CollectorInfo",
    "ConfigReload",
    "GroupRow",
    "Header",
    "LatencyHistory",
    "MigrationStatus",
    "Patterns",
    "PhaseTarget",
    "ProbeResult",
    "ProviderHealth",
    "SideStats",
    "Snapshot",
    "Transition",
    "Trend",
    "UsageSummary",
]


@dataclass(frozen=True)
class ConfigReload:
    """What a config reload did, in one line: applied (from the collector's next round) or refused (the
    running config stays) and why."""

    applied: bool
    message: str


class Backend(Protocol):
    async def snapshot(self) -> Snapshot:
        """A fresh snapshot of everything the dashboard draws."""

    async def run_collector(self, stop: asyncio.Event, on_round: Callable[[], None]) -> None:
        """Run the collector while this process holds the lease, until `stop` is set or cancelled."""

    async def ack(self, alert_id: int, by: str, note: str | None = None) -> Alert | None:
        """Acknowledge; returns the updated Alert."""

    async def silence(self, alert_id: int, seconds: float, by: str) -> Alert | None: ...

    async def resolve(self, alert_id: int, by: str) -> Alert | None: ...

    async def unsilence(self, alert_id: int, by: str) -> Alert | None:
        """End a silence early; returns the updated Alert."""

    async def set_enabled(self, provider_id: str, enabled: bool, by: str) -> None:
        """Turn a provider on or off for every process; disabling closes its open alerts (not as
        recovered), recorded as done by `by`."""

    async def probe_now(self, provider_ids: Sequence[str] | None = None) -> list[ProbeResult]:
        """Probe now (all, or the named providers); returns the results."""

    async def recent_probes(self, provider_id: str, since: float, limit: int = 50) -> list[ProbeResult]: ...

    async def breakdown(self, by: str, since: float, until: float) -> list[GroupRow]:
        """Per group of `by`: counts, cost and the efficiency figures (average latency where the raw
        calls are still kept)."""

    async def spend_unknown(self, since: float) -> dict[str, str]:
        """Providers whose budgets count their own usage report while it is not known from `since` on
        (never pulled, last pull failed, too short), each with why: breakdowns leave their spend out."""

    async def usage_patterns(self, by: str, since: float, until: float) -> Patterns:
        """Hour-of-day and weekday profile (budget time zone) and each `by` group's daily trend."""

    async def alert_stats(self, since: float, until: float) -> AlertStats:
        """Alerts opened in [since, until): by rule, severity and subject, time to ack/resolve, deliveries."""

    async def reload_config(self) -> ConfigReload:
        """Load and check the config again; applied from the collector's next round, or refused (the
        running config stays) with its one-line error."""

    async def alert_detail(self, alert_id: int) -> tuple[Alert | None, list[Transition]]:
        """The alert and its transitions, oldest first; (None, []) when there is no such alert."""

    def with_alerts(self, snapshot: Snapshot, alerts: list[Alert]) -> Snapshot:
        """The snapshot with its alert list replaced (an action's result shown before the next poll)."""

    async def latency_history(self, provider_id: str, since: float, until: float, buckets: int) -> LatencyHistory:
        """Probe latency over [since, until) in equal time buckets (gaps where nothing answered)."""
        ...

    def key_variables(self) -> list[tuple[str, str]]:
        """(provider name, environment variable) for each remote provider that has no key yet: what the
        first-run welcome tells the user to set."""

    async def close(self) -> None: ...
