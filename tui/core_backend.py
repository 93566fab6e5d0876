"""The Backend the dashboard runs on: the real core on a real database.

Three connections to the one SQLite file, because each has its own job and must not wait on or nest
inside the others' transactions: the collector's (probes, roll-ups, alert engine), the snapshot reader,
and the user's actions (ack/silence/resolve/enable). WAL lets them run side by side.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from llmpulse.core.clock import SYSTEM_CLOCK, Clock
from llmpulse.core.config import Context
from llmpulse.core.store import Store
from llmpulse.tui.backend import (
    Alert,
    AlertStats,
    ConfigReload,
    GroupRow,
    LatencyHistory,
    Patterns,
    ProbeResult,
    Snapshot,
    Transition,
)

if TYPE_CHECKING:
    from llmpulse.core.alerts.engine import AlertEngine
    from llmpulse.core.collector import Collector
    from llmpulse.core.snapshot import SnapshotReader


class CoreBackend:
    def __init__(
        self, ctx: Context, *, clock: Clock = SYSTEM_CLOCK, reload_context: Callable[[], Context] | None = None
    ) -> None:
        """`reload_context` loads and checks the config again, as the command that opened the dashboard
        did (the same --config, --db and --env-file); None: there is nothing to reload (the demo)."""
        self.ctx = ctx
        self.reload_context = reload_context
        self.clock = clock
        self._read: Store | None = None
        self._write: Store | None = None
        self._open_lock = asyncio.Lock()
        self._engine: AlertEngine | None = None
        self._collector: Collector | None = None
        self._collector_failure: str | None = None  # this process's collector could not even start
        self._reader: SnapshotReader | None = None

    # -- connections --------------------------------------------------------------------------------
    async def read_store(self) -> Store:
        async with self._open_lock:
            if self._read is None:
                # Read-only: drawing the dashboard must never write (only the collector judges and writes).
                self._read = await Store.open_reader(self.ctx.db_path)
            return self._read

    async def write_store(self) -> Store:
        async with self._open_lock:
            if self._write is None:
                self._write = await Store.open(self.ctx.db_path)
            return self._write

    def key_variables(self) -> list[tuple[str, str]]:
        return [(p.name, p.key_env) for p in self.ctx.providers if not p.configured and not p.local and p.key_env]

    async def close(self) -> None:
        for store in (self._read, self._write):
            if store is not None:
                await store.close()
        self._read = self._write = None

    # -- what is drawn -----------------------------------------------------------------------------
    async def snapshot(self) -> Snapshot:
        from llmpulse.core.snapshot import SnapshotReader

        failure = self._collector.failure if self._collector is not None else self._collector_failure
        store = await self.read_store()
        if self._reader is None or self._reader.store is not store:
            # Read again only when the database or the minute changed (see SnapshotReader).
            self._reader = SnapshotReader(store)
        return await self._reader.read(self.ctx, self.clock.now(), own_failure=failure)

    def with_alerts(self, snapshot: Snapshot, alerts: list[Alert]) -> Snapshot:
        return dataclasses.replace(snapshot, alerts=alerts)

    async def latency_history(self, provider_id: str, since: float, until: float, buckets: int) -> LatencyHistory:
        from llmpulse.core.health_state import latency_history

        return await latency_history(await self.read_store(), provider_id, since, until, buckets)

    async def recent_probes(self, provider_id: str, since: float, limit: int = 50) -> list[ProbeResult]:
        from llmpulse.core.health import recent_probes

        return await recent_probes(await self.read_store(), provider_id, since=since, limit=limit)

    async def breakdown(self, by: str, since: float, until: float) -> list[GroupRow]:
        from llmpulse.core.usage.queries import average_latencies, breakdown

        store = await self.read_store()
        usage = self.ctx.config.usage
        # per provider, the source its budgets count: its recorded calls, or its own usage report
        rows = await breakdown(store, by, since, until, usage_api=usage.usage_api.usage_api_budgets if usage else ())
        await average_latencies(store, by, since, until, rows)
        return rows

    async def spend_unknown(self, since: float) -> dict[str, str]:
        from llmpulse.core.usage.report_gaps import report_gaps

        gaps = await report_gaps(await self.read_store(), self.ctx.config.usage.usage_api, since)
        return {g.provider_id: g.reason for g in gaps}

    async def usage_patterns(self, by: str, since: float, until: float) -> Patterns:
        from llmpulse.core.usage.patterns import usage_patterns

        return await usage_patterns(await self.read_store(), by, since, until, self.ctx.config.usage.tz)

    async def alert_stats(self, since: float, until: float) -> AlertStats:
        from llmpulse.core.alerts.stats import alert_stats

        return await alert_stats(await self.read_store(), since, until)

    async def alert_detail(self, alert_id: int) -> tuple[Alert | None, list[Transition]]:
        engine = await self.engine()
        alert = await engine.get(alert_id)
        if alert is None:
            return None, []
        return alert, await engine.transitions(alert_id)

    # -- the collector ------------------------------------------------------------------------------
    async def run_collector(self, stop: asyncio.Event, on_round: Callable[[], None]) -> None:
        from llmpulse.core.collector import Collector

        try:
            store = await Store.open(self.ctx.db_path)
        except Exception as exc:  # a read-only or locked database: the dashboard still shows what is there
            from llmpulse.core.redact import redact

            self._collector_failure = redact(f"{type(exc).__name__}: {exc}")
            return
        try:
            self._collector = Collector(self.ctx, store, self.clock)
            await self._collector.run_forever(stop, on_round=on_round)
        finally:
            self._collector = None
            await store.close()

    async def reload_config(self) -> ConfigReload:
        from llmpulse.core.redact import redact

        if self.reload_context is None:
            return ConfigReload(False, "config reload: nothing to reload here (the config is built in)")
        try:
            ctx = self.reload_context()
        except Exception as exc:  # ConfigError and friends: their one line, the running config stays
            return ConfigReload(False, redact(f"config reload refused, the running config stays: {exc}") or "")
        if ctx.db_path != self.ctx.db_path:
            return ConfigReload(
                False, f"config reload refused: the database moved to {ctx.db_path}; restart to change it"
            )
        self.ctx = ctx  # what is drawn (budgets, migrations, thresholds) and the user's actions
        self._engine = None
        if self._collector is not None:
            self._collector.reload(ctx)
            return ConfigReload(True, "config loaded; it applies from the collector's next round")
        return ConfigReload(
            True, "config loaded for the display; the collector runs elsewhere (send it SIGHUP to apply it there)"
        )

    async def probe_now(self, provider_ids: Sequence[str] | None = None) -> list[ProbeResult]:
        from llmpulse.core.collector import probe_now

        return await probe_now(self.ctx, await self.write_store(), self.clock, provider_ids)

    # -- the user's decisions -----------------------------------------------------------------------
    async def engine(self) -> AlertEngine:
        if self._engine is None:
            from llmpulse.core.alerts.engine import AlertEngine

            self._engine = AlertEngine(await self.write_store(), self.ctx.config.alerts, self.clock, None)
        return self._engine

    async def ack(self, alert_id: int, by: str, note: str | None = None) -> Alert | None:
        engine = await self.engine()
        await engine.ack(alert_id, by, note)
        return await engine.get(alert_id)

    async def silence(self, alert_id: int, seconds: float, by: str) -> Alert | None:
        engine = await self.engine()
        await engine.silence(alert_id, seconds, by)
        return await engine.get(alert_id)

    async def resolve(self, alert_id: int, by: str) -> Alert | None:
        engine = await self.engine()
        await engine.resolve(alert_id, by)
        return await engine.get(alert_id)

    async def unsilence(self, alert_id: int, by: str) -> Alert | None:
        engine = await self.engine()
        await engine.unsilence(alert_id, by)
        return await engine.get(alert_id)

    async def set_enabled(self, provider_id: str, enabled: bool, by: str) -> None:
        from llmpulse.core.enablement import set_enabled

        await set_enabled(await self.write_store(), provider_id, enabled, self.clock.now(), by=f"{by} (dashboard)")
