"""Health: what the probes (and real traffic) say about each provider over a rolling window, the bands
ops read at a glance, and the circuit breaker that keeps failover away from a provider that is down.

Probe results are stored as they come (`record_probe_results`); `load_health` turns the window into one
`ProviderHealth` per provider. The circuit breaker lives in `provider_state` so it survives restarts and
every process on the database (daemon, TUIs, applications failing over) sees the same circuit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmpulse.core.catalog import Provider
from llmpulse.core.config import HealthSettings
from llmpulse.core.probe import ProbeResult
from llmpulse.core.ratelimit import Balance, RateLimit
from llmpulse.core.store import Store

SERIES_POINTS = 30  # latencies kept for a sparkline


# -- circuit breaker ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CircuitState:
    circuit: str = "closed"  # closed | open | half_open
    consecutive_failures: int = 0
    opened_at: float | None = None


class CircuitBreaker:
    """closed → open after `failure_threshold` consecutive failures → half_open once `cooldown` has
    passed (one trial is let through) → closed after a success; a failure while half_open reopens."""

    def __init__(self, settings: HealthSettings):
        self.threshold = settings.failure_threshold
        self.cooldown = settings.cooldown

    def current(self, state: CircuitState, now: float) -> CircuitState:
        if state.circuit == "open" and state.opened_at is not None and now - state.opened_at >= self.cooldown:
            return CircuitState("half_open", state.consecutive_failures, state.opened_at)
        return state

    def after(self, state: CircuitState, success: bool, now: float) -> CircuitState:
        state = self.current(state, now)
        if success:
            return CircuitState("closed", 0, None)
        failures = state.consecutive_failures + 1
        if state.circuit == "half_open" or (state.circuit == "closed" and failures >= self.threshold):
            return CircuitState("open", failures, now)
        return CircuitState(state.circuit, failures, state.opened_at)


def _counts_for_circuit(result: ProbeResult) -> bool | None:
    """True = success, False = failure, None = says nothing about the service (not configured/disabled)."""
    if result.status == "unknown":
        return None
    return result.status != "failed"


async def _load_circuit(conn: Any, provider_id: str) -> CircuitState:
    async with conn.execute(
        "SELECT circuit, consecutive_failures, opened_at FROM provider_state WHERE provider_id = ?", (provider_id,)
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return CircuitState()
    return CircuitState(row["circuit"], int(row["consecutive_failures"]), row["opened_at"])


async def record_probe_results(
    store: Store, results: Sequence[ProbeResult], settings: HealthSettings, now: float
) -> None:
    """Store a probe round and move each provider's circuit, in one transaction."""
    breaker = CircuitBreaker(settings)
    async with store.transaction() as conn:
        await conn.executemany(
            "INSERT INTO probe_results (provider_id, checked_at, status, error_kind, error, latency_ms, "
            "http_status, rate_limit, balance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.provider_id,
                    r.checked_at,
                    r.status,
                    r.error_kind,
                    r.error,
                    r.latency_ms,
                    r.http_status,
                    json.dumps(r.rate_limit.to_json()) if r.rate_limit else None,
                    json.dumps(r.balance.to_json()) if r.balance else None,
                )
                for r in results
            ],
        )
        for r in results:
            state = await _load_circuit(conn, r.provider_id)
            outcome = _counts_for_circuit(r)
            failing = r.status in ("failed", "degraded")
            if outcome is not None:
                state = breaker.after(state, outcome, now)
            await conn.execute(
                "INSERT INTO provider_state (provider_id, circuit, consecutive_failures, opened_at, last_status, "
                "last_error_kind, last_error, last_checked_at, last_success_at, last_failure, last_failure_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(provider_id) DO UPDATE SET "
                "circuit = excluded.circuit, consecutive_failures = excluded.consecutive_failures, "
                "opened_at = excluded.opened_at, last_status = excluded.last_status, "
                "last_error_kind = excluded.last_error_kind, last_error = excluded.last_error, "
                "last_checked_at = excluded.last_checked_at, "
                "last_success_at = COALESCE(excluded.last_success_at, provider_state.last_success_at), "
                "last_failure = COALESCE(excluded.last_failure, provider_state.last_failure), "
                "last_failure_at = COALESCE(excluded.last_failure_at, provider_state.last_failure_at), "
                "updated_at = excluded.updated_at",
                (
                    r.provider_id,
                    state.circuit,
                    state.consecutive_failures,
                    state.opened_at,
                    r.status,
                    r.error_kind,
                    r.error,
                    r.checked_at,
                    r.checked_at if outcome else None,
                    r.error if failing else None,
                    r.checked_at if failing else None,
                    now,
                ),
            )


async def record_outcome(
    store: Store, provider_id: str, success: bool, settings: HealthSettings, now: float
) -> CircuitState:
    """Feed one real request's outcome to the circuit (the failover client calls this)."""
    breaker = CircuitBreaker(settings)
    async with store.transaction() as conn:
        state = breaker.after(await _load_circuit(conn, provider_id), success, now)
        await conn.execute(
            "INSERT INTO provider_state (provider_id, circuit, consecutive_failures, opened_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(provider_id) DO UPDATE SET circuit = excluded.circuit, "
            "consecutive_failures = excluded.consecutive_failures, opened_at = excluded.opened_at, "
            "updated_at = excluded.updated_at",
            (provider_id, state.circuit, state.consecutive_failures, state.opened_at, now),
        )
    return state


async def circuit_states(store: Store, settings: HealthSettings, now: float) -> dict[str, CircuitState]:
    breaker = CircuitBreaker(settings)
    rows = await store.fetchall("SELECT provider_id, circuit, consecutive_failures, opened_at FROM provider_state")
    return {
        r["provider_id"]: breaker.current(
            CircuitState(r["circuit"], int(r["consecutive_failures"]), r["opened_at"]), now
        )
        for r in rows
    }


# -- health over the window -----------------------------------------------------------------------
@dataclass
class ProviderHealth:
    provider_id: str
    name: str
    status: str  # latest probe: healthy | degraded | failed | unknown
    status_since: float | None = None  # first probe of the latest run of this status (the window's start at most)
    error_kind: str | None = None
    error: str | None = None
    samples: int = 0  # probes (+ real requests) in the window
    success_rate: float | None = None
    error_rate: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    latency_series: list[float] = field(default_factory=list)
    last_checked_at: float | None = None
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    error_band: str | None = None  # excellent | good | concerning | critical
    latency_band: str | None = None  # excellent | good | acceptable | slow
    circuit: str = "closed"
    consecutive_failures: int = 0
    rate_limit: RateLimit | None = None
    balance: Balance | None = None
    enabled: bool = True
    configured: bool = True
    local: bool = False
    priority: int = 50
    requests: int = 0  # real requests in the window (from usage), 0 without

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("rate_limit", "balance")}
        out["rate_limit"] = self.rate_limit.to_json() if self.rate_limit else None
        out["balance"] = self.balance.to_json() if self.balance else None
        return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


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


def _is_error(row: Mapping[str, Any]) -> bool:
    return row["status"] == "failed" or row["error_kind"] in ("rate_limited", "overloaded")


def _result_from_row(row: Mapping[str, Any], name: str) -> ProbeResult:
    return ProbeResult(
        row["provider_id"],
        name,
        row["checked_at"],
        row["status"],
        row["error_kind"],
        row["error"],
        row["latency_ms"],
        row["http_status"],
        RateLimit.from_json(json.loads(row["rate_limit"])) if row["rate_limit"] else None,
        Balance.from_json(json.loads(row["balance"])) if row["balance"] else None,
    )


def _run_started(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """When the newest run of one status began: the first of the trailing probes sharing the latest one's
    status (rows oldest first). A run older than the window reads as the window's first probe."""
    if not rows:
        return None
    status = rows[-1]["status"]
    since = rows[-1]["checked_at"]
    for row in reversed(rows):
        if row["status"] != status:
            break
        since = row["checked_at"]
    return float(since)


async def load_health(
    store: Store,
    providers: Sequence[Provider],
    settings: HealthSettings,
    now: float,
    request_stats: Mapping[str, Any] | None = None,
) -> list[ProviderHealth]:
    """One ProviderHealth per provider, in the providers' order.

    Window statistics combine probes with real traffic when `request_stats` (provider_id -> object with
    requests, errors, p95_ms) is given: error rate over both, and p95 from real requests when there are
    any (they carry real prompts; a model list answers faster than a completion)."""
    since = now - settings.window
    rows = await store.fetchall(
        "SELECT provider_id, checked_at, status, error_kind, error, latency_ms, http_status, rate_limit, balance "
        "FROM probe_results WHERE checked_at >= ? AND checked_at <= ? ORDER BY provider_id, checked_at",
        (since, now),
    )
    by_provider: dict[str, list[Any]] = {}
    for row in rows:
        by_provider.setdefault(row["provider_id"], []).append(row)
    state_rows = {r["provider_id"]: r for r in await store.fetchall("SELECT * FROM provider_state")}
    breaker = CircuitBreaker(settings)
    stats = request_stats or {}
    out: list[ProviderHealth] = []
    for p in providers:
        window = [r for r in by_provider.get(p.id, []) if r["status"] != "unknown"]
        latest = by_provider.get(p.id, [])[-1] if by_provider.get(p.id) else None
        status_since = _run_started(by_provider.get(p.id, []))
        st = state_rows.get(p.id)
        circuit = breaker.current(
            CircuitState(st["circuit"], int(st["consecutive_failures"]), st["opened_at"]) if st else CircuitState(), now
        )
        latencies = [r["latency_ms"] for r in window if r["latency_ms"] is not None and r["http_status"]]
        errors = sum(1 for r in window if _is_error(r))
        samples = len(window)
        real = stats.get(p.id)
        requests = int(getattr(real, "requests", 0) or 0) if real is not None else 0
        if requests:
            samples += requests
            errors += int(getattr(real, "errors", 0) or 0)
        rate = errors / samples if samples else None
        p95 = percentile(latencies, 0.95)
        if requests and getattr(real, "p95_ms", None) is not None:
            p95 = float(real.p95_ms)
        with_rl = next((r for r in reversed(window) if r["rate_limit"]), None)
        with_bal = next((r for r in reversed(window) if r["balance"]), None)
        health = ProviderHealth(
            provider_id=p.id,
            name=p.name,
            status=latest["status"] if latest is not None else "unknown",
            status_since=status_since,
            error_kind=latest["error_kind"] if latest is not None else None,
            error=latest["error"] if latest is not None else None,
            samples=samples,
            success_rate=None if rate is None else 1.0 - rate,
            error_rate=rate,
            p50_ms=percentile(latencies, 0.5),
            p95_ms=p95,
            latency_series=latencies[-SERIES_POINTS:],
            last_checked_at=st["last_checked_at"] if st else None,
            last_success_at=st["last_success_at"] if st else None,
            last_error=st["last_failure"] if st else None,
            last_error_at=st["last_failure_at"] if st else None,
            error_band=error_band(rate, settings),
            latency_band=latency_band(p95, settings),
            circuit=circuit.circuit,
            consecutive_failures=circuit.consecutive_failures,
            rate_limit=RateLimit.from_json(json.loads(with_rl["rate_limit"])) if with_rl else None,
            balance=Balance.from_json(json.loads(with_bal["balance"])) if with_bal else None,
            enabled=p.enabled,
            configured=p.configured,
            local=p.local,
            priority=p.priority,
            requests=requests,
        )
        if not p.enabled:
            health.status, health.error_kind, health.error = "unknown", "disabled", "disabled"
            health.status_since = None
        elif not p.configured and latest is None:
            health.error_kind = "not_configured"
        out.append(health)
    return out


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


async def recent_probes(
    store: Store, provider_id: str, since: float, limit: int = 50, name: str | None = None
) -> list[ProbeResult]:
    """A provider's probes since `since`, newest first."""
    rows = await store.fetchall(
        "SELECT * FROM probe_results WHERE provider_id = ? AND checked_at >= ? ORDER BY checked_at DESC LIMIT ?",
        (provider_id, since, limit),
    )
    return [_result_from_row(r, name or provider_id) for r in rows]


async def prune_probe_results(store: Store, now: float, keep_s: float = 7 * 86400.0) -> int:
    """Drop probe results older than `keep_s`; returns how many went."""
    return await store.execute("DELETE FROM probe_results WHERE checked_at < ?", (now - keep_s,))
