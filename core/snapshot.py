"""Everything the dashboard shows, read from the database in one go: the TUI renders only a Snapshot.

Built from each part's own query functions (health, usage roll-ups, budgets, alerts, migrations) so
the dashboard, `llmpulse status --json`-style exports and tests all see the same numbers. Reading a
snapshot never probes and never scans raw usage records: it is cheap enough to take every second.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from llmpulse.core.alerts.engine import Alert, AlertEngine
from llmpulse.core.clock import ManualClock
from llmpulse.core.config import Context
from llmpulse.core.durations import format_duration
from llmpulse.core.enablement import apply_enablement
from llmpulse.core.health import ProviderHealth, load_health
from llmpulse.core.lease import COLLECTOR_LEASE, read_lease
from llmpulse.core.migration import MigrationStatus, migration_statuses
from llmpulse.core.statuspage import ProviderIncident, load_incidents, status_page_settings
from llmpulse.core.store import Store, busy_since
from llmpulse.core.usage.budgets import BudgetStatus, budget_statuses
from llmpulse.core.usage.queries import UsageSummary, provider_request_stats, usage_summary
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
        holder=lease.holder if lease else None,
        alive=bool(lease and lease.alive(now)),
        last_round_at=last,
        last_errors=errors,
        db_busy_since=busy_since(store.path),
        sees=json.loads(row["sees"]) if row and row["sees"] else [],
        data_age_s=None if last is None else max(0.0, now - last),
        own_failure=own_failure,
    )
    info.summary = _collector_summary(info, tz)
    return info


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
    return line


def stale_after(ctx: Context) -> float:
    """How old a verdict may get before it is shown as stale: a few collector rounds."""
    return 3 * ctx.config.probe.interval + ctx.config.probe.timeout


async def build_snapshot(store: Store, ctx: Context, now: float, *, own_failure: str | None = None) -> Snapshot:
    """Reads only (a viewer's connection may be read-only). `own_failure`: why this process's own
    collector cannot run, to be said, not hidden."""
    cfg = ctx.config
    providers = await apply_enablement(store, ctx.providers)
    stats = await provider_request_stats(store, now - cfg.health.window, now)
    health = await load_health(store, providers, cfg.health, now, stats, stale_after=stale_after(ctx))
    incidents = await load_incidents(store, providers, status_page_settings(cfg), now)
    budgets = await budget_statuses(store, cfg.usage, now)
    usage = await usage_summary(store, now, cfg.usage.timezone)
    alerts = sorted(await AlertEngine(store, cfg.alerts, ManualClock(now), None).open_alerts(), key=_severity_rank)
    migrations = await migration_statuses(store, cfg, now)
    # What is watched first (by failover priority), then disabled, then the catalog's unconfigured rest.
    health.sort(key=lambda h: (0 if h.watched else 1 if h.configured else 2, h.priority, h.provider_id))
    # Watched: judged by this process or by the collector that can see it (a viewer without the keys
    # still counts, and shows, the providers the daemon watches).
    watched = [h for h in health if h.watched]
    tightest = max(budgets, key=lambda b: b.utilization, default=None)
    collector = await collector_info(store, now, own_failure=own_failure, tz=cfg.usage.tz)
    if collector.alive:
        # Collecting, but maybe not with every key: say whose verdicts are left as they were.
        unjudged = [h.provider_id for h in watched if h.provider_id not in collector.sees]
        if unjudged:
            collector.summary += f" — not judged by it (verdicts kept as they were): {', '.join(unjudged)}"
    header = Header(
        requests_period=usage.requests_month,
        cost_period=usage.cost_month,
        period_label="this month",
        budget_utilization=tightest.utilization if tightest else None,
        budget_name=tightest.name if tightest else None,
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
