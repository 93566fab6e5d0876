"""Usage patterns and reliability advice on a real file, every figure against the test's own sums."""

from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from llmpulse.core.store import Store
from llmpulse.core.usage.advice import reliability_advice
from llmpulse.core.usage.config import PriceConfig, PriceOverride
from llmpulse.core.usage.patterns import usage_patterns
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.queries import fallback_pairs
from llmpulse.core.usage.records import UsageRecord
from llmpulse.core.usage.rollup import ingest

BERLIN = ZoneInfo("Europe/Berlin")
PRICES = {
    ("openai", "gpt-4o"): PriceOverride(input=2.5, output=10.0),
    ("openai", "gpt-4o-mini"): PriceOverride(input=0.15, output=0.6),
    ("groq", "llama-3.3-70b"): PriceOverride(input=0.59, output=0.79),
}


def pricing() -> Pricing:
    return Pricing(PriceConfig(overrides=PRICES))


def call(ts: float, provider: str, model: str, **kw) -> UsageRecord:
    return UsageRecord(ts=ts, provider=provider, model=model, input_tokens=1000, output_tokens=100, **kw)


async def test_patterns_hours_weekdays_growth_and_trends(tmp_path: Path) -> None:
    now = time.time()
    since = now - 4 * 86400
    records = []
    for i in range(40):  # gpt-4o all along, more in the second half
        records.append(call(since + 3600 + i * 8000, "openai", "gpt-4o"))
    for i in range(12):  # mini only in the second half: new, so it leads the growers
        records.append(call(now - 3600 - i * 5000, "openai", "gpt-4o-mini"))
    store = await Store.open(tmp_path / "p.db")
    try:
        await ingest(store, records, pricing())
        got = await usage_patterns(store, "model", since, now, BERLIN)
    finally:
        await store.close()

    hours = [0] * 24
    weekdays = [0] * 7
    for r in records:
        hour_start = r.ts - r.ts % 3600
        local = dt.datetime.fromtimestamp(hour_start, BERLIN)
        hours[local.hour] += 1
        weekdays[local.weekday()] += 1
    assert [s.requests for s in got.by_hour] == hours
    assert [s.requests for s in got.by_weekday] == weekdays

    middle = since + (now - since) / 2
    first = sum(1 for r in records if r.model == "gpt-4o" and r.ts - r.ts % 3600 < middle)
    second = sum(1 for r in records if r.model == "gpt-4o" and r.ts - r.ts % 3600 >= middle)
    assert [m.model for m in got.most_used] == ["openai/gpt-4o", "openai/gpt-4o-mini"]
    grow = {m.model: m for m in got.fastest_growing}
    assert got.fastest_growing[0].model == "openai/gpt-4o-mini" and grow["openai/gpt-4o-mini"].growth is None
    if second > first:
        assert abs(grow["openai/gpt-4o"].growth - (second / first - 1)) < 1e-9

    trend = {t.key: t for t in got.trends}["gpt-4o"]
    per_day: dict[float, int] = {}
    for r in records:
        if r.model == "gpt-4o":
            per_day[r.ts - r.ts % 86400] = per_day.get(r.ts - r.ts % 86400, 0) + 1
    assert dict(zip(trend.days, trend.requests, strict=True)) == {d: per_day.get(d, 0) for d in trend.days}
    assert sum(trend.requests) == 40


async def test_a_24h_report_counts_the_last_86400_seconds_in_every_figure(tmp_path: Path) -> None:
    """The "24h" range starting mid-hour: calls in that hour before the start, and in that UTC day, are outside
    it. Hours, weekdays, per-day trends and the hourly totals all add up to the calls in the range
    (before, the first hour and day were read whole: 2,367 by weekday against 2,206 in total)."""
    from llmpulse.core.usage.queries import hourly_totals

    now = time.time()
    now = now - now % 3600 + 37 * 60 + 11.5  # a range starting and ending mid-hour
    since = now - 86400
    records = [call(since - 120 - 97 * i, "openai", "gpt-4o") for i in range(30)]  # just before: out
    records += [call(since + 5 + 173 * i, "groq", "llama-3.3-70b") for i in range(499)]
    records += [call(since + 11 + 211 * i, "openai", "gpt-4o-mini") for i in range(409)]
    records.append(call(now - 1, "groq", "llama-3.3-70b"))
    store = await Store.open(tmp_path / "p.db")
    try:
        await ingest(store, records, pricing())
        got = await usage_patterns(store, "provider", since, now, BERLIN)
        hours = await hourly_totals(store, since, now)
    finally:
        await store.close()

    inside = [r for r in records if since <= r.ts <= now]
    assert len(inside) == 909 and len(records) - len(inside) == 30
    assert sum(s.requests for s in got.by_hour) == len(inside)
    assert sum(s.requests for s in got.by_weekday) == len(inside)
    assert sum(n for _, n, _ in hours) == len(inside)
    first_hour = since - since % 3600
    assert {h: n for h, n, _ in hours}[first_hour] == sum(1 for r in inside if r.ts < first_hour + 3600)
    cost = {r.provider: 0.0 for r in inside}
    per_day: dict[tuple[str, float], int] = {}
    for r in inside:
        price = PRICES[(r.provider, r.model)]
        cost[r.provider] += (r.input_tokens * price.input + r.output_tokens * price.output) / 1e6
        per_day[(r.provider, r.ts - r.ts % 86400)] = per_day.get((r.provider, r.ts - r.ts % 86400), 0) + 1
    trends = {t.key: t for t in got.trends}
    for provider, expected in cost.items():
        assert math.isclose(sum(trends[provider].cost_usd), expected, rel_tol=1e-9)
        days = dict(zip(trends[provider].days, trends[provider].requests, strict=True))
        assert days == {d: per_day.get((provider, d), 0) for d in trends[provider].days}
    assert math.isclose(sum(s.cost_usd for s in got.by_weekday), sum(cost.values()), rel_tol=1e-9)


async def test_advice_names_error_patterns_and_the_cheapest_model_within_bounds(tmp_path: Path) -> None:
    now = time.time()
    records = []
    for i in range(40):  # groq: 10 of 40 fail, 7 rate limited, 3 server errors; those fell back to openai
        failed = i % 4 == 0
        kind = ("rate_limited" if i < 28 else "server_error") if failed else None
        records.append(
            call(
                now - 5000 + i,
                "groq",
                "llama-3.3-70b",
                status="error" if failed else "ok",
                error_kind=kind,
                latency_ms=300.0,
            )
        )
        if failed:
            records.append(
                call(now - 5000 + i, "openai", "gpt-4o", is_fallback=True, fallback_from="groq", latency_ms=900.0)
            )
    for i in range(30):  # classify: mostly on gpt-4o, but mini is within bounds and far cheaper
        records.append(call(now - 4000 + i, "openai", "gpt-4o", task_type="classify", latency_ms=800.0 + i))
        records.append(call(now - 3000 + i, "openai", "gpt-4o-mini", task_type="classify", latency_ms=400.0 + i))
    records.append(call(now - 100, "openai", "gpt-4o", task_type="classify", latency_ms=800.0))
    store = await Store.open(tmp_path / "a.db")
    try:
        await ingest(store, records, pricing())
        fallbacks = await fallback_pairs(store, now - 86400, now)
        advice = await reliability_advice(store, now - 86400, now, fallbacks, 0.05, 5000.0)
    finally:
        await store.close()

    [groq] = advice.errors
    groq_calls = [r for r in records if r.provider == "groq"]
    errors = [r for r in groq_calls if r.status == "error"]
    assert (groq.requests, groq.errors) == (len(groq_calls), len(errors))
    assert groq.kinds == {
        "rate_limited": sum(r.error_kind == "rate_limited" for r in errors),
        "server_error": sum(r.error_kind == "server_error" for r in errors),
    }
    assert groq.first_error_at == min(r.ts for r in errors)
    assert groq.failed_over_to == {"openai": len(errors)}

    [choice] = advice.model_choices
    per_request = {
        m: (1000 * PRICES[("openai", m)].input + 100 * PRICES[("openai", m)].output) / 1e6
        for m in ("gpt-4o", "gpt-4o-mini")
    }
    assert (choice.task_type, choice.current, choice.suggested) == ("classify", "openai/gpt-4o", "openai/gpt-4o-mini")
    assert abs(choice.suggested_cost_per_request - per_request["gpt-4o-mini"]) < 1e-12
    assert abs(choice.saving - (1 - per_request["gpt-4o-mini"] / per_request["gpt-4o"])) < 1e-9
    mini = sorted(400.0 + i for i in range(30))
    assert choice.suggested_p95_ms == mini[math.ceil(0.95 * len(mini)) - 1]  # nearest rank
    assert any(line.startswith("groq: 25.0% of 40 requests failed, mostly rate_limited") for line in advice.lines)
