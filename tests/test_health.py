"""Health over the window, bands, the circuit breaker and failover order, on a real SQLite file."""

from __future__ import annotations

from dataclasses import replace

import pytest

from llmpulse.core.catalog import CATALOG_BY_ID, resolve_providers
from llmpulse.core.health import (
    CircuitBreaker,
    CircuitState,
    error_band,
    latency_band,
    load_health,
    next_provider,
    prune_probe_results,
    recent_probes,
    record_outcome,
    record_probe_results,
)
from llmpulse.core.health_settings import HealthSettings
from llmpulse.core.health_state import latency_bucket
from llmpulse.core.probe import ProbeResult
from llmpulse.core.ratelimit import RateLimit, parse_rate_limit, parse_reset
from llmpulse.core.store import Store

SETTINGS = HealthSettings(window=900, failure_threshold=3, cooldown=60)
T0 = 1_800_000_000.0


def result(pid: str, at: float, status: str = "healthy", kind: str | None = None, latency: float | None = 100.0):
    return ProbeResult(
        pid,
        pid,
        at,
        status,
        kind,
        None if kind is None else f"{kind} happened",
        latency,
        200 if status == "healthy" else 500,
        RateLimit(requests_limit=100, requests_remaining=40),
    )


def test_breaker_opens_half_opens_and_closes():
    b = CircuitBreaker(SETTINGS)
    s = CircuitState()
    for i in range(2):
        s = b.after(s, False, T0 + i)
    assert s.circuit == "closed" and s.consecutive_failures == 2
    s = b.after(s, False, T0 + 2)
    assert s.circuit == "open" and s.opened_at == T0 + 2
    assert b.current(s, T0 + 30).circuit == "open"
    assert b.current(s, T0 + 62).circuit == "half_open"
    reopened = b.after(s, False, T0 + 62)  # the trial failed
    assert reopened.circuit == "open" and reopened.opened_at == T0 + 62
    closed = b.after(reopened, True, T0 + 200)  # half_open by then, and the trial worked
    assert closed == CircuitState("closed", 0, None)


def test_bands_follow_the_seed_thresholds():
    assert [error_band(r, SETTINGS) for r in (0.0, 0.02, 0.07, 0.2, None)] == [
        "excellent",
        "good",
        "concerning",
        "critical",
        None,
    ]
    assert [latency_band(ms, SETTINGS) for ms in (100, 700, 2000, 5000)] == ["excellent", "good", "acceptable", "slow"]


def test_rate_limit_header_styles():
    openai = parse_rate_limit(
        {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "50",
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "900",
            "x-ratelimit-reset-requests": "6m0s",
        }
    )
    assert openai.headroom == pytest.approx(0.1) and openai.reset_s == 360
    assert parse_reset("1m30.5s") == 90.5 and parse_reset("250ms") == 0.25 and parse_reset("nonsense") is None
    assert parse_rate_limit({"retry-after-ms": "1500"}).retry_after_s == 1.5
    assert parse_rate_limit({"content-type": "application/json"}) is None


async def test_window_stats_circuit_and_next_provider(tmp_path):
    providers = resolve_providers(
        {i: CATALOG_BY_ID[i] for i in ("openai", "anthropic", "groq")},
        {"OPENAI_API_KEY": "k1", "ANTHROPIC_API_KEY": "k2", "GROQ_API_KEY": "k3"},
    )
    store = await Store.open(tmp_path / "h.db")
    try:
        # openai: 9 good probes and one failure; groq: fails every time (circuit opens); an old probe
        # outside the window must not count.
        await record_probe_results(store, [result("openai", T0 - 5000, "failed", "server_error")], SETTINGS, T0 - 5000)
        for i in range(10):
            at = T0 + i * 30
            rs = [
                result("openai", at, latency=100 + i * 10)
                if i != 4
                else result("openai", at, "failed", "timeout", None),
                result("anthropic", at, latency=2500.0),
                result("groq", at, "failed", "server_error"),
            ]
            await record_probe_results(store, rs, SETTINGS, at)
        now = T0 + 285  # groq reopened at T0+240 (its half-open trial failed): still open
        health = {h.provider_id: h for h in await load_health(store, providers, SETTINGS, now)}
        o = health["openai"]
        assert o.samples == 10 and o.error_rate == pytest.approx(0.1) and o.error_band == "concerning"
        # Nearest rank of 100..190 without the failed 140; the window's histogram is within 1%.
        assert o.p50_ms == pytest.approx(150, rel=0.01) and o.p95_ms == pytest.approx(190, rel=0.01)
        assert o.latency_series[-1] == 190
        assert o.circuit == "closed" and o.last_error == "timeout happened" and o.rate_limit.headroom == 0.4
        assert health["anthropic"].latency_band == "acceptable"
        g = health["groq"]
        assert g.circuit == "open" and g.consecutive_failures == 10 and g.error_band == "critical"
        # How long each state has lasted: openai healthy again since the probe after its failure (i=5);
        # groq failed since the window's first probe (the one before the window does not count).
        assert o.status_since == T0 + 5 * 30 and g.status_since == T0
        # Failover order: by priority (ollama < openai 20 < anthropic 21 < groq 33), skipping groq's open circuit
        assert next_provider(health.values()).provider_id == "openai"
        assert next_provider(health.values(), after="openai").provider_id == "anthropic"
        assert next_provider(health.values(), after="anthropic") is None
        disabled = [replace(h, enabled=False) if h.provider_id == "openai" else h for h in health.values()]
        assert next_provider(disabled).provider_id == "anthropic"
        # Enough real traffic decides the error rate and latency (p50 and p95 from the same calls); a
        # trickle of it does not, the probes' own figures stand.
        stats = {"openai": type("S", (), {"requests": 90, "errors": 9, "p95_ms": 800.0, "p50_ms": 300.0})()}
        o2 = (await load_health(store, providers, SETTINGS, now, stats))[0]
        assert (o2.samples, o2.error_rate, o2.error_source) == (90, pytest.approx(0.1), "traffic")
        assert (o2.p50_ms, o2.p95_ms, o2.latency_source) == (300.0, 800.0, "traffic")
        thin = {"openai": type("S", (), {"requests": 3, "errors": 3, "p95_ms": 9000.0, "p50_ms": 9000.0})()}
        o3 = (await load_health(store, providers, SETTINGS, now, thin))[0]
        assert o3.error_source == o3.latency_source == "probes" and o3.p95_ms != 9000.0
        # The failover client's outcomes move the same circuit; the cool-down half-opens it.
        state = await record_outcome(store, "groq", True, SETTINGS, now + 61)
        assert state.circuit == "closed"
        recent = await recent_probes(store, "openai", since=T0, limit=3)
        assert [r.checked_at for r in recent] == [T0 + 270, T0 + 240, T0 + 210]
        assert await prune_probe_results(store, now, keep_s=1000) == 1
    finally:
        await store.close()


async def test_state_survives_a_restart(tmp_path):
    store = await Store.open(tmp_path / "h.db")
    for i in range(3):
        await record_probe_results(store, [result("openai", T0 + i, "failed", "connect")], SETTINGS, T0 + i)
    await store.close()
    store = await Store.open(tmp_path / "h.db")
    providers = resolve_providers({"openai": CATALOG_BY_ID["openai"]}, {"OPENAI_API_KEY": "k"})
    [h] = await load_health(store, providers, SETTINGS, T0 + 10)
    await store.close()
    assert (h.circuit, h.status, h.error_kind) == ("open", "failed", "connect")


async def test_window_aggregates_follow_the_raw_probes_as_they_expire(tmp_path):
    """Many rounds through a short window: what load_health says matches the probes of the window,
    computed here from the results themselves; and it is read without the raw rows."""
    import random

    settings = HealthSettings(window=120, failure_threshold=3, cooldown=60)
    providers = resolve_providers(
        {i: CATALOG_BY_ID[i] for i in ("openai", "groq")}, {"OPENAI_API_KEY": "k1", "GROQ_API_KEY": "k2"}
    )
    rng = random.Random(7)
    sent: list[ProbeResult] = []
    store = await Store.open(tmp_path / "w.db")
    try:
        for i in range(60):
            at = T0 + i * 7
            batch = []
            for pid in ("openai", "groq"):
                roll = rng.random()
                if roll < 0.15:
                    batch.append(result(pid, at, "failed", "server_error", rng.uniform(5, 50)))
                elif roll < 0.25:
                    batch.append(result(pid, at, "degraded", "rate_limited", rng.uniform(5, 50)))
                else:
                    batch.append(result(pid, at, latency=rng.uniform(20, 4000)))
            sent += batch
            await record_probe_results(store, batch, settings, at)
            if i % 9 != 8:
                continue
            health = {h.provider_id: h for h in await load_health(store, providers, settings, at)}
            for pid in ("openai", "groq"):
                window = [r for r in sent if r.provider_id == pid and r.checked_at >= at - settings.window]
                errors = sum(r.status == "failed" or r.error_kind == "rate_limited" for r in window)
                latencies = sorted(r.latency_ms for r in window)
                h = health[pid]
                assert h.samples == len(window) and h.error_rate == pytest.approx(errors / len(window))
                assert h.p95_ms == pytest.approx(latencies[-(-95 * len(latencies) // 100) - 1], rel=0.01)
                assert h.latency_series == [r.latency_ms for r in window][-30:]
                assert h.probe_status == window[-1].status  # the verdict (status) also weighs the error rate
        before = [h.to_json() for h in await load_health(store, providers, settings, at)]
        await store.execute("DELETE FROM probe_results")
        assert [h.to_json() for h in await load_health(store, providers, settings, at)] == before
        # A probe older than the window says nothing: the state is unknown, not the last one seen.
        [stale, _] = await load_health(store, providers, settings, at + settings.window + 1)
        assert (stale.status, stale.samples, stale.p95_ms) == ("unknown", 0, None)
    finally:
        await store.close()


async def test_a_window_row_another_writer_changed_is_read_as_it_stands(tmp_path):
    """A round reuses what it wrote the round before only while the row still holds exactly that: a row
    another process rewrote in between is read from the database. The series is written as compact JSON
    of the points themselves."""
    import json
    import sqlite3

    db = tmp_path / "w.db"
    providers = resolve_providers({"openai": CATALOG_BY_ID["openai"]}, {"OPENAI_API_KEY": "k"})
    store = await Store.open(db)
    try:
        for i in range(3):
            await record_probe_results(store, [result("openai", T0 + i, latency=100.0 + i)], SETTINGS, T0 + i)
        with sqlite3.connect(db) as conn:  # another collector's round, say
            conn.execute(
                "UPDATE probe_windows SET samples = 2, latency_hist = ?, series = ? WHERE provider_id = 'openai'",
                (json.dumps({"300": 2}), json.dumps([[T0 + 1.5, 777.25], [T0 + 2.5, 777.25]])),
            )
        await record_probe_results(store, [result("openai", T0 + 3, latency=103.0)], SETTINGS, T0 + 3)
        [h] = await load_health(store, providers, SETTINGS, T0 + 3)
        assert h.samples == 3 and h.latency_series == [777.25, 777.25, 103.0]
        with sqlite3.connect(db) as conn:
            hist, series = conn.execute("SELECT latency_hist, series FROM probe_windows").fetchone()
        assert json.loads(hist) == {"300": 2, str(latency_bucket(103.0)): 1}
        assert series == f"[[{T0 + 1.5!r},777.25],[{T0 + 2.5!r},777.25],[{T0 + 3!r},103.0]]"
    finally:
        await store.close()


async def test_another_window_length_rebuilds_from_the_raw_probes(tmp_path):
    store = await Store.open(tmp_path / "w.db")
    providers = resolve_providers({"openai": CATALOG_BY_ID["openai"]}, {"OPENAI_API_KEY": "k"})
    try:
        for i in range(20):
            await record_probe_results(store, [result("openai", T0 + i * 10, latency=100.0 + i)], SETTINGS, T0 + i * 10)
        short = replace(SETTINGS, window=45)
        await record_probe_results(store, [result("openai", T0 + 200, latency=500.0)], short, T0 + 200)
        [h] = await load_health(store, providers, short, T0 + 200)
        assert h.samples == 5 and h.latency_series == [116.0, 117.0, 118.0, 119.0, 500.0]
    finally:
        await store.close()


async def test_per_minute_history_and_chunked_pruning(tmp_path):
    from llmpulse.core.health_state import probe_history, prune_probe_history

    store = await Store.open(tmp_path / "m.db")
    try:
        for i in range(12):  # 10 s apart: two minutes
            at = 1_800_000_000.0 + i * 10  # a whole minute
            status, kind = ("failed", "timeout") if i == 3 else ("healthy", None)
            await record_probe_results(store, [result("openai", at, status, kind, 100.0 + i * 10)], SETTINGS, at)
        minutes = await probe_history(store, "openai", 1_800_000_000.0, 1_800_000_120.0)
        assert [(m.minute, m.probes, m.errors) for m in minutes] == [
            (1_800_000_000.0, 6, 1),
            (1_800_000_060.0, 6, 0),
        ]
        # The failed probe got an HTTP answer (500): its latency counts, as in the window.
        assert minutes[0].mean_ms == pytest.approx(sum(100.0 + i * 10 for i in range(6)) / 6)
        assert minutes[1].max_ms == 210.0
        assert await prune_probe_results(store, 1_800_000_115.0, keep_s=60) == 6  # 0..50 s
        assert await prune_probe_history(store, 1_800_000_061.0, keep_s=1) == 1
        assert [m.minute for m in await probe_history(store, "openai", 0, 2e9)] == [1_800_000_060.0]
    finally:
        await store.close()


async def test_pruning_goes_in_bounded_chunks_and_gives_the_space_back(tmp_path):
    from llmpulse.core.health_state import delete_in_chunks, reclaim_space

    store = await Store.open(tmp_path / "p.db")
    try:
        assert (await store.fetchone("PRAGMA auto_vacuum"))[0] == 2  # incremental, on a new database
        rows = [result("openai", T0 + i, latency=100.0) for i in range(3000)]
        await record_probe_results(store, rows, SETTINGS, T0 + 3000)
        statements: list[str] = []
        await store.run_sync(lambda conn: conn.set_trace_callback(statements.append))
        assert await delete_in_chunks(store, "probe_results", "checked_at < ?", (T0 + 2500,), chunk=1000) == 2500
        await store.run_sync(lambda conn: conn.set_trace_callback(None))
        assert sum(s.startswith("DELETE") for s in statements) == 3  # 1000 + 1000 + 500
        assert (await store.fetchone("SELECT COUNT(*) FROM probe_results"))[0] == 500
        free = (await store.fetchone("PRAGMA freelist_count"))[0]
        assert free > 0 and await reclaim_space(store) == free
        assert (await store.fetchone("PRAGMA freelist_count"))[0] == 0
    finally:
        await store.close()
