"""A dashboard on fixed data and a fixed clock, for screenshots and for the key tests that need no
database: the same picture on every run, on every host (UTC, no live clock, no hostname, no blink).

The data is built from the core's own dataclasses (ProviderHealth, Alert, BudgetStatus, ...), so a
renamed or removed core field breaks these tests instead of leaving them drawing a shape the core no
longer produces."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from datetime import UTC

from llmpulse.core.alerts.engine import Alert
from llmpulse.core.alerts.stats import AlertStats, DurationStats
from llmpulse.core.clock import ManualClock
from llmpulse.core.health import ProviderHealth
from llmpulse.core.health_state import LatencyHistory
from llmpulse.core.migration import MigrationStatus
from llmpulse.core.probe import ProbeResult
from llmpulse.core.ratelimit import RateLimit
from llmpulse.core.snapshot import CollectorInfo, Header, Snapshot
from llmpulse.core.usage.budgets import BudgetStatus
from llmpulse.core.usage.patterns import Patterns
from llmpulse.core.usage.queries import GroupRow, UsageSummary
from llmpulse.tui.app import PulseApp
from llmpulse.tui.backend import ConfigReload

NOW = 1_768_471_200.0  # 2026-01-15T10:00:00Z


def _rate_limit(headroom):
    return RateLimit(requests_limit=1000, requests_remaining=int(headroom * 1000), reset_s=20.0)


def _provider(
    pid,
    name,
    status,
    p95,
    error_rate,
    band,
    *,
    circuit="closed",
    headroom=None,
    configured=True,
    enabled=True,
    error_kind=None,
    local=False,
    priority=20,
    lasted=None,
):
    series = [p95 * f for f in (0.5, 0.7, 1.0, 0.8, 0.9, 1.1, 0.6, 0.75, 0.95, 1.0)] if p95 else []
    return ProviderHealth(
        provider_id=pid,
        name=name,
        status=status,
        status_since=NOW - lasted if lasted is not None else None,
        error_kind=error_kind,
        error="HTTP 401: invalid key [sk-***]" if error_kind == "auth" else None,
        samples=30 if configured else 0,
        errors=round(error_rate * 30) if error_rate is not None and configured else 0,
        error_rate_judged=error_rate is not None,
        success_rate=None if error_rate is None else 1 - error_rate,
        error_rate=error_rate,
        p50_ms=p95 * 0.6 if p95 else None,
        p95_ms=p95,
        latency_series=series,
        last_checked_at=NOW - 12 if configured else None,
        last_success_at=NOW - 12 if p95 else None,
        last_error="HTTP 401: invalid key [sk-***]" if error_kind == "auth" else None,
        last_error_at=NOW - 40 if error_kind else None,
        error_band=band,
        latency_band="good" if p95 else None,
        latency_source="probes" if p95 else None,
        circuit=circuit,
        consecutive_failures=5 if circuit == "open" else 0,
        rate_limit=_rate_limit(headroom) if headroom is not None else None,
        balance=None,
        enabled=enabled,
        configured=configured,
        setup_gap=None if configured else "no key",
        local=local,
        priority=priority,
    )


def _alert(alert_id, severity, state, rule, subject, message, age_s, *, escalated=False, silenced_until=None):
    return Alert(
        id=alert_id,
        fingerprint=f"{rule}:{subject}",
        rule=rule,
        subject=subject,
        severity=severity,
        stage=0,
        message=message,
        state=state,
        silenced_until=silenced_until,
        silenced_by="ops" if silenced_until else None,
        escalated=escalated,
        escalated_at=NOW - 60 if escalated else None,
        first_seen=NOW - age_s,
        last_seen=NOW - 5,
        count=3,
        acked_by="ops" if state == "acknowledged" else None,
        acked_at=NOW - 60 if state == "acknowledged" else None,
        note=None,
        resolved_at=None,
        resolved_by=None,
        last_notified_at=None,
    )


def fixed_snapshot():
    providers = [
        _provider("openai", "OpenAI", "healthy", 420.0, 0.0, "excellent", headroom=0.82, lasted=7200),
        _provider("anthropic", "Anthropic", "degraded", 2900.0, 0.03, "good", headroom=0.25, lasted=1260),
        _provider(
            "groq", "Groq", "failed", None, 0.4, "critical", circuit="open", error_kind="rate_limited", lasted=95
        ),
        _provider(
            "deepseek", "DeepSeek", "failed", None, 1.0, "critical", circuit="open", error_kind="auth", lasted=720
        ),
        _provider("ollama", "Ollama", "healthy", 35.0, 0.0, "excellent", local=True, priority=10),
        _provider("xai", "xAI", "healthy", 800.0, 0.0, "excellent", enabled=False),
        _provider("mistral", "Mistral", "unknown", None, None, None, configured=False),
    ]
    budgets = [
        BudgetStatus(
            name="total/month",
            scope="total",
            period="month",
            limit_usd=1000.0,
            spent_usd=812.4,
            utilization=0.8124,
            burn_rate_usd_per_day=58.0,
            projected_usd=1790.0,
            exhaust_at=NOW + 3.2 * 86400,
            period_start=NOW - 14 * 86400,
            period_end=NOW + 17 * 86400,
            warn_at=[0.8, 1.0],
            crossed=[0.8],
            unknown_price_count=12,
        ),
        BudgetStatus(
            name="engineering/day",
            scope="department:engineering",
            period="day",
            limit_usd=50.0,
            spent_usd=12.3,
            utilization=0.246,
            burn_rate_usd_per_day=30.0,
            projected_usd=31.0,
            exhaust_at=None,
            period_start=NOW - 36000,
            period_end=NOW + 50400,
            warn_at=[0.8],
            crossed=[],
            unknown_price_count=0,
        ),
    ]
    alerts = [
        _alert(
            1,
            "critical",
            "firing",
            "provider_down",
            "deepseek",
            "DeepSeek failing: 5 of 5 probes failed (auth)",
            420,
            escalated=True,
        ),
        _alert(
            2, "warning", "acknowledged", "budget", "total/month", "budget total/month at 81% ($812 of $1,000)", 840
        ),
        _alert(3, "warning", "firing", "latency", "anthropic", "p95 2.9s above 1s for 15m", 1260),
        _alert(
            4,
            "info",
            "firing",
            "prices_unknown",
            "prices",
            "3 models with unknown price",
            1680,
            silenced_until=NOW + 1800,
        ),
    ]
    migrations = [
        MigrationStatus(
            name="gpt4-to-41",
            from_models=["gpt-4"],
            to_model="gpt-4.1",
            start=dt.date(2026, 1, 1),
            deadline=dt.date(2026, 2, 14),
            phase="canary",
            phase_index=1,
            phases=["prepare", "canary", "rollout", "done"],
            phase_shares=[0.0, 0.1, 0.5, 1.0],
            share_requests=0.37,
            share_tokens=0.41,
            requests_in_window=4200,
            window_s=86400.0,
            days_left=30.4,
            risk="at risk",
            projected_share_at_deadline=0.8,
            trend_per_day=0.014,
            projected_completion_at=None,
            before=None,
            after=None,
            compare_s=86400.0,
        ),
    ]
    header = Header(
        requests_period=123_456,
        cost_period=812.4,
        period_label="this month",
        budget_utilization=0.8124,
        providers_healthy=2,
        providers_total=5,
        alerts_by_severity={"critical": 1, "warning": 2, "info": 1},
        fallbacks_24h=17,
        refreshed_at=NOW,
    )
    usage = UsageSummary(
        requests_today=4_100,
        cost_today=27.0,
        requests_month=123_456,
        cost_month=812.4,
        unknown_price_count=12,
        fallbacks_24h=17,
        requests_24h=8_800,
        price_table="genai-prices (fixed)",
    )
    return Snapshot(
        header=header,
        providers=providers,
        budgets=budgets,
        alerts=alerts,
        migrations=migrations,
        usage=usage,
        collector=CollectorInfo(holder="fixed", alive=True, last_round_at=NOW - 10),
        refreshed_at=NOW,
    )


def first_run_snapshot():
    """A database with nothing yet: no provider configured or judged, no budget, migration, alert or call."""
    snap = fixed_snapshot()
    return dataclasses.replace(
        snap,
        providers=[dataclasses.replace(h, configured=False, status="unknown") for h in snap.providers],
        alerts=[],
        budgets=[],
        migrations=[],
        usage=dataclasses.replace(snap.usage, requests_today=0, requests_month=0, cost_today=0.0, cost_month=0.0),
    )


class FixedBackend:
    """Serves one fixed snapshot; actions change it in memory and are recorded in `calls`."""

    def __init__(self, snapshot=None, collector_hangs: bool = False):
        self.snap = snapshot or fixed_snapshot()
        self.calls: list[tuple] = []
        self.snapshots_built = 0
        self.collector_hangs = collector_hangs
        self.closed = False

    async def snapshot(self):
        self.snapshots_built += 1
        return self.snap

    async def run_collector(self, stop, on_round):
        if self.collector_hangs:
            await asyncio.sleep(3600)  # a provider that never answers
        await stop.wait()

    def _alert(self, alert_id):
        return next(a for a in self.snap.alerts if a.id == alert_id)

    async def ack(self, alert_id, by, note=None):
        self.calls.append(("ack", alert_id, by))
        alert = self._alert(alert_id)
        alert.state, alert.acked_by, alert.acked_at = "acknowledged", by, NOW
        return alert

    async def silence(self, alert_id, seconds, by):
        self.calls.append(("silence", alert_id, seconds, by))
        alert = self._alert(alert_id)
        alert.silenced_until = NOW + seconds
        return alert

    async def unsilence(self, alert_id, by):
        self.calls.append(("unsilence", alert_id, by))
        alert = self._alert(alert_id)
        alert.silenced_until = None
        return alert

    async def resolve(self, alert_id, by):
        self.calls.append(("resolve", alert_id, by))
        alert = self._alert(alert_id)
        alert.state, alert.resolved_at = "resolved", NOW
        return alert

    async def set_enabled(self, provider_id, enabled, by):
        self.calls.append(("set_enabled", provider_id, enabled))

    async def probe_now(self, provider_ids=None):
        self.calls.append(("probe_now", provider_ids))
        return []

    async def latency_history(self, provider_id, since, until, buckets):
        # A probe every bucket but a stretch in the middle where none answered, and a slow spell.
        values = [
            None if buckets // 3 <= i < buckets // 2 else 400.0 + (900.0 if i % 7 == 0 else 0.0) for i in range(buckets)
        ]
        return LatencyHistory(since, until, values, 1300.0, sum(v is not None for v in values), 4)

    async def recent_probes(self, provider_id, since, limit=50):
        return [
            ProbeResult(provider_id, provider_id, NOW - 30 * i, "healthy", latency_ms=400.0 + i, http_status=200)
            for i in range(5)
        ]

    async def breakdown(self, by, since, until):
        return [
            GroupRow(
                key=k,
                requests=100 * i,
                errors=i,
                fallbacks=0,
                input_tokens=1000 * i,
                output_tokens=500 * i,
                cache_read_tokens=0,
                cost_usd=1.5 * i,
                unknown_price_count=0,
                success_rate=0.99,
                p95_ms=500.0,
            )
            for i, k in enumerate("abc", 1)
        ]

    async def usage_patterns(self, by, since, until):
        return Patterns("UTC")

    async def spend_unknown(self, since):
        return dict(self.snap.usage.spend_unknown)

    async def alert_stats(self, since, until):
        none = DurationStats.of([])
        return AlertStats(since, until, 0, [], [], [], none, none, [])

    async def reload_config(self):
        self.calls.append(("reload_config",))
        return ConfigReload(True, "config loaded; it applies from the collector's next round")

    async def alert_detail(self, alert_id):
        return self._alert(alert_id), []

    def with_alerts(self, snapshot, alerts):
        # The fixed "database" takes the change too, as the real one would have.
        self.snap = dataclasses.replace(snapshot, alerts=alerts)
        return self.snap

    def key_variables(self):
        return [(h.name, f"{h.provider_id.upper()}_API_KEY") for h in self.snap.providers if not h.configured]

    async def close(self):
        self.closed = True


def fixed_app(**kwargs) -> PulseApp:
    backend = kwargs.pop("backend", None) or FixedBackend()
    kwargs.setdefault("watch_terminal", False)
    return PulseApp(backend, clock=ManualClock(NOW), tz=UTC, actor="ops", collect=False, **kwargs)


app = fixed_app()
