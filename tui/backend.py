"""What the dashboard asks of the core, in one place: snapshots to draw, details for the detail screens,
and the user's decisions (acknowledge, silence, resolve, enable/disable, probe now) carried out.

`Backend` is the protocol the app codes against; `llmpulse.tui.core_backend.CoreBackend` implements it with the
real core on a real database. Tests inject a CoreBackend on a temporary database with a ManualClock, or
a fixed one for screenshots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class Backend(Protocol):
    async def snapshot(self) -> Any:
        """A fresh llmpulse.core.snapshot.Snapshot."""

    async def run_collector(self, stop: asyncio.Event, on_round: Callable[[], None]) -> None:
        """Run the collector while this process holds the lease, until `stop` is set or cancelled."""

    async def ack(self, alert_id: int, by: str, note: str | None = None) -> Any:
        """Acknowledge; returns the updated Alert."""

    async def silence(self, alert_id: int, seconds: float, by: str) -> Any: ...

    async def resolve(self, alert_id: int, by: str) -> Any: ...

    async def set_enabled(self, provider_id: str, enabled: bool) -> None: ...

    async def probe_now(self, provider_ids: Sequence[str] | None = None) -> list[Any]:
        """Probe now (all, or the named providers); returns the ProbeResults."""

    async def recent_probes(self, provider_id: str, since: float, limit: int = 50) -> list[Any]: ...

    async def breakdown(self, by: str, since: float, until: float) -> list[Any]: ...

    async def alert_detail(self, alert_id: int) -> tuple[Any, list[Any]]:
        """The alert and its transitions, oldest first; (None, []) when there is no such alert."""

    def with_alerts(self, snapshot: Any, alerts: list[Any]) -> Any:
        """The snapshot with its alert list replaced (an action's result shown before the next poll)."""

    async def close(self) -> None: ...
