"""Everything the dashboard shows, read from the database in one go: the TUI renders only a Snapshot.

Built from each part's own query functions (health, usage roll-ups, budgets, alerts, migrations) so
the dashboard, `llmpulse status --json`-style exports and tests all see the same numbers. Reading a
snapshot never probes and never scans raw usage records: it is cheap enough to take every second.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

from llmpulse.core.alerts.engine import Alert, AlertEngine
from llmpulse.core.clock import ManualClock
from llmpulse.core.config import Context
from llmpulse.core.durations import format_duration
from llmpulse.core.enablement import apply_enablement
from llmpulse.core.health import ProviderHealth, load_health, mark_stale
from llmpulse.core.lease import COLLECTOR_LEASE, lease_path, read_lease, read_lease_file
from llmpulse.core.migration import MigrationStatus, migration_statuses
from llmpulse.core.statuspage import ProviderIncident, load_incidents, status_page_settings
from llmpulse.core.store import Store, busy_since
from llmpulse.core.usage.budgets import BudgetStatus, budget_statuses
from llmpulse.core.usage.queries import (
    RequestStats,
    UsageSummary,
    period_start,
    provider_request_stats,
    usage_summary,
)
from llmpulse.core.usage.report_gaps import report_gaps
from llmpulse.core.usage.traffic_window import published_traffic
from llmpulse.core.vocabulary import MOST_SEVERE_FIRST, Severity, most_severe_first


@dataclass
class Header:
    requests_period: int
    cost_period: float
    period_label: str
    budget_utilization: float | None  # of the budget named in budget_name; None without budgets
    providers_healthy: int
    providers_total: int  # configured and enabled
    alerts_by_severity: dict[Severity, int]  # most severe first
    fallbacks_24h: int
    refreshed_at: float
    # Which budget budget_utilization is: the one nearest its limit (a figure without its name read as
    # "the budget" while it was the highest of several).
    budget_name: str | None = None
    # Some spend counted here is unknown (a usage report not pulled, see UsageSummary.spend_unknown /
    # BudgetStatus.spend_unknown): the figures are lower bounds, shown "≥".
    period_partial: bool = False
    budget_partial: bool = False


@dataclass
class CollectorInfo:
    """Who judges what the viewer shows, and how old it is: nothing collecting, or collection failing,
    is said in `summary` instead of ticking on as if all were quiet."""

    holder: str | None  # who holds the collector lease (None: nobody collects)
    alive: bool
    last_round_at: float | None
    last_errors: list[str] = field(default_factory=list)
    # Since when this process has been waiting for another process's write lock on the database (a
    # backup, a long prune): the header says "database busy since ..." instead of pretending all is well.
    db_busy_since: float | None = None
    sees: list[str] = field(default_factory=list)  # the providers the last collector judged
    data_age_s: float | None = None  # since the last collector round finished (None: never)
    own_failure: str | None = None  # why this process's own collector cannot run (read-only, locked)
    summary: str = ""  # one line for headers and `status`: "no collector since 09:12 — data 4 min old"
    lease_expires_at: float | None = None  # the holder's lease runs out then unless renewed
    unjudged: list[str] = field(default_factory=list)  # watched providers the live collector cannot see

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Snapshot:
    header: Header
    providers: list[ProviderHealth]
    budgets: list[BudgetStatus]
    alerts: list[Alert]  # open ones, most severe first
    migrations: list[MigrationStatus]
    usage: UsageSummary
    collector: CollectorInfo
    refreshed_at: float
    # What each provider's own status page declares, by
    # provider id; `.headline()` is the line shown beside its probe ("" when the page reports no trouble).
    incidents: dict[str, ProviderIncident] = field(default_factory=dict)


def _severity_rank(alert: Alert) -> tuple[int, float]:
    """Most severe first, then the newest."""
    return (most_severe_first(alert.severity), -alert.first_seen)


async def collector_info(
    store: Store, now: float, *, own_failure: str | None = None, tz: Any = dt.UTC
) -> CollectorInfo:
    lease = await read_lease(store, COLLECTOR_LEASE)
    row = await store.fetchone(
        "SELECT last_finished_at, last_errors, sees FROM collector_status WHERE lease = ?", (COLLECTOR_LEASE,)
    )
    errors = json.loads(row["last_errors"]) if row and row["last_errors"] else []
    last = row["last_finished_at"] if row else None
    info = CollectorInfo(
        holder=(lease.holder or None) if lease else None,
        alive=bool(lease and lease.alive(now)),
        last_round_at=last,
        last_errors=errors,
        db_busy_since=busy_since(store.path),
        sees=json.loads(row["sees"]) if row and row["sees"] else [],
        data_age_s=None if last is None else max(0.0, now - last),
        own_failure=own_failure,
        lease_expires_at=lease.expires_at if lease else None,
    )
    info.summary = _collector_summary(info, tz)
    return info


def aged_collector_info(info: CollectorInfo, now: float, path: Any, tz: Any) -> CollectorInfo:
    """`info` read a moment ago, as it reads at `now` without reading the database again: whether the
    lease is still alive (its file beside the database, renewed there so that a renewal moves nothing a
    snapshot reads), how old the data is, and whether this process now waits for the database's lock."""
    lease = read_lease_file(lease_path(path, COLLECTOR_LEASE))
    aged = dataclasses.replace(
        info,
        holder=(lease.holder or None) if lease else None,
        alive=bool(lease and lease.alive(now)),
        lease_expires_at=lease.expires_at if lease else None,
        data_age_s=None if info.last_round_at is None else max(0.0, now - info.last_round_at),
        db_busy_since=busy_since(path),
    )
    aged.summary = _collector_summary(aged, tz)
    return aged


def _collector_summary(info: CollectorInfo, tz: Any) -> str:
    age = "no data yet" if info.data_age_s is None else f"data {format_duration(info.data_age_s)} old"
    if info.alive:
        line = f"collector {info.holder} — {age}"
        if info.last_errors:
            line += f" — last round failed: {info.last_errors[0]}"
    elif info.last_round_at is not None:
        since = dt.datetime.fromtimestamp(info.last_round_at, tz).strftime("%H:%M")
        line = f"no collector since {since} — {age}"
    else:
        line = "no collector has run on this database"
    if info.own_failure:
        line += f" — this process cannot collect: {info.own_failure}"
    if info.alive and info.unjudged:
        # Collecting, but maybe not with every key: say whose verdicts are left as they were.
        line += f" — not judged by it (verdicts kept as they were): {', '.join(info.unjudged)}"
    return line


def stale_after(ctx: Context) -> float:
    """How old a verdict may get before it is shown as stale: a few collector rounds."""
    return 3 * ctx.config.probe.interval + ctx.config.probe.timeout


async def build_snapshot(store: Store, ctx: Context, now: float, *, own_failure: str | None = None) -> Snapshot:
    """Reads only (a viewer's connection may be read-only). `own_failure`: why this process's own
    collector cannot run, to be said, not hidden."""
    cfg = ctx.config
    providers = await apply_enablement(store, ctx.providers)
    stats, traffic_at = await window_traffic(store, now, cfg.health.window)
    health = await load_health(store, providers, cfg.health, now, stats, stale_after=stale_after(ctx))
    if traffic_at is not None:
        # A verdict weighed with the published traffic is as old as the older of its probe and that
        # traffic: figures a collector stopped publishing go stale with the rest of its verdicts.
        for h in health:
            if h.verdict_at is not None and "traffic" in (h.latency_source, h.error_source):
                h.verdict_at = min(h.verdict_at, traffic_at)
                mark_stale(h, now, stale_after(ctx))
    incidents = await load_incidents(store, providers, status_page_settings(cfg), now)
    budgets = await budget_statuses(store, cfg.usage, now)
    usage = await usage_summary(store, now, cfg.usage.timezone, cfg.usage.usage_api.usage_api_budgets)
    month = period_start(now, "month", cfg.usage.tz)
    usage.spend_unknown = {g.provider_id: g.reason for g in await report_gaps(store, cfg.usage.usage_api, month)}
    alerts = sorted(await AlertEngine(store, cfg.alerts, ManualClock(now), None).open_alerts(), key=_severity_rank)
    migrations = await migration_statuses(store, cfg, now)
    # What is watched first (by failover priority), then disabled, then the catalog's unconfigured rest.
    health.sort(key=lambda h: (0 if h.watched else 1 if h.configured else 2, h.priority, h.provider_id))
    # Watched: judged by this process or by the collector that can see it (a viewer without the keys
    # still counts, and shows, the providers the daemon watches).
    watched = [h for h in health if h.watched]
    tightest = max(budgets, key=lambda b: b.utilization, default=None)
    collector = await collector_info(store, now, own_failure=own_failure, tz=cfg.usage.tz)
    collector.unjudged = [h.provider_id for h in watched if h.provider_id not in collector.sees]
    collector.summary = _collector_summary(collector, cfg.usage.tz)
    header = Header(
        requests_period=usage.requests_month,
        cost_period=usage.cost_month,
        period_partial=bool(usage.spend_unknown),
        period_label="this month",
        budget_utilization=tightest.utilization if tightest else None,
        budget_name=tightest.name if tightest else None,
        budget_partial=bool(tightest and tightest.partial),
        providers_healthy=sum(1 for h in watched if h.status == "healthy"),
        providers_total=len(watched),
        alerts_by_severity={s: sum(1 for a in alerts if a.severity == s) for s in MOST_SEVERE_FIRST},
        fallbacks_24h=usage.fallbacks_24h,
        refreshed_at=now,
    )
    return Snapshot(
        header=header,
        providers=health,
        budgets=budgets,
        alerts=alerts,
        migrations=migrations,
        usage=usage,
        collector=collector,
        refreshed_at=now,
        incidents=incidents,
    )


async def window_traffic(store: Store, now: float, window_s: float) -> tuple[dict[str, RequestStats], float | None]:
    """The health window's real traffic per provider and when it was taken: what the collector last
    published (its exact figures, read in one small table, whatever the traffic), or — when no collector
    ever published on this database — read from the roll-ups here, (None for the time: it is now), their
    p50/p95 an estimate past HEALTH_EXACT_CALLS_MAX calls, flagged `p95_exact` False and shown as such."""
    published = await published_traffic(store, COLLECTOR_LEASE)
    if published is not None:
        return published.stats, published.at
    return await provider_request_stats(store, now - window_s, now), None


class SnapshotReader:
    """Snapshots for a viewer that asks every second, read again only when there is something new.

    SQLite's `PRAGMA data_version` on this (reading) connection changes whenever any other connection
    commits — the collector's round, an ack, an import (not the collector's lease renewals: they go to
    a file beside the database, read here each time). While it and the minute stay
    the same, the last snapshot is handed back, aged to `now` without reading: who collects and how
    old its data is, and which verdicts went stale since. Everything else a snapshot says moves with the
    data or by the minute (ages are shown to the minute). Saves the whole build (a few ms a second, tens
    with hundreds of providers and alerts) on most seconds of an idle dashboard."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._key: tuple[Any, ...] | None = None
        self._last: Snapshot | None = None
        self.builds = 0  # how many snapshots were read in full (for tests and benchmarks)

    async def read(self, ctx: Context, now: float, *, own_failure: str | None = None) -> Snapshot:
        row = await self.store.fetchone("PRAGMA data_version")
        key = (row[0] if row else None, math.floor(now / 60), id(ctx), own_failure)
        if self._last is not None and key == self._key:
            self._last = _aged(self._last, ctx, now, self.store.path)
            return self._last
        snapshot = await build_snapshot(self.store, ctx, now, own_failure=own_failure)
        self.builds += 1
        self._key, self._last = key, snapshot
        return snapshot


def _aged(snapshot: Snapshot, ctx: Context, now: float, path: Any) -> Snapshot:
    """The snapshot as it reads at `now`, sharing every unchanged object with it (so a viewer comparing
    rows sees the very same ones and redraws nothing)."""
    limit = stale_after(ctx)
    providers = snapshot.providers
    if any(not h.stale and h.verdict_at is not None and now - h.verdict_at > limit for h in providers):
        providers = [dataclasses.replace(h) for h in providers]
        providers = [h2 if mark_stale(h2, now, limit) else h for h, h2 in zip(snapshot.providers, providers)]
    return dataclasses.replace(
        snapshot,
        providers=providers,
        collector=aged_collector_info(snapshot.collector, now, path, ctx.config.usage.tz),
        header=dataclasses.replace(snapshot.header, refreshed_at=now),
        refreshed_at=now,
    )
