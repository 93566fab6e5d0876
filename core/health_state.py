"""What the probes said, kept so that reading it costs the same with 10 or 100,000 probe rows.

The storage side of health (the verdict — statuses, bands, failover order — is llmpulse.core.health's):

- `probe_results`: every probe as it came, kept for a short while (`RAW_KEEP_S`, at least twice the
  health window) for the detail screen and for expiring the window below.
- `provider_state`: one row per provider with its latest probe, its last success and failure, and the
  circuit breaker, so every process on the database sees the same circuit.
- `probe_windows`: one row per provider with the health window's aggregates (probes, errors, a latency
  histogram with its p50/p95, the last latencies, the newest rate-limit and balance), kept up to date as
  probes arrive: each write adds the new probes and subtracts the ones that left the window (read by
  time index), so a round costs the same whatever the window's length, and readers read one row.
- `probe_minutes`: a per-minute summary per provider (probes, errors, mean and highest latency), kept
  long after the raw rows go, for charts (`probe_history`).

A window row covers the probes from `since` to the last write. Readers take it as it stands: between
two collector rounds it is at most one round old.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmpulse.core.health_settings import HealthSettings
from llmpulse.core.metric_totals import add_probe_latency
from llmpulse.core.probe import ProbeResult
from llmpulse.core.ratelimit import Balance, RateLimit
from llmpulse.core.store import Store
from llmpulse.core.vocabulary import ACCOUNT_KINDS, Circuit, ErrorKind, ProviderStatus

SERIES_POINTS = 30  # latencies kept for a sparkline
# Latency histogram: bucket i holds [R**i, R**(i+1)) ms, so a percentile read from it is within 1% of the
# exact one (nearest rank) at any scale, and subtracting a probe that leaves the window is exact.
HIST_RATIO = 1.02
_LOG_RATIO = math.log(HIST_RATIO)
RAW_KEEP_S = 3600.0  # raw probe rows; never less than twice the health window (see raw_keep)
HISTORY_KEEP_S = 30 * 86400.0  # per-minute summaries
MINUTE = 60.0
PRUNE_CHUNK = 5000  # rows per delete statement: no write transaction holds the database for long


# -- circuit breaker ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CircuitState:
    circuit: Circuit = "closed"
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

    def after(self, state: CircuitState, success: bool, now: float, *, open_now: bool = False) -> CircuitState:
        """The state after one outcome. `open_now`: a failure that will not clear by retrying (a refused
        key, an empty account) opens a closed circuit at once instead of after `failure_threshold`."""
        state = self.current(state, now)
        if success:
            return CircuitState("closed", 0, None)
        failures = state.consecutive_failures + 1
        if state.circuit == "half_open" or (state.circuit == "closed" and (open_now or failures >= self.threshold)):
            return CircuitState("open", failures, now)
        return CircuitState(state.circuit, failures, state.opened_at)


def _counts_for_circuit(result: ProbeResult) -> bool | None:
    """True = success, False = failure, None = says nothing about the service (not configured/disabled)."""
    if result.status == "unknown":
        return None
    return result.status != "failed"


def is_error(status: str, error_kind: str | None) -> bool:
    """A probe that counts against the error rate: failed, or turned away for rate or load."""
    return status == "failed" or error_kind in ("rate_limited", "overloaded")


# -- the window's aggregates ----------------------------------------------------------------------
def latency_bucket(ms: float) -> int:
    return math.floor(math.log(ms) / _LOG_RATIO) if ms > 1.0 else 0


def hist_percentiles(hist: Mapping[int, int], qs: Sequence[float]) -> list[float | None]:
    """Nearest-rank percentiles (each q in 0..1, ascending) from a latency histogram, in one pass over
    its buckets: the geometric middle of the bucket each rank falls in (within HIST_RATIO's half-width of
    the exact value). None when empty."""
    total = sum(hist.values())
    if total <= 0:
        return [None for _ in qs]
    out: list[float | None] = []
    ranks = iter([max(1, math.ceil(q * total)) for q in qs])
    rank = next(ranks)
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        while seen >= rank:
            out.append(HIST_RATIO ** (bucket + 0.5) if bucket > 0 else 1.0)
            rank = next(ranks, total + 1)
    return out


@dataclass
class _Window:
    since: float
    last_at: float
    samples: int = 0
    errors: int = 0
    hist: dict[int, int] | None = None
    series: list[list[float]] | None = None  # [checked_at, latency_ms], oldest first, at most SERIES_POINTS
    rate_limit: str | None = None
    rate_limit_at: float | None = None
    balance: str | None = None
    balance_at: float | None = None
    # The JSON of series points already written, by point: a point's text is made once, not every round
    # it stays in the series (repr of a unix time is most of the cost of writing a series).
    point_texts: dict[tuple[float, float], str] | None = None

    def __post_init__(self) -> None:
        self.hist = self.hist if self.hist is not None else {}
        self.series = self.series if self.series is not None else []

    def add(self, at: float, status: str, kind: str | None, latency: float | None, http: int | None) -> None:
        assert self.hist is not None and self.series is not None
        if status == "unknown":
            return
        self.samples += 1
        self.errors += is_error(status, kind)
        if latency is not None and http:
            b = latency_bucket(latency)
            self.hist[b] = self.hist.get(b, 0) + 1
            self.series.append([at, latency])

    def remove(self, status: str, kind: str | None, latency: float | None, http: int | None) -> None:
        assert self.hist is not None
        if status == "unknown":
            return
        self.samples -= 1
        self.errors -= is_error(status, kind)
        if latency is not None and http:
            b = latency_bucket(latency)
            left = self.hist.get(b, 0) - 1
            if left > 0:
                self.hist[b] = left
            else:
                self.hist.pop(b, None)

    def extras(self, at: float, rate_limit: str | None, balance: str | None) -> None:
        if rate_limit and (self.rate_limit_at is None or at >= self.rate_limit_at):
            self.rate_limit, self.rate_limit_at = rate_limit, at
        if balance and (self.balance_at is None or at >= self.balance_at):
            self.balance, self.balance_at = balance, at

    def trim(self, since: float) -> None:
        """Forget what is older than `since` in the series and the newest rate-limit/balance."""
        assert self.series is not None
        self.series.sort(key=lambda p: p[0])
        self.series = [p for p in self.series[-SERIES_POINTS:] if p[0] >= since]
        if self.rate_limit_at is not None and self.rate_limit_at < since:
            self.rate_limit, self.rate_limit_at = None, None
        if self.balance_at is not None and self.balance_at < since:
            self.balance, self.balance_at = None, None
        if self.samples < 0 or self.errors < 0:  # cannot happen unless rows were deleted under us
            self.samples, self.errors = max(self.samples, 0), max(self.errors, 0)

    def row(self, provider_id: str, window_s: float) -> tuple[Any, ...]:
        assert self.hist is not None
        return (
            provider_id,
            window_s,
            self.since,
            self.last_at,
            self.samples,
            self.errors,
            json.dumps(self.hist, separators=(",", ":")),
            *hist_percentiles(self.hist, (0.5, 0.95)),
            self._series_text(),
            self.rate_limit,
            self.rate_limit_at,
            self.balance,
            self.balance_at,
        )

    def _series_text(self) -> str:
        """The series as JSON, [[checked_at,latency_ms],...] (json.dumps with compact separators, made
        point by point)."""
        assert self.series is not None
        known = self.point_texts or {}
        texts: dict[tuple[float, float], str] = {}
        parts = []
        for point in self.series:
            key = (point[0], point[1])
            text = known.get(key)
            if text is None:
                text = _COMPACT_JSON(point)
            texts[key] = text
            parts.append(text)
        self.point_texts = texts
        return "[" + ",".join(parts) + "]"


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":")).encode


# Each provider's window histogram and series as this process last wrote them: (latency_hist text, series
# text, the two decoded, the series points' texts), by database file and provider. The next round finds its own text in the row and skips decoding it (json and an
# int() per bucket: most of a window update's time when latencies spread over many buckets). Taken out
# while a round works on them and put back with the text written, so what is kept is always what some
# database row held; a row another writer changed has another text and is decoded.
_Decoded = tuple[str, str, dict[int, int], list[list[float]], dict[tuple[float, float], str]]
_DECODED: dict[tuple[Path, str], _Decoded] = {}


def _window_from_row(db: Path, row: Mapping[str, Any]) -> _Window:
    hist_text, series_text = row["latency_hist"], row["series"]
    kept = _DECODED.pop((db, row["provider_id"]), None)
    if kept is not None and kept[0] == hist_text and kept[1] == series_text:
        hist, series, point_texts = kept[2], kept[3], kept[4]
    else:
        hist = {int(k): int(v) for k, v in json.loads(hist_text).items()}
        series, point_texts = json.loads(series_text), None
    return _Window(
        since=row["since"],
        last_at=row["last_at"],
        samples=int(row["samples"]),
        errors=int(row["errors"]),
        hist=hist,
        series=series,
        rate_limit=row["rate_limit"],
        rate_limit_at=row["rate_limit_at"],
        balance=row["balance"],
        balance_at=row["balance_at"],
        point_texts=point_texts,
    )


_RAW_COLUMNS = "provider_id, checked_at, status, error_kind, latency_ms, http_status, rate_limit, balance"


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


async def _update_windows(
    conn: Any,
    db: Path,
    results: Sequence[ProbeResult],
    encoded: Mapping[int, tuple[str | None, str | None]],
    window_s: float,
    now: float,
) -> None:
    """Move each written provider's window to end at `now`: subtract what left it, add `results`.
    A provider without a row, with another window length, or whose window would move backwards is
    rebuilt from the raw rows (once: after an upgrade, a config change or a clock step)."""
    since = now - window_s
    ids = sorted({r.provider_id for r in results})
    rows: dict[str, Any] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        async with conn.execute(
            f"SELECT * FROM probe_windows WHERE provider_id IN ({_placeholders(len(chunk))})", chunk
        ) as cur:
            rows.update({r["provider_id"]: r for r in await cur.fetchall()})
    windows: dict[str, _Window] = {}
    rebuild: list[str] = []
    for pid in ids:
        row = rows.get(pid)
        if row is None or row["window_s"] != window_s or row["since"] > since:
            rebuild.append(pid)
        elif row["last_at"] < since:  # silent for longer than the window: nothing in it is left
            windows[pid] = _Window(since=since, last_at=now)
        else:
            windows[pid] = _window_from_row(db, row)
    # Probes that left the window since each provider's last write: one range read on the time index.
    moving = [w for w in windows.values() if w.since < since]
    if moving:
        oldest = min(w.since for w in moving)
        async with conn.execute(
            f"SELECT {_RAW_COLUMNS} FROM probe_results WHERE checked_at >= ? AND checked_at < ?", (oldest, since)
        ) as cur:
            for r in await cur.fetchall():
                w = windows.get(r[0])
                if w is not None and r[1] >= w.since:
                    w.remove(r[2], r[3], r[4], r[5])
    for w in windows.values():
        w.since, w.last_at = since, max(w.last_at, now)
    for i, r in enumerate(results):
        w = windows.get(r.provider_id)
        if w is None or r.checked_at < since:
            continue
        w.add(r.checked_at, r.status, r.error_kind, r.latency_ms, r.http_status)
        if r.status != "unknown":
            w.extras(r.checked_at, *encoded[i])
    if rebuild:
        fresh = {pid: _Window(since=since, last_at=now) for pid in rebuild}
        # The raw rows already include this round's results (inserted before).
        for start in range(0, len(rebuild), 500):
            chunk = rebuild[start : start + 500]
            async with conn.execute(
                f"SELECT {_RAW_COLUMNS} FROM probe_results WHERE provider_id IN ({_placeholders(len(chunk))}) "
                "AND checked_at >= ? AND checked_at <= ?",
                (*chunk, since, now),
            ) as cur:
                for r in await cur.fetchall():
                    w = fresh[r[0]]
                    w.add(r[1], r[2], r[3], r[4], r[5])
                    if r[2] != "unknown":
                        w.extras(r[1], r[6], r[7])
        windows.update(fresh)
    for w in windows.values():
        w.trim(since)
    rows_out = [w.row(pid, window_s) for pid, w in windows.items()]
    await conn.executemany(
        "INSERT OR REPLACE INTO probe_windows (provider_id, window_s, since, last_at, samples, errors, latency_hist, "
        "p50_ms, p95_ms, series, rate_limit, rate_limit_at, balance, balance_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows_out,
    )
    for row, w in zip(rows_out, windows.values(), strict=True):
        assert w.hist is not None and w.series is not None and w.point_texts is not None
        _DECODED[(db, row[0])] = (row[6], row[9], w.hist, w.series, w.point_texts)


async def _update_minutes(conn: Any, results: Iterable[ProbeResult]) -> None:
    """Add the results to their per-minute summaries."""
    acc: dict[tuple[str, float], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0.0])
    for r in results:
        if r.status == "unknown":
            continue
        a = acc[(r.provider_id, math.floor(r.checked_at / MINUTE) * MINUTE)]
        a[0] += 1
        a[1] += is_error(r.status, r.error_kind)
        if r.latency_ms is not None and r.http_status:
            a[2] += 1
            a[3] += r.latency_ms
            a[4] = max(a[4], r.latency_ms)
    if acc:
        await conn.executemany(
            "INSERT INTO probe_minutes (provider_id, minute, probes, errors, latency_n, latency_sum, latency_max) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(provider_id, minute) DO UPDATE SET "
            "probes = probes + excluded.probes, errors = errors + excluded.errors, "
            "latency_n = latency_n + excluded.latency_n, latency_sum = latency_sum + excluded.latency_sum, "
            "latency_max = MAX(latency_max, excluded.latency_max)",
            [(pid, minute, *a) for (pid, minute), a in acc.items()],
        )


# -- writing --------------------------------------------------------------------------------------
async def record_probe_results(
    store: Store, results: Sequence[ProbeResult], settings: HealthSettings, now: float
) -> None:
    """Store a probe round, move each provider's circuit, window and minute summary, in one transaction.

    A result that says this process cannot see the provider (no key or base URL here) is not stored: it
    says nothing about the provider, and would overwrite the verdict of a process that can see it."""
    results = [r for r in results if r.error_kind != "not_configured"]
    if not results:
        return
    breaker = CircuitBreaker(settings)
    encoded = {
        i: (
            json.dumps(r.rate_limit.to_json()) if r.rate_limit else None,
            json.dumps(r.balance.to_json()) if r.balance else None,
        )
        for i, r in enumerate(results)
    }
    async with store.transaction() as conn:
        await conn.executemany(
            "INSERT INTO probe_results (provider_id, checked_at, status, error_kind, error, latency_ms, "
            "http_status, rate_limit, balance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r.provider_id, r.checked_at, r.status, r.error_kind, r.error, r.latency_ms, r.http_status, *encoded[i])
                for i, r in enumerate(results)
            ],
        )
        ids = sorted({r.provider_id for r in results})
        states = await _load_circuits(conn, ids)
        runs = await _load_runs(conn, ids)  # provider -> (last_status, last_checked_at, status_since)
        updates: dict[str, tuple[Any, ...]] = {}
        for r in results:
            state = states.get(r.provider_id, CircuitState())
            last_status, last_at, run_since = runs.get(r.provider_id, (None, None, None))
            # A new run when the status changes, or when the previous probe is older than the window.
            if (
                r.status != last_status
                or last_at is None
                or run_since is None
                or last_at < r.checked_at - settings.window
            ):
                run_since = r.checked_at
            runs[r.provider_id] = (r.status, r.checked_at, run_since)
            outcome = _counts_for_circuit(r)
            failing = r.status in ("failed", "degraded")
            if outcome is not None:
                state = breaker.after(state, outcome, now, open_now=r.error_kind in ACCOUNT_KINDS)
            states[r.provider_id] = state
            before = updates.get(r.provider_id)
            updates[r.provider_id] = (
                r.provider_id,
                state.circuit,
                state.consecutive_failures,
                state.opened_at,
                r.status,
                r.error_kind,
                r.error,
                r.checked_at,
                r.checked_at if outcome else (before[8] if before else None),
                r.error if failing else (before[9] if before else None),
                r.checked_at if failing else (before[10] if before else None),
                now,
                run_since,
            )
        await conn.executemany(
            "INSERT INTO provider_state (provider_id, circuit, consecutive_failures, opened_at, last_status, "
            "last_error_kind, last_error, last_checked_at, last_success_at, last_failure, last_failure_at, "
            "updated_at, status_since) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(provider_id) DO UPDATE SET "
            "circuit = excluded.circuit, consecutive_failures = excluded.consecutive_failures, "
            "status_since = excluded.status_since, "
            "opened_at = excluded.opened_at, last_status = excluded.last_status, "
            "last_error_kind = excluded.last_error_kind, last_error = excluded.last_error, "
            "last_checked_at = excluded.last_checked_at, "
            "last_success_at = COALESCE(excluded.last_success_at, provider_state.last_success_at), "
            "last_failure = COALESCE(excluded.last_failure, provider_state.last_failure), "
            "last_failure_at = COALESCE(excluded.last_failure_at, provider_state.last_failure_at), "
            "updated_at = excluded.updated_at",
            list(updates.values()),
        )
        await _update_windows(conn, store.path, results, encoded, settings.window, now)
        await _update_minutes(conn, results)
        await add_probe_latency(conn, results)  # all-time totals for /metrics (never lowered by pruning)


async def _load_circuits(conn: Any, provider_ids: Sequence[str]) -> dict[str, CircuitState]:
    out: dict[str, CircuitState] = {}
    for start in range(0, len(provider_ids), 500):
        chunk = list(provider_ids[start : start + 500])
        async with conn.execute(
            "SELECT provider_id, circuit, consecutive_failures, opened_at FROM provider_state "
            f"WHERE provider_id IN ({_placeholders(len(chunk))})",
            chunk,
        ) as cur:
            for row in await cur.fetchall():
                out[row[0]] = CircuitState(row[1], int(row[2]), row[3])
    return out


async def _load_runs(conn: Any, provider_ids: Sequence[str]) -> dict[str, tuple[Any, Any, Any]]:
    out: dict[str, tuple[Any, Any, Any]] = {}
    for start in range(0, len(provider_ids), 500):
        chunk = list(provider_ids[start : start + 500])
        async with conn.execute(
            "SELECT provider_id, last_status, last_checked_at, status_since FROM provider_state "
            f"WHERE provider_id IN ({_placeholders(len(chunk))})",
            chunk,
        ) as cur:
            for row in await cur.fetchall():
                out[row[0]] = (row[1], row[2], row[3])
    return out


async def record_outcome(
    store: Store, provider_id: str, success: bool, settings: HealthSettings, now: float, *, open_now: bool = False
) -> CircuitState:
    """Feed one real request's outcome to the circuit (the failover client calls this); `open_now`: see
    CircuitBreaker.after."""
    breaker = CircuitBreaker(settings)
    async with store.transaction() as conn:
        state = breaker.after(
            (await _load_circuits(conn, [provider_id])).get(provider_id, CircuitState()),
            success,
            now,
            open_now=open_now,
        )
        await conn.execute(
            "INSERT INTO provider_state (provider_id, circuit, consecutive_failures, opened_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(provider_id) DO UPDATE SET circuit = excluded.circuit, "
            "consecutive_failures = excluded.consecutive_failures, opened_at = excluded.opened_at, "
            "updated_at = excluded.updated_at",
            (provider_id, state.circuit, state.consecutive_failures, state.opened_at, now),
        )
    return state


# -- reading --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredHealth:
    """One provider's stored state: its latest probe, circuit and window aggregates, as written."""

    provider_id: str
    circuit: CircuitState
    last_status: ProviderStatus | None
    status_since: float | None  # first probe of the run of last_status (a gap longer than the window restarts it)
    last_error_kind: ErrorKind | None
    last_error: str | None
    last_checked_at: float | None
    last_success_at: float | None
    last_failure: str | None
    last_failure_at: float | None
    enabled_override: bool | None
    window_s: float | None  # None: no window row yet
    window_since: float | None
    samples: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    series_json: str | None  # [[checked_at, latency_ms], ...]: parsed only by who shows it
    rate_limit: RateLimit | None
    balance: Balance | None

    def latency_series(self) -> list[float]:
        return [p[1] for p in json.loads(self.series_json)] if self.series_json else []


_STATE_SQL = (
    "SELECT s.provider_id, s.circuit, s.consecutive_failures, s.opened_at, s.last_status, s.last_error_kind, "
    "s.last_error, s.last_checked_at, s.last_success_at, s.last_failure, s.last_failure_at, s.enabled_override, "
    "s.status_since, w.window_s, w.since, w.samples, w.errors, w.p50_ms, w.p95_ms, w.series, w.rate_limit, w.balance "
    "FROM provider_state s LEFT JOIN probe_windows w ON w.provider_id = s.provider_id"
)


async def stored_health(store: Store, provider_ids: Sequence[str] | None = None) -> dict[str, StoredHealth]:
    """provider_id -> its stored state: one row per provider, whatever the history (None: all)."""
    if provider_ids is None or len(provider_ids) > 200:  # most of the table: one scan beats many lookups
        wanted = None if provider_ids is None else set(provider_ids)
        rows = [r for r in await store.fetchall(_STATE_SQL) if wanted is None or r[0] in wanted]
    else:
        rows = []
        for start in range(0, len(provider_ids), 500):
            chunk = list(provider_ids[start : start + 500])
            rows += await store.fetchall(f"{_STATE_SQL} WHERE s.provider_id IN ({_placeholders(len(chunk))})", chunk)
    out = {}
    for r in rows:
        out[r[0]] = StoredHealth(
            provider_id=r[0],
            circuit=CircuitState(r[1], int(r[2]), r[3]),
            last_status=r[4],
            last_error_kind=r[5],
            last_error=r[6],
            last_checked_at=r[7],
            last_success_at=r[8],
            last_failure=r[9],
            last_failure_at=r[10],
            enabled_override=None if r[11] is None else bool(r[11]),
            status_since=r[12],
            window_s=r[13],
            window_since=r[14],
            samples=int(r[15] or 0),
            errors=int(r[16] or 0),
            p50_ms=r[17],
            p95_ms=r[18],
            series_json=r[19],
            rate_limit=RateLimit.from_json(json.loads(r[20])) if r[20] else None,
            balance=Balance.from_json(json.loads(r[21])) if r[21] else None,
        )
    return out


async def circuit_states(store: Store, settings: HealthSettings, now: float) -> dict[str, CircuitState]:
    breaker = CircuitBreaker(settings)
    rows = await store.fetchall("SELECT provider_id, circuit, consecutive_failures, opened_at FROM provider_state")
    return {
        r["provider_id"]: breaker.current(
            CircuitState(r["circuit"], int(r["consecutive_failures"]), r["opened_at"]), now
        )
        for r in rows
    }


def _result_from_row(row: sqlite3.Row | Mapping[str, Any], name: str) -> ProbeResult:
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


async def recent_probes(
    store: Store, provider_id: str, since: float, limit: int = 50, name: str | None = None
) -> list[ProbeResult]:
    """A provider's probes since `since`, newest first (raw rows: the last RAW_KEEP_S at most)."""
    rows = await store.fetchall(
        "SELECT * FROM probe_results WHERE provider_id = ? AND checked_at >= ? ORDER BY checked_at DESC LIMIT ?",
        (provider_id, since, limit),
    )
    return [_result_from_row(r, name or provider_id) for r in rows]


@dataclass(frozen=True)
class ProbeMinute:
    """One minute of a provider's probes: for latency and error charts over hours and days."""

    minute: float  # start, unix seconds
    probes: int
    errors: int
    mean_ms: float | None  # over probes that got an HTTP answer
    max_ms: float | None


async def probe_history(store: Store, provider_id: str, since: float, until: float) -> list[ProbeMinute]:
    """A provider's per-minute probe summaries with since <= minute start < until, oldest first."""
    rows = await store.fetchall(
        "SELECT minute, probes, errors, latency_n, latency_sum, latency_max FROM probe_minutes "
        "WHERE provider_id = ? AND minute >= ? AND minute < ? ORDER BY minute",
        (provider_id, since, until),
    )
    return [
        ProbeMinute(r[0], int(r[1]), int(r[2]), r[4] / r[3] if r[3] else None, r[5] if r[3] else None) for r in rows
    ]


@dataclass(frozen=True)
class LatencyHistory:
    """A provider's probe latency over a range in equal time buckets, oldest first, from the per-minute
    summaries: each bucket's mean latency, None where no probe answered (a gap, not a zero). The p95 is
    over the same minutes' means (the minutes keep no finer distribution)."""

    since: float
    until: float
    buckets: list[float | None]
    p95_ms: float | None
    samples: int  # probes in the range
    failed: int  # of which failed


async def latency_history(store: Store, provider_id: str, since: float, until: float, buckets: int) -> LatencyHistory:
    """Probe latency of `provider_id` over [since, until) in `buckets` equal time buckets."""
    minutes = await probe_history(store, provider_id, since, until)
    width = (until - since) / buckets if buckets > 0 and until > since else 0.0
    sums = [0.0] * max(0, buckets)
    weights = [0] * max(0, buckets)
    means: list[float] = []
    for m in minutes:
        if m.mean_ms is None or not width:
            continue
        answered = max(1, m.probes - m.errors)
        i = min(buckets - 1, int((m.minute - since) / width))
        sums[i] += m.mean_ms * answered
        weights[i] += answered
        means.append(m.mean_ms)
    ordered = sorted(means)
    return LatencyHistory(
        since=since,
        until=until,
        buckets=[sums[i] / weights[i] if weights[i] else None for i in range(len(sums))],
        p95_ms=ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else None,
        samples=sum(m.probes for m in minutes),
        failed=sum(m.errors for m in minutes),
    )


# -- pruning --------------------------------------------------------------------------------------
def raw_keep(settings: HealthSettings, keep_s: float = RAW_KEEP_S) -> float:
    """How long raw probes stay: the window's expiry reads them until they leave it (twice the window
    covers a collector that paused for up to one window)."""
    return max(keep_s, 2.0 * settings.window)


async def delete_in_chunks(
    store: Store, table: str, where: str, params: Sequence[Any], *, key: str = "rowid", chunk: int = PRUNE_CHUNK
) -> int:
    """DELETE ... WHERE `where`, at most `chunk` rows per statement (each its own short write), so other
    writers wait milliseconds, not seconds. `key`: the row's key columns. Returns how many rows went."""
    total = 0
    while True:
        gone = await store.execute(
            f"DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {where} LIMIT {int(chunk)})", params
        )
        total += max(gone, 0)
        if gone < chunk:
            return total


async def reclaim_space(store: Store, pages_per_step: int = 2000) -> int:
    """Give pages freed by pruning back to the file system, a bounded number per statement (a database
    in incremental auto-vacuum mode; in any other mode this does nothing). Returns pages freed."""
    total = 0
    while True:
        row = await store.fetchone("PRAGMA freelist_count")
        free = int(row[0]) if row else 0
        mode = await store.fetchone("PRAGMA auto_vacuum")
        if free == 0 or not mode or int(mode[0]) != 2:
            return total
        await store.execute(f"PRAGMA incremental_vacuum({min(free, int(pages_per_step))})")
        after = await store.fetchone("PRAGMA freelist_count")
        freed = free - (int(after[0]) if after else 0)
        if freed <= 0:
            return total
        total += freed


async def prune_probe_results(store: Store, now: float, keep_s: float = RAW_KEEP_S) -> int:
    """Drop raw probe results older than `keep_s` in bounded chunks; returns how many went."""
    return await delete_in_chunks(store, "probe_results", "checked_at < ?", (now - keep_s,))


async def prune_probe_history(store: Store, now: float, keep_s: float = HISTORY_KEEP_S) -> int:
    """Drop per-minute summaries older than `keep_s`."""
    return await delete_in_chunks(store, "probe_minutes", "minute < ?", (now - keep_s,), key="provider_id, minute")
