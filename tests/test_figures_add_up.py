"""Figures that add up: exact percentiles, 'the last 24h' as 86,400 s, per-day and group-by rows that sum
to the total, savings that never count unknown-price traffic as saved. Every expected figure is computed
here from the records the test made, not read back from the code under test."""

from __future__ import annotations

import json
import math
import random
import time

import pytest

from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.queries import breakdown, daily_totals, provider_request_stats, total
from llmpulse.core.usage.records import record_from_mapping
from llmpulse.core.usage.rollup import ingest
from llmpulse.core.usage.savings import savings_report
from tests.cli_helpers import run_cli


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


DISTRIBUTIONS = {
    "lognormal": lambda rng: rng.lognormvariate(6.5, 0.6),
    "bimodal": lambda rng: rng.gauss(300, 30) if rng.random() < 0.9 else rng.gauss(4200, 400),
    "uniform-in-one-bucket": lambda rng: rng.uniform(1010, 1490),
    "long-tail": lambda rng: rng.paretovariate(1.5) * 200,
}


async def test_p95_is_exact_and_never_above_the_slowest_call(tmp_path):
    rng = random.Random(7)
    now = time.time()
    latencies: dict[str, list[float]] = {}
    records = []
    for name, draw in DISTRIBUTIONS.items():
        # a big group and a small one per distribution: small groups were up to +54% off
        for model, n in ((f"{name}-big", 2000), (f"{name}-small", 7)):
            for _ in range(n):
                ms = float(round(max(1.0, draw(rng))))  # stored in whole milliseconds (records.MAX_LATENCY_MS)
                latencies.setdefault(model, []).append(ms)
                records.append(
                    record_from_mapping(
                        {
                            "ts": now - rng.uniform(60, 20 * 3600),
                            "provider": "openai",
                            "model": model,
                            "latency_ms": ms,
                        },
                        now,
                    )
                )
    store = await Store.open(tmp_path / "p.db")
    try:
        await ingest(store, records, Pricing())
        rows = {g.key: g for g in await breakdown(store, "model", now - 86400, now)}
        for model, values in latencies.items():
            exact = nearest_rank(values, 0.95)
            got = rows[model].p95_ms
            assert got == pytest.approx(exact, rel=0.01), model
            assert got <= max(values), model
            assert rows[model].p50_ms == pytest.approx(nearest_rank(values, 0.5), rel=0.01), model
        everything = [v for vs in latencies.values() for v in vs]
        whole = await total(store, now - 86400, now, latency=True)
        assert whole.p95_ms == pytest.approx(nearest_rank(everything, 0.95), rel=0.01)
        stats = (await provider_request_stats(store, now - 86400, now))["openai"]
        assert stats.p95_ms == pytest.approx(nearest_rank(everything, 0.95), rel=0.01)
        assert stats.p50_ms == pytest.approx(nearest_rank(everything, 0.5), rel=0.01)
    finally:
        await store.close()


async def _store_with(tmp_path, rows: list[dict], now: float, pricing: Pricing | None = None) -> Store:
    store = await Store.open(tmp_path / "f.db")
    await ingest(store, [record_from_mapping(r, now) for r in rows], pricing or Pricing())
    return store


async def test_last_24h_is_86400_seconds_and_days_add_up(tmp_path):
    now = time.time()
    since = now - 86400
    inside = [since + 120 + 300 * i for i in range(50)] + [since + 30]  # the CLI below runs a little later
    # Also just before the cut, in the same minute as `since` (the roll-ups' finest bucket): not counted.
    just_before = [since - 0.5, since - (since % 60) + 0.25] if since % 60 > 0.5 else []
    # Inside "from the top of the hour 24h ago" but outside the last 86,400 s.
    outside = [since - 120 - 10 * i for i in range(8) if since - 120 - 10 * i >= since - since % 3600]
    rows = [
        {"ts": ts, "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1000, "latency_ms": 100.0}
        for ts in inside + outside + just_before
    ]
    store = await _store_with(tmp_path, rows, now)
    try:
        whole = await total(store, since, now, latency=True)
        assert whole.requests == len(inside) and whole.p95_exact
        (group,) = await breakdown(store, "model", since, now)
        assert group.requests == len(inside) and group.input_tokens == 1000 * len(inside)
        days = await daily_totals(store, since, now)
        assert sum(n for _, n, _ in days) == whole.requests
        assert sum(c for _, _, c in days) == pytest.approx(whole.cost_usd)
    finally:
        await store.close()
    report = run_cli(tmp_path, "--db", str(tmp_path / "f.db"), "report", "--since", "24h", "--format", "json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["total"]["requests"] == len(inside)
    assert sum(d["requests"] for d in data["daily"]) == len(inside)
    assert sum(g["requests"] for g in data["groups"]) == len(inside)


async def test_group_rows_add_up_to_the_total(tmp_path):
    now = time.time()
    rng = random.Random(5)
    rows = [
        {
            "ts": now - rng.uniform(60, 3 * 86400),
            "provider": "openai",
            "model": "gpt-4o-mini",
            "input_tokens": rng.randint(1, 3000),
            "latency_ms": float(rng.randint(100, 900)),
            "department": rng.choice(["Eng", "Support", None]),
            "agent": rng.choice(["triage", None, None]),
        }
        for _ in range(400)
    ]
    store = await _store_with(tmp_path, rows, now)
    try:
        for by, field in (("department", "department"), ("agent", "agent")):
            groups = await breakdown(store, by, now - 7 * 86400, now)
            assert sum(g.requests for g in groups) == len(rows), by
            missing = [r for r in rows if r[field] is None]
            (none,) = [g for g in groups if g.key == f"(no {by})"]
            assert none.requests == len(missing)
            assert none.input_tokens == sum(r["input_tokens"] for r in missing)
            assert none.p95_ms == pytest.approx(nearest_rank([r["latency_ms"] for r in missing], 0.95), rel=0.01)
    finally:
        await store.close()


async def test_savings_leave_unknown_prices_out_and_say_so(tmp_path):
    now = time.time()
    pricing = Pricing(local_providers=["ollama"])
    rows = []
    for i in range(10):
        rows.append({"ts": now - 600 - i, "provider": "openai", "model": "gpt-4o", "input_tokens": 10_000})
        rows.append({"ts": now - 600 - i, "provider": "ollama", "model": "llama3.2", "input_tokens": 10_000})
        rows.append({"ts": now - 600 - i, "provider": "openai", "model": "mystery-model-x", "input_tokens": 10_000})
    store = await _store_with(tmp_path, rows, now, pricing)
    try:
        s = await savings_report(store, pricing, now - 3600, now, "1h")
    finally:
        await store.close()
    one = pricing.cost("openai", "gpt-4o", 10_000, 0)
    assert s.reference == "openai/gpt-4o"
    # On gpt-4o: its own 10 calls cost the same; the local ones would have cost 10 x one; the
    # mystery model's calls have no known actual cost, so they are not a saving.
    assert s.saved_usd == pytest.approx(10 * one)
    assert s.left_out_requests == 10 and s.left_out_models == ["openai/mystery-model-x"]
    report = run_cli(tmp_path, "--db", str(tmp_path / "f.db"), "report", "--since", "1h")
    assert report.returncode == 0, report.stderr
    assert "left out of that comparison: 10 requests of unknown price" in report.stdout
