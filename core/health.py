"""Health: what the probes (and real traffic) say about each provider over a rolling window, the bands
ops read at a glance, and the failover order that keeps requests away from a provider that is down.

One verdict per provider (issue 18 §2): the latest probe AND the real traffic of the health window. The
error rate is the traffic's once it has MIN_TRAFFIC requests in the window, the probes' own before
that; the configured bands turn it (and p95) into words; a concerning or critical error band, or a
slow p95, makes a provider the probes call healthy `degraded`, and half its requests failing makes it
`failed`. The verdict carries its reason ("degraded: 13% of requests failed over 15m"). p50 and p95 come
from the same calls — traffic when there is enough, else probes — and say which (`latency_source`).

This module is the verdict; what it judges is stored by llmpulse.core.health_state (probe rows, the
circuit breaker, and per-provider window aggregates kept up to date as probes arrive), so
`load_health` reads one row per provider whatever the history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmpulse.core.catalog import Provider
from llmpulse.core.durations import format_duration
from llmpulse.core.health_settings import HealthSettings
from llmpulse.core.health_state import (
    SERIES_POINTS,
    CircuitBreaker,
    CircuitState,
    StoredHealth,
    circuit_states,
    prune_probe_results,
    recent_probes,
    record_outcome,
    record_probe_results,
    stored_health,
)
from llmpulse.core.ratelimit import Balance, RateLimit
from llmpulse.core.store import Store
from llmpulse.core.vocabulary import Circuit, ErrorKind, ProviderStatus

# Real requests in the window before their error rate and latency decide; fewer, and the probes' own do.
MIN_TRAFFIC = 20
# Probes in the window before their error rate says anything (one a round).
MIN_PROBES = 5
# This share of the window's requests failing is an outage, whatever the last probe said.
FAILED_ERROR_RATE = 0.5

# The storage side, re-exported: callers that judge health need not know where it is kept.
__all__ = [
    "SERIES_POINTS",
    "CircuitBreaker",
    "CircuitState",
    "ProviderHealth",
    "circuit_states",
    "error_band",
    "failover_order",
    "judge_health",
    "latency_band",
    "load_health",
    "mark_stale",
    "next_provider",
    "prune_probe_results",
    "recent_probes",
    "record_outcome",
    "record_probe_results",
]


# -- health over the window -----------------------------------------------------------------------
@dataclass
class ProviderHealth:
    provider_id: str
    name: str
    status: ProviderStatus  # the verdict: latest probe and the window's traffic (see the module docstring)
    status_since: float | None = None  # first probe of the latest run of this status (the window's start at most)
    error_kind: ErrorKind | None = None
    error: str | None = None
    samples: int = 0  # the calls error_rate is over: real requests when there are enough, else probes
    errors: int = 0  # how many of those failed
    success_rate: float | None = None
    error_rate: float | None = None
    # Whether error_rate is over enough calls to mean anything (MIN_TRAFFIC requests, or MIN_PROBES
    # probes): when not, it is shown with its counts and "too few", never banded or judged.
    error_rate_judged: bool = False
    samples_needed: int | None = None  # the calls error_rate would need to be judged (None: judged or none)
    p50_ms: float | None = None
    p95_ms: float | None = None
    # False: p50_ms/p95_ms are the roll-ups' histogram estimate (a viewer with no collector's exact
    # figures, past HEALTH_EXACT_CALLS_MAX calls), shown with "≈" — never passed off as exact.
    p95_exact: bool = True
    latency_series: list[float] = field(default_factory=list)
    last_checked_at: float | None = None
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    error_band: str | None = None  # excellent | good | concerning | critical
    latency_band: str | None = None  # excellent | good | acceptable | slow
    circuit: Circuit = "closed"
    consecutive_failures: int = 0
    rate_limit: RateLimit | None = None
    balance: Balance | None = None
    enabled: bool = True
    configured: bool = True
    setup_gap: str | None = None  # what this process lacks to probe it: "no key", "no base URL", "not set up"
    local: bool = False
    priority: int = 50
    requests: int = 0  # real requests in the window (from usage), 0 without
    probe_status: ProviderStatus | None = None  # the latest probe's own status, before traffic is weighed
    reason: str | None = None  # why the verdict is what it is, one line
    error_source: str | None = None  # "traffic" | "probes": whose calls error_rate is over
    latency_source: str | None = None  # "traffic" | "probes": whose calls p50_ms and p95_ms are
    verdict_at: float | None = None  # when the verdict's latest probe ran (its age is now - verdict_at)
    stale: bool = False  # the verdict is older than a collector round should leave it: nobody is judging it

    @property
    def watched(self) -> bool:
        """Enabled and judged by some process: this one (it has the key), or the collector that can see
        it (its verdict is in the window) — a viewer without the keys still counts what the daemon watches."""
        return self.enabled and (self.configured or self.verdict_at is not None)

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("rate_limit", "balance")}
        out["watched"] = self.watched
        out["rate_limit"] = self.rate_limit.to_json() if self.rate_limit else None
        out["balance"] = self.balance.to_json() if self.balance else None
        return out


def error_band(rate: float | None, settings: HealthSettings) -> str | None:
    if rate is None:
        return None
    excellent, good, concerning = settings.error_bands
    return (
        "excellent"
        if rate < excellent
        else "good"
        if rate < good
        else "concerning"
        if rate <= concerning
        else "critical"
    )


def latency_band(ms: float | None, settings: HealthSettings) -> str | None:
    if ms is None:
        return None
    excellent, good, acceptable = (b * 1000.0 for b in settings.latency_bands)
    return "excellent" if ms < excellent else "good" if ms < good else "acceptable" if ms < acceptable else "slow"


async def load_health(
    store: Store,
    providers: Sequence[Provider],
    settings: HealthSettings,
    now: float,
    request_stats: Mapping[str, Any] | None = None,
    *,
    stale_after: float | None = None,
) -> list[ProviderHealth]:
    """One ProviderHealth per provider, in the providers' order: one stored row per provider is read,
    whatever the history (see llmpulse.core.health_state).

    Window statistics combine probes with real traffic when `request_stats` (provider_id -> object with
    requests, errors, p95_ms) is given: error rate over both, and p95 from real requests when there are
    any (they carry real prompts; a model list answers faster than a completion)."""
    stored = await stored_health(store, [p.id for p in providers])
    return judge_health(providers, stored, settings, now, request_stats, stale_after=stale_after)


def judge_health(
    providers: Sequence[Provider],
    stored: Mapping[str, StoredHealth],
    settings: HealthSettings,
    now: float,
    request_stats: Mapping[str, Any] | None = None,
    *,
    series: bool = True,
    stale_after: float | None = None,
) -> list[ProviderHealth]:
    """The verdict on each provider from its stored state (no I/O). `series=False` leaves the latency
    series out (the failover client does not draw sparklines)."""
    since = now - settings.window
    breaker = CircuitBreaker(settings)
    stats = request_stats or {}
    out: list[ProviderHealth] = []
    for p in providers:
        st = stored.get(p.id)
        circuit = breaker.current(st.circuit if st else CircuitState(), now)
        # The latest probe counts only while it is inside the window: older, the state is not known.
        seen = st is not None and st.last_checked_at is not None and since <= st.last_checked_at
        windowed = st is not None and st.window_s is not None and seen
        probe_samples = st.samples if windowed and st else 0
        probe_errors = st.errors if windowed and st else 0
        real = stats.get(p.id)
        requests = int(getattr(real, "requests", 0) or 0) if real is not None else 0
        traffic = requests >= MIN_TRAFFIC
        error_source: str | None
        p50: float | None
        p95: float | None
        latency_source: str | None
        if traffic:
            samples, errors, error_source = requests, int(getattr(real, "errors", 0) or 0), "traffic"
        else:
            samples, errors, error_source = probe_samples, probe_errors, "probes" if probe_samples else None
        rate = errors / samples if samples else None
        # p50 and p95 from the same calls: the traffic's when there is enough of it, else the probes'.
        p95_exact = True
        if traffic and real is not None and getattr(real, "p95_ms", None) is not None:
            p50, p95, latency_source = getattr(real, "p50_ms", None), float(real.p95_ms), "traffic"
            p95_exact = bool(getattr(real, "p95_exact", True))
        elif windowed and st and st.p95_ms is not None:
            p50, p95, latency_source = st.p50_ms, st.p95_ms, "probes"
        else:
            p50, p95, latency_source = None, None, None
        probe_status: ProviderStatus = (st.last_status or "unknown") if seen and st else "unknown"
        health = ProviderHealth(
            provider_id=p.id,
            name=p.name,
            status=probe_status,
            # The run may have begun before the window; what the window shows starts at its edge.
            status_since=max(st.status_since, since) if seen and st and st.status_since is not None else None,
            error_kind=st.last_error_kind if seen and st else None,
            error=st.last_error if seen and st else None,
            samples=samples,
            errors=errors,
            success_rate=None if rate is None else 1.0 - rate,
            error_rate=rate,
            p50_ms=p50,
            p95_ms=p95,
            p95_exact=p95_exact,
            latency_series=st.latency_series() if series and windowed and st else [],
            last_checked_at=st.last_checked_at if st else None,
            last_success_at=st.last_success_at if st else None,
            last_error=st.last_failure if st else None,
            last_error_at=st.last_failure_at if st else None,
            error_band=error_band(rate, settings),
            latency_band=latency_band(p95, settings),
            circuit=circuit.circuit,
            consecutive_failures=circuit.consecutive_failures,
            rate_limit=st.rate_limit if windowed and st else None,
            balance=st.balance if windowed and st else None,
            enabled=p.enabled,
            configured=p.configured,
            setup_gap=gap.word if (gap := p.setup_gap) else None,
            local=p.local,
            priority=p.priority,
            requests=requests,
            probe_status=probe_status,
            error_source=error_source if rate is not None else None,
            latency_source=latency_source,
            verdict_at=st.last_checked_at if seen and st else None,
        )
        # Over too few calls a rate says nothing: kept with its counts, but no band and no verdict.
        health.error_rate_judged = rate is not None and (traffic or probe_samples >= MIN_PROBES)
        if rate is not None and not health.error_rate_judged:
            health.error_band, health.samples_needed = None, MIN_PROBES
        if not p.enabled:
            health.status, health.error_kind, health.error = "unknown", "disabled", "disabled"
            health.probe_status = "unknown"
            health.status_since = None
            health.reason = "disabled"
        elif not p.configured and not seen:
            health.error_kind = "not_configured"
        if p.enabled:
            _weigh(health, settings, setup_hint=gap.hint if gap else None)
        mark_stale(health, now, stale_after)
        out.append(health)
    return out


def mark_stale(h: ProviderHealth, now: float, stale_after: float | None) -> bool:
    """Mark a verdict nobody has renewed for `stale_after` seconds as stale, with its age in the reason;
    True when it became stale just now. Pure: a snapshot kept from a minute ago is aged with it."""
    if h.stale or stale_after is None or h.verdict_at is None or now - h.verdict_at <= stale_after:
        return False
    h.stale = True
    h.reason = f"{h.reason or h.status}; stale: last judged {format_duration(now - h.verdict_at)} ago"
    return True


def _weigh(h: ProviderHealth, settings: HealthSettings, *, setup_hint: str | None) -> None:
    """The verdict: the latest probe, made worse (never better) by the window's error rate and p95, and
    the reason in one line. An error rate over too few calls is left unjudged: no band, no verdict."""
    window = format_duration(settings.window)
    counted = h.error_rate_judged
    if h.probe_status == "unknown":
        if h.error_kind == "not_configured":
            h.reason = f"not judged here: {h.setup_gap} ({setup_hint})" if setup_hint else "not judged here"
        elif h.last_checked_at is not None:
            h.reason = f"no probe in the last {window}"
        else:
            h.reason = "never probed"
        return
    what = "requests" if h.error_source == "traffic" else "probes"
    errors = f"{h.error_rate:.0%} of {what} failed over {window}" if counted and h.error_rate is not None else None
    latency = (
        f"p95 {_ms(h.p95_ms)} ({h.latency_band}) from {h.latency_source} over {window}"
        if h.p95_ms is not None
        else None
    )
    if h.probe_status == "failed":
        h.status = "failed"
        h.reason = f"failed: {h.error_kind or 'probe failed'}" + (f": {h.error}" if h.error else "")
        return
    if counted and h.error_rate is not None and h.error_rate >= FAILED_ERROR_RATE:
        h.status, h.reason = "failed", f"failed: {errors}"
        return
    worse: list[str] = []
    if counted and h.error_band in ("concerning", "critical"):
        worse.append(errors or "")
    if h.latency_band == "slow" and latency:
        worse.append(latency)
    if h.probe_status == "degraded":
        worse.insert(0, f"{h.error_kind or 'degraded'}" + (f": {h.error}" if h.error else ""))
    if worse:
        h.status, h.reason = "degraded", "degraded: " + "; ".join(w for w in worse if w)
        return
    h.status = "healthy"
    unjudged = (
        f"{h.errors} of {h.samples} probes failed (too few to judge: {h.samples_needed} needed)"
        if h.samples_needed is not None
        else None
    )
    parts = [f"{errors} ({h.error_band})" if errors else unjudged, latency]
    h.reason = "healthy" + (": " + ", ".join(x for x in parts if x) if any(parts) else "")


def _ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1000:.1f}s" if ms >= 1000 else f"{ms:.0f}ms"


def failover_order(items: Iterable[Any]) -> list[Any]:
    """Usable providers by priority: enabled, configured, circuit not open, latest status not failed.
    Takes ProviderHealth (or anything with those fields)."""
    usable = [
        h
        for h in items
        if getattr(h, "enabled", True)
        and getattr(h, "configured", True)
        and getattr(h, "circuit", "closed") != "open"
        and getattr(h, "status", "unknown") != "failed"
    ]
    return sorted(usable, key=lambda h: (h.priority, h.provider_id))


def next_provider(items: Iterable[Any], after: str | None = None) -> Any | None:
    """The first usable provider, or the first usable one after `after` in priority order (None: none)."""
    everything = sorted(items, key=lambda h: (h.priority, h.provider_id))
    usable = failover_order(everything)
    if after is None:
        return usable[0] if usable else None
    ids = [h.provider_id for h in everything]
    if after not in ids:
        return usable[0] if usable else None
    rank = ids.index(after)
    later = [h for h in usable if ids.index(h.provider_id) > rank]
    return later[0] if later else None
