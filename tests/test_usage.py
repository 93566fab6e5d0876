"""Usage records in, priced, rolled up and queried — checked against the raw records on a real SQLite file."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sqlite3
import tomllib

import pytest

from llmpulse.core.clock import ManualClock
from llmpulse.core.config import parse_config
from llmpulse.core.store import Store, busy_since
from llmpulse.core.usage.budgets import budget_statuses
from llmpulse.core.usage.config import BudgetConfig, PriceConfig, PriceOverride, UsageConfig
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.queries import (
    breakdown,
    fallback_pairs,
    p95_from_hist,
    provider_request_stats,
    prune_usage,
    segments,
    total,
    unknown_price_models,
    usage_summary,
)
from llmpulse.core.usage.recorder import Recorder
from llmpulse.core.usage.records import RecordError, record_from_mapping
from llmpulse.core.usage.rollup import ingest
from llmpulse.core.validate import ConfigError
from tests.cli_helpers import run_cli

T0 = 1_795_000_000.0  # 2026-11-18T...Z


def test_pricing_table_overrides_local_and_unknown():
    p = Pricing(PriceConfig(overrides={("openai", "gpt-4o"): PriceOverride(input=1.0, output=2.0)}), ["ollama"])
    assert p.cost("openai", "gpt-4o", 1_000_000, 1_000_000) == pytest.approx(3.0)  # negotiated rate wins
    assert Pricing().cost("openai", "gpt-4o", 1000, 500) == pytest.approx(0.0075)  # bundled table
    assert p.cost("ollama", "llama3.2", 10_000, 10_000) == 0.0
    assert Pricing().cost("openai", "no-such-model-xyz", 10, 10) is None  # unknown, never $0
    assert Pricing().cost("gemini", "gemini-2.5-flash", 1000, 100) > 0  # our id -> google


@pytest.mark.parametrize(
    "data,message",
    [
        ({"model": "gpt-4o"}, "provider: missing"),
        ({"provider": "openai"}, "model: missing"),
        ({"provider": "openai", "model": "m", "input_tokens": -1}, "input_tokens: found -1"),
        ({"provider": "openai", "model": "m", "status": "maybe"}, "status: found 'maybe'"),
        ({"provider": "openai", "model": "m", "latency_ms": "fast"}, "latency_ms"),
        ({"provider": "openai", "model": "m", "tokens": 3}, "tokens: unknown field"),
        ({"provider": "openai", "model": "m", "ts": "yesterday"}, "ts: found 'yesterday'"),
    ],
)
def test_bad_records_say_which_field(data, message):
    with pytest.raises(RecordError, match=message):
        record_from_mapping(data, T0)


def test_raw_provider_usage_objects():
    openai = record_from_mapping(
        {
            "provider": "openai",
            "model": "gpt-4o",
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 40}},
        },
        T0,
    )
    assert (openai.input_tokens, openai.output_tokens, openai.cache_read_tokens) == (100, 20, 40)
    anthropic = record_from_mapping(
        {
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "usage": {
                "input_tokens": 10,
                "output_tokens": 5,
                "cache_read_input_tokens": 30,
                "cache_creation_input_tokens": 7,
            },
        },
        T0,
    )
    assert (anthropic.input_tokens, anthropic.cache_read_tokens, anthropic.cache_write_tokens) == (47, 30, 7)
    gemini = record_from_mapping(
        {
            "provider": "gemini",
            "model": "gemini-2.5-flash",
            "usage": {"promptTokenCount": 12, "candidatesTokenCount": 3},
        },
        T0,
    )
    assert (gemini.input_tokens, gemini.output_tokens) == (12, 3)
    with pytest.raises(RecordError, match="usage"):
        record_from_mapping({"provider": "openai", "model": "m", "usage": [1, 2]}, T0)


def random_records(n: int, seed: int = 3):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append(
            record_from_mapping(
                {
                    "ts": T0 - rng.uniform(0, 10 * 86400),
                    "provider": rng.choice(["openai", "anthropic", "ollama"]),
                    "model": rng.choice(["gpt-4o", "gpt-4o-mini", "mystery-model"]),
                    "input_tokens": rng.randint(0, 5000),
                    "output_tokens": rng.randint(0, 900),
                    # latencies on histogram bucket edges too (50 and 100 ms: <= counts them in the lower bucket)
                    "latency_ms": rng.choice([50, 100, rng.uniform(20, 4000)]),
                    "status": "error" if rng.random() < 0.1 else "ok",
                    "department": rng.choice(["Eng", "Support", None]),
                    "request_id": f"r{i}",
                    "fallback_from": "groq" if rng.random() < 0.05 else None,
                },
                T0,
            )
        )
    return out


async def test_rollups_agree_with_the_raw_records(tmp_path):
    store = await Store.open(tmp_path / "u.db")
    records = random_records(3000)
    try:
        result = await ingest(store, records, Pricing(local_providers=["ollama"]))
        assert result.stored == 3000
        again = await ingest(store, records[:100], Pricing())
        assert (again.stored, again.duplicates) == (0, 100)  # dedupe by request_id
        # Odd edges on purpose: the range starts and ends mid-minute, mid-hour, mid-day.
        since, until = T0 - 3 * 86400 - 4321.5, T0 - 1234.5
        covered = segments(since, until)  # minutes where kept, else whole hours
        since_m, until_m = covered[0][1], covered[-1][2]
        assert since_m <= since and until_m >= until
        # ... and the figures are exact to the second all the same: the buckets' parts outside the
        # range are taken off again from the raw calls.
        since_m, until_m = since, until
        rows = await store.fetchall(
            "SELECT COALESCE(department, '(no department)') AS k, COUNT(*) AS n, SUM(status = 'error') AS e, "
            "SUM(COALESCE(cost_usd, 0)) AS c, SUM(cost_usd IS NULL) AS u, SUM(input_tokens + output_tokens) AS t "
            "FROM usage_records WHERE ts >= ? AND ts < ? GROUP BY 1",
            (since_m, until_m),
        )
        expected = {r["k"]: (r["n"], r["e"], pytest.approx(r["c"], rel=1e-9), r["u"], r["t"]) for r in rows}
        got = {
            g.key: (g.requests, g.errors, g.cost_usd, g.unknown_price_count, g.tokens)
            for g in await breakdown(store, "department", since, until)
        }
        # calls without a department are a row of their own: the rows add up to the whole
        assert got == expected and len(got) == 3
        # provider stats, unknown prices and fallback pairs come from the same roll-ups
        stats = await provider_request_stats(store, since, until)
        raw_openai = await store.fetchone(
            "SELECT COUNT(*) FROM usage_records WHERE provider = 'openai' AND ts >= ? AND ts < ?", (since_m, until_m)
        )
        assert stats["openai"].requests == raw_openai[0]
        unknown = {(p, m): n for p, m, n in await unknown_price_models(store, T0 - 20 * 86400, T0)}
        assert ("openai", "mystery-model") in unknown and ("ollama", "mystery-model") not in unknown  # local = $0
        pairs = await fallback_pairs(store, T0 - 20 * 86400, T0)
        assert pairs and all(src == "groq" for src, _, _ in pairs)
        # the query plan reads roll-ups only
        plan = await store.fetchall("EXPLAIN QUERY PLAN SELECT * FROM usage_rollups WHERE dim = 'x' AND grain = 'd'")
        assert not any("usage_records" in str(tuple(r)) for r in plan)
    finally:
        await store.close()


def test_segments_cover_the_range_exactly():
    # a short range in the past: minute precision at both ends
    since, until = T0 - 3 * 3600 - 125, T0 - 45 * 60 - 7
    segs = segments(since, until, now=T0)
    assert segs[0][1] == since - since % 60 and segs[-1][2] == -(-until // 60) * 60
    assert {g for g, _, _ in segs} == {"m", "h"}
    # a long range ending now: "the last 24h" starts at its minute, not at the top of the hour 24h ago,
    # and ends with the current hour (which holds nothing later than now)
    since, until = T0 - 86400, T0
    segs = segments(since, until, now=T0)
    assert segs[0][1] == since - since % 60 and segs[-1][2] == -(-T0 // 3600) * 3600
    assert {g for g, _, _ in segs} == {"m", "h"}
    # beyond the minute roll-ups' two days, the hour is the finest there is
    since = T0 - 3 * 86400 + 125
    segs = segments(since, until, now=T0)
    assert segs[0][1] == since - since % 3600 and {g for g, _, _ in segs} == {"h", "d"}
    for seq in (segs, segments(T0 - 3 * 3600 - 125, T0 - 45 * 60 - 7, now=T0)):
        for (_, _, end), (_, start, _) in itertools.pairwise(seq):
            assert end == start
    old = segments(T0 - 3 * 3600 - 125, T0 - 45 * 60 - 7, now=T0 + 30 * 86400)  # no minute roll-ups left
    assert {g for g, _, _ in old} <= {"h", "d"} and old[0][1] % 3600 == 0 and old[-1][2] % 3600 == 0


def test_p95_from_histogram():
    counts = [0] * 16
    counts[4] = 100  # all between 300 and 500 ms
    assert 300 <= p95_from_hist(counts) <= 500
    assert p95_from_hist([0] * 16) is None


async def test_recorder_flushes_on_timer_batch_and_exit(tmp_path):
    store = await Store.open(tmp_path / "r.db")
    clock = ManualClock(T0)
    try:
        async with Recorder(store, Pricing(), clock=clock, flush_interval=0.05, batch_size=10) as rec:
            rec.record(provider="openai", model="gpt-4o", input_tokens=10)
            await asyncio.sleep(0.2)
            assert (await store.fetchone("SELECT COUNT(*) FROM usage_records"))[0] == 1  # the timer
            for i in range(25):
                rec.record(provider="openai", model="gpt-4o", input_tokens=i, request_id=f"b{i}")
            with pytest.raises(RecordError):
                rec.record(provider="openai")
        # exit flushed the rest: nothing lost on a clean shutdown
        assert (await store.fetchone("SELECT COUNT(*) FROM usage_records"))[0] == 26
        assert (await total(store, T0 - 60, T0 + 60)).requests == 26
    finally:
        await store.close()


async def test_budget_projection_and_exhaust_time(tmp_path):
    store = await Store.open(tmp_path / "b.db")
    # now = 2026-11-21T00:00Z, 20 days into November; $10/day spent so far (10 records of $1 a day)
    month_start = 1_793_491_200.0  # 2026-11-01T00:00Z
    now = month_start + 20 * 86400
    pricing = Pricing(PriceConfig(overrides={("openai", "flat"): PriceOverride(input=1_000_000.0, output=0.0)}))
    records = [
        record_from_mapping(
            {
                "ts": month_start + d * 86400 + h * 3600,
                "provider": "openai",
                "model": "flat",
                "input_tokens": 1,
                "department": "Eng",
                "request_id": f"{d}-{h}",
            },
            now,
        )
        for d in range(int((now - month_start) // 86400))
        for h in range(10)
    ]
    await ingest(store, records, pricing)
    days = (now - month_start) / 86400
    cfg = UsageConfig(
        budgets=(
            BudgetConfig("total", "month", 300.0),
            BudgetConfig("department:Eng", "month", 1000.0),
            BudgetConfig("provider:anthropic", "day", 5.0),
        )
    )
    try:
        total_b, eng, anthropic = await budget_statuses(store, cfg, now)
    finally:
        await store.close()
    spent = 10.0 * days
    assert total_b.spent_usd == pytest.approx(spent) and total_b.burn_rate_usd_per_day == pytest.approx(10.0)
    assert total_b.projected_usd == pytest.approx(300.0)  # 30-day November at $10/day
    assert total_b.exhaust_at is None or total_b.exhaust_at >= total_b.period_end - 1
    assert eng.utilization == pytest.approx(spent / 1000) and eng.exhaust_at is None
    assert anthropic.spent_usd == 0 and anthropic.exhaust_at is None
    tight = UsageConfig(budgets=(BudgetConfig("total", "month", 250.0, (0.5, 0.8, 1.0)),))
    store = await Store.open(tmp_path / "b.db")
    try:
        [b] = await budget_statuses(store, tight, now)
    finally:
        await store.close()
    assert b.crossed == [0.5, 0.8] and b.exhaust_at == pytest.approx(now + (250 - spent) / 10 * 86400)


def test_budget_and_price_config_errors():
    good = parse_config(
        tomllib.loads(
            '[budget]\ntimezone = "Europe/Berlin"\n[[budgets]]\nscope = "provider:openai"\n'
            'period = "day"\nlimit_usd = 50\n[prices.overrides."openai/gpt-4o"]\n'
            "input = 2.0\noutput = 8.0\n"
        ),
        "t.toml",
    )
    assert good.usage.budgets[0].name == "provider:openai/day" and good.usage.timezone == "Europe/Berlin"
    for text, key in [
        ('[[budgets]]\nscope = "team:x"\nlimit_usd = 5\n', "budgets[0].scope"),
        ("[[budgets]]\nlimit_usd = -5\n", "budgets[0].limit_usd"),
        ('[[budgets]]\nperiod = "year"\nlimit_usd = 5\n', "budgets[0].period"),
        ('[budget]\ntimezone = "Mars/Olympus"\n', "budget.timezone"),
        ('[prices]\nreference_model = "gpt-4o"\n', "prices.reference_model"),
    ]:
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            parse_config(tomllib.loads(text), "t.toml")


async def test_retention_keeps_rollups(tmp_path):
    store = await Store.open(tmp_path / "p.db")
    try:
        await ingest(store, random_records(200), Pricing())
        before = await total(store, T0 - 30 * 86400, T0)
        removed = await prune_usage(store, T0, retention_s=5 * 86400)
        assert 0 < removed < 200
        after = await total(store, T0 - 30 * 86400, T0)
        assert after.requests == before.requests == 200  # day and hour roll-ups survive
        summary = await usage_summary(store, T0, "UTC")
        assert summary.price_table.startswith("genai-prices")
    finally:
        await store.close()


def test_import_record_report_budgets_cli(tmp_path):
    lines = [
        json.dumps(
            {"provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100, "department": "Eng"}
        ),
        "{not json",
        json.dumps({"provider": "openai"}),
        json.dumps(
            {"provider": "anthropic", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 100, "output_tokens": 10}}
        ),
        json.dumps({"provider": "openai", "model": "gpt-4o", "output_tokens": -4}),
        json.dumps({"provider": "acme", "model": "in-house-7b", "input_tokens": 5}),
    ]
    (tmp_path / "u.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "llmpulse.toml").write_text('[[budgets]]\nscope = "total"\nperiod = "month"\nlimit_usd = 10\n')
    db = ["--db", str(tmp_path / "u.db")]
    first = run_cli(tmp_path, *db, "import", "u.jsonl")
    assert first.returncode == 1
    assert first.stderr.splitlines() == [
        "line 2: not JSON (Expecting property name enclosed in double quotes); expected one JSON object per line",
        'line 3: model: missing; expected a model name like "gpt-4o"',
        "line 5: output_tokens: found -4; expected a whole number from 0 to 1,000,000,000",
    ]
    assert "imported 3 records" in first.stdout and "1 with unknown price" in first.stdout
    second = run_cli(tmp_path, *db, "import", "-", stdin="\n".join(lines[:1] + lines[3:4]) + "\n")
    assert second.returncode == 0 and "imported 0 records (2 already there" in second.stdout
    rec = run_cli(
        tmp_path,
        *db,
        "record",
        "--provider",
        "openai",
        "--model",
        "gpt-4.1",
        "--input-tokens",
        "10",
        "--fallback-from",
        "groq",
        "--department",
        "Eng",
    )
    assert rec.returncode == 0 and "recorded openai/gpt-4.1" in rec.stdout
    bad = run_cli(tmp_path, *db, "record", "--provider", "openai", "--model", "x", "--status", "meh")
    assert bad.returncode == 2 and "status" in bad.stderr and "Traceback" not in bad.stderr
    report = run_cli(tmp_path, *db, "report", "--by", "provider", "--format", "json")
    data = json.loads(report.stdout)
    assert {g["key"]: g["requests"] for g in data["groups"]} == {"openai": 2, "anthropic": 1, "acme": 1}
    assert data["total"]["unknown_price_count"] == 1
    assert sum(d["requests"] for d in data["daily"]) == data["total"]["requests"] == 4
    assert sum(h["requests"] for h in data["busiest_hours"]) == 4
    csv = run_cli(tmp_path, *db, "report", "--by", "department", "--format", "csv")
    assert csv.stdout.splitlines()[0].startswith("DEPARTMENT,REQUESTS") and "Eng,2," in csv.stdout
    # by model: a model of unknown price has no cost (blank in CSV, "price unknown" in the table), never $0;
    # tiny costs stay visible (fixed decimals, no 2.7e-05 for a spreadsheet to misread)
    import csv as csvlib

    by_model = {
        r["MODEL"]: r
        for r in csvlib.DictReader(
            run_cli(tmp_path, *db, "report", "--by", "model", "--format", "csv").stdout.splitlines()
        )
    }
    assert by_model["in-house-7b"]["COST USD"] == "" and by_model["in-house-7b"]["PRICE UNKNOWN"] == "1"
    gpt41 = Pricing().cost("openai", "gpt-4.1", 10, 0)
    assert by_model["gpt-4.1"]["COST USD"] == f"{gpt41:.6f}" and "e" not in by_model["gpt-4.1"]["COST USD"]
    table = run_cli(tmp_path, *db, "report", "--by", "model").stdout
    assert next(line for line in table.splitlines() if line.startswith("in-house-7b")).split()[3:5] == [
        "price",
        "unknown",
    ]
    assert 0 < gpt41 < 0.0001 and "<$0.0001" in next(line for line in table.splitlines() if line.startswith("gpt-4.1"))
    budgets = run_cli(tmp_path, *db, "budgets", "--json")
    [b] = json.loads(budgets.stdout)["budgets"]
    assert b["name"] == "total/month" and b["spent_usd"] > 0 and b["unknown_price_count"] == 1
    with sqlite3.connect(tmp_path / "u.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM usage_records").fetchone()[0] == 4


async def test_savings_reference_and_suggestions(tmp_path):
    from llmpulse.core.usage.savings import savings_report

    store = await Store.open(tmp_path / "s.db")
    pricing = Pricing(local_providers=["ollama"])
    now = T0
    recs = []
    for i in range(40):
        recs.append(
            record_from_mapping(
                {
                    "ts": now - 3600 - i,
                    "provider": "anthropic",
                    "model": "claude-sonnet-4-5",
                    "input_tokens": 100_000,
                    "output_tokens": 10_000,
                    "latency_ms": 3000,
                    "request_id": f"a{i}",
                },
                now,
            )
        )
        recs.append(
            record_from_mapping(
                {
                    "ts": now - 3600 - i,
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "input_tokens": 1000,
                    "output_tokens": 100,
                    "latency_ms": 250,
                    "request_id": f"o{i}",
                },
                now,
            )
        )
        recs.append(
            record_from_mapping(
                {
                    "ts": now - 3600 - i,
                    "provider": "ollama",
                    "model": "llama3.2",
                    "input_tokens": 50_000,
                    "output_tokens": 5_000,
                    "latency_ms": 900,
                    "request_id": f"l{i}",
                },
                now,
            )
        )
    try:
        await ingest(store, recs, pricing)
        s = await savings_report(store, pricing, now - 86400, now, "24h")
    finally:
        await store.close()
    sonnet = pricing.cost("anthropic", "claude-sonnet-4-5", 100_000, 10_000)
    assert s.reference == "anthropic/claude-sonnet-4-5"  # the priciest model in use
    assert s.actual_usd == pytest.approx(40 * (sonnet + pricing.cost("openai", "gpt-4o-mini", 1000, 100)))
    assert s.local_requests == 40
    assert s.local_reference_usd == pytest.approx(40 * pricing.cost("anthropic", "claude-sonnet-4-5", 50_000, 5_000))
    mini = pricing.cost("openai", "gpt-4o-mini", 100_000, 10_000) * 40
    assert s.suggestions[0] == (
        f"anthropic/claude-sonnet-4-5 cost ${40 * sonnet:,.2f} in 24h; the same tokens on "
        f"openai/gpt-4o-mini would cost ${mini:,.2f} ({1 - mini / (40 * sonnet):.0%} less)"
    )
    assert any(line.startswith("anthropic p95") and "the fastest provider (openai" in line for line in s.suggestions)


async def test_rollup_buckets_start_on_whole_minutes_hours_and_days(tmp_path):
    store = await Store.open(tmp_path / "b.db")
    now = T0 + 0.123
    try:
        await ingest(
            store,
            [
                record_from_mapping(
                    {"ts": now - i * 7.77, "provider": "openai", "model": "gpt-4o", "input_tokens": 1}, now
                )
                for i in range(500)
            ],
            Pricing(),
            now=now,
        )
        rows = await store.fetchall(
            "SELECT grain, start, COUNT(*) AS n FROM usage_rollups WHERE dim = 'total' GROUP BY grain, start"
        )
    finally:
        await store.close()
    width = {"m": 60, "h": 3600, "d": 86400}
    assert all(r["start"] % width[r["grain"]] == 0 for r in rows)
    assert sum(1 for r in rows if r["grain"] == "h") <= 3  # 500 records over ~65 minutes


def test_periods_in_the_budget_timezone():
    from zoneinfo import ZoneInfo

    from llmpulse.core.usage.queries import period_end, period_start

    berlin = ZoneInfo("Europe/Berlin")
    import datetime as dt

    # 2026-11-23T23:30Z is already Tuesday 00:30 on Nov 24 in Berlin
    now = dt.datetime(2026, 11, 23, 23, 30, tzinfo=dt.UTC).timestamp()
    assert period_start(now, "day", berlin) == dt.datetime(2026, 11, 24, tzinfo=berlin).timestamp()
    assert period_start(now, "day", ZoneInfo("UTC")) == dt.datetime(2026, 11, 23, tzinfo=dt.UTC).timestamp()
    assert period_start(now, "week", berlin) == dt.datetime(2026, 11, 23, tzinfo=berlin).timestamp()  # Monday
    assert period_start(now, "month", berlin) == dt.datetime(2026, 11, 1, tzinfo=berlin).timestamp()
    # DST: the October day in Berlin is 25 hours long; month ends are wall-clock midnights
    oct_start = dt.datetime(2026, 10, 25, tzinfo=berlin).timestamp()
    assert period_end(oct_start, "day", berlin) - oct_start == 25 * 3600
    dec = dt.datetime(2026, 12, 31, 12, tzinfo=berlin).timestamp()
    assert (
        period_end(period_start(dec, "month", berlin), "month", berlin)
        == dt.datetime(2027, 1, 1, tzinfo=berlin).timestamp()
    )


def test_two_writers_and_a_reader_lose_and_double_nothing(tmp_path):
    import subprocess
    import sys

    db = tmp_path / "shared.db"
    writer = (
        "import asyncio, sys\n"
        "from llmpulse.core.store import Store\n"
        "from llmpulse.core.usage.recorder import Recorder\n"
        "async def main(tag):\n"
        "    store = await Store.open(sys.argv[1])\n"
        "    async with Recorder(store, batch_size=97, flush_interval=0.01) as rec:\n"
        "        for i in range(3000):\n"
        "            rec.record(provider='openai', model='gpt-4o', input_tokens=10, output_tokens=1,\n"
        "                       request_id=f'{tag}-{i}', department=tag)\n"
        "            if i % 500 == 0:\n"
        "                await asyncio.sleep(0)\n"
        "    await store.close()\n"
        "asyncio.run(main(sys.argv[2]))\n"
    )
    reader = (
        "import asyncio, sys, time\n"
        "from llmpulse.core.store import Store\n"
        "from llmpulse.core.usage.queries import breakdown\n"
        "async def main():\n"
        "    store = await Store.open(sys.argv[1])\n"
        "    for _ in range(40):\n"
        "        await breakdown(store, 'department', time.time() - 3600, time.time() + 60)\n"
        "        await asyncio.sleep(0.02)\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
    )
    asyncio.run(_touch(db))
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(db), tag]) for tag in ("A", "B")]
    procs.append(subprocess.Popen([sys.executable, "-c", reader, str(db)]))
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM usage_records").fetchone() == (6000, 6000)
        rolled = dict(
            conn.execute(
                "SELECT key, SUM(requests) FROM usage_rollups WHERE dim = 'department' AND grain = 'd' GROUP BY key"
            ).fetchall()
        )
    assert rolled == {"A": 3000, "B": 3000}


async def _touch(db):
    store = await Store.open(db)  # schema created once, before the race
    await store.close()


async def test_fast_path_stores_what_the_careful_path_stores(tmp_path):
    from llmpulse.core.usage.records import fast_numbers
    from llmpulse.core.usage.rollup import record_row

    pricing = Pricing(PriceConfig(overrides={("acme", "in-house"): PriceOverride(input=1.0, output=2.0)}))
    samples = [
        {
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 1200,
            "output_tokens": 80,
            "latency_ms": 640.5,
            "department": "Support",
            "agent": "triage",
            "user": "dana",
            "task_type": "classify",
            "request_id": "r1",
        },
        {
            "ts": T0 - 5,
            "provider": "groq",
            "model": "llama-3.3-70b-versatile",
            "status": "error",
            "error_kind": "rate_limited",
            "fallback_from": "openai",
            "latency_ms": 12,
        },
        {"provider": "acme", "model": "in-house", "cache_read_tokens": 3, "input_tokens": 10, "is_fallback": True},
        {"provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": 300_000, "output_tokens": 10},  # a tier
        {"provider": "openai", "model": "no-such-model", "input_tokens": 5},
    ]
    store = await Store.open(tmp_path / "f.db")
    try:
        rec = Recorder(store, pricing, clock=ManualClock(T0))
        for fields in samples:
            rec.record(**fields)  # attribution first seen: the careful path
            assert fast_numbers(fields, lambda: T0) is not None
            rec.record(**fields)  # seen: numbers only
            careful, fast = rec.pending[-2:]
            assert fast == careful == record_row(record_from_mapping(fields, T0), pricing, careful[2])
        assert rec.pending[-1][8] is None and rec.pending[-3][8] == pytest.approx(
            pricing.cost("anthropic", "claude-sonnet-4-5", 300_000, 10)
        )
        # whitespace is trimmed once, and the trimmed attribution is what the fast path reuses
        rec.record(provider=" openai ", model="gpt-4o", input_tokens=1)
        rec.record(provider=" openai ", model="gpt-4o", input_tokens=2)
        assert rec.pending[-1][2] == rec.pending[-2][2] and rec._refs.placeholders[rec.pending[-1][2]][0] == "openai"
        await rec.flush()
        # a flushed attribution is referred to by its id from then on, and reads back the same
        rec.record(**samples[1])
        assert rec.pending[-1][2] > 0  # a usage_attrs id, no longer a placeholder
        await rec.flush()
        rows = await store.fetchall(
            "SELECT provider, status, error_kind, is_fallback, fallback_from, department "
            "FROM usage_records WHERE provider = 'groq'"
        )
        assert [tuple(r) for r in rows] == [("groq", "error", "rate_limited", 1, "openai", None)] * 3
    finally:
        await store.close()
    # anything unusual in the numbers takes the careful path (and its precise error)
    for odd in (
        {"provider": "openai", "model": "m", "input_tokens": 1.0},
        {"provider": "openai", "model": "m", "ts": "2026-11-23T10:00:00Z"},
        {"provider": "openai", "model": "m", "ts": T0 * 1000},
        {"provider": "openai", "model": "m", "input_tokens": 1, "cache_read_tokens": 2},
        {"provider": "openai", "model": "m", "request_id": " r"},
        {"provider": "openai", "model": "m", "latency_ms": -1},
    ):
        assert fast_numbers(odd, lambda: T0) is None


def test_cached_tokens_count_inside_input_tokens():
    with pytest.raises(RecordError, match=r"input_tokens: found 10, fewer than the cached tokens \(30 read"):
        record_from_mapping(
            {"provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": 10, "cache_read_tokens": 30}, T0
        )
    # genai-prices refuses such counts; a bad request must not mark the model unknown for everyone after it
    # (past its 200k-token tier, so calc_price itself prices it, not the linear rates)
    p = Pricing()
    assert p.cost("anthropic", "claude-sonnet-4-5", 250_000, 5, 300_000) is None
    assert p.cost("anthropic", "claude-sonnet-4-5", 250_000, 0) == pytest.approx(250_000 * 6 / 1e6)


async def test_migration_splits_old_records_without_losing_or_changing_any(tmp_path):
    from llmpulse.core.schema import MIGRATIONS

    db = tmp_path / "old.db"
    before_split = [m for m in MIGRATIONS if not "0191" <= m.name < "0200"]  # the split and what builds on it
    store = await Store.open(db, before_split)
    old = [
        (
            "id:a",
            T0,
            "openai",
            "gpt-4o",
            10,
            5,
            0,
            0,
            120.0,
            "ok",
            None,
            0,
            None,
            "Eng",
            None,
            None,
            None,
            None,
            None,
            "a",
            0.001,
        ),
        (
            None,
            T0 + 1,
            "groq",
            "llama",
            3,
            1,
            0,
            0,
            None,
            "error",
            "timeout",
            1,
            "openai",
            "Eng",
            "bot",
            "u1",
            "chat",
            "c",
            "/v1/chat",
            None,
            None,
        ),
        (
            None,
            T0 + 2,
            "openai",
            "gpt-4o",
            7,
            0,
            2,
            0,
            80.0,
            "ok",
            None,
            0,
            None,
            "Eng",
            None,
            None,
            None,
            None,
            None,
            None,
            0.0005,
        ),
    ]
    cols = (
        "dedupe_key, ts, provider, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
        "latency_ms, status, error_kind, is_fallback, fallback_from, department, agent, user, task_type, "
        "category, endpoint, request_id, cost_usd"
    )
    await store.executemany(f"INSERT INTO usage_records ({cols}) VALUES ({', '.join('?' * 21)})", old)
    await store.close()
    store = await Store.open(db)
    try:
        got = [tuple(r) for r in await store.fetchall(f"SELECT {cols} FROM usage_records ORDER BY id")]
        # A request id is kept once (request_id), no longer again as the key 'id:...'.
        assert got == [(None if row[19] is not None else row[0], *row[1:]) for row in old]
        assert (await store.fetchone("SELECT COUNT(*) FROM usage_attrs"))[0] == 2  # two attributions shared
        again = await ingest(
            store, [record_from_mapping({"provider": "openai", "model": "gpt-4o", "request_id": "a"}, T0)], Pricing()
        )
        assert again.duplicates == 1  # dedupe keys carried over
    finally:
        await store.close()


async def _rollup_table(store):
    rows = await store.fetchall("SELECT * FROM usage_rollups ORDER BY grain, dim, start, key")
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in rows]


async def test_recorder_sums_roll_up_exactly_like_sqlite(tmp_path):
    """The Recorder sums a batch's calls in Python (RollupSums.add_many); without sums, the stored rows are
    summed again after the insert. Same calls, same roll-ups — and a batch holding duplicates takes the
    second way."""
    records = random_records(1500, seed=11)
    names = (
        "ts",
        "provider",
        "model",
        "input_tokens",
        "output_tokens",
        "latency_ms",
        "status",
        "is_fallback",
        "department",
        "request_id",
        "fallback_from",
    )
    fields = [{k: getattr(r, k) for k in names if getattr(r, k) is not None} for r in records]
    by_sql = await Store.open(tmp_path / "sql.db")
    by_recorder = await Store.open(tmp_path / "rec.db")
    try:
        # SQLite's way: rows handed over without sums (ingest() and the Recorder both keep sums)
        from llmpulse.core.usage.records import attrs_of
        from llmpulse.core.usage.rollup import AttrRefs, ingest_rows, record_row

        refs, pricing = AttrRefs(by_sql), Pricing(local_providers=["ollama"])
        rows = [record_row(r, pricing, refs.ref(attrs_of(r))) for r in records]
        await ingest_rows(by_sql, rows, T0, None, refs.placeholders)
        rec = Recorder(by_recorder, Pricing(local_providers=["ollama"]), clock=ManualClock(T0), batch_size=10**6)
        for f in fields[:700]:
            rec.record(**f)
        # each call's roll-up values wait with its row; its attribution is a placeholder until stored
        assert len(rec.summed) == len(rec.pending) == 700
        assert all(ref < 0 for ref in {row[2] for row in rec.pending})
        await rec.flush()
        for f in fields[650:]:  # 50 already stored: this batch is summed from what was stored instead
            rec.record(**f)
        result = await rec.flush()
        assert (result.stored, result.duplicates) == (800, 50)
        assert await _rollup_table(by_recorder) == await _rollup_table(by_sql)
        assert len(await _rollup_table(by_sql)) > 100
    finally:
        await by_sql.close()
        await by_recorder.close()


async def test_a_flush_against_a_busy_database_waits_and_stores_everything(tmp_path):
    db = tmp_path / "busy.db"
    store = await Store.open(db)
    blocker = sqlite3.connect(db, timeout=0)
    try:
        await store.execute("PRAGMA busy_timeout = 50")
        rec = Recorder(store, Pricing(), clock=ManualClock(T0), batch_size=10**6)
        for i in range(30):
            rec.record(provider="openai", model="gpt-4o", input_tokens=100, output_tokens=i, latency_ms=300 + i)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        flush = asyncio.ensure_future(rec.flush())
        for _ in range(100):
            await asyncio.sleep(0.02)
            if busy_since(db) is not None:
                break
        assert busy_since(db) is not None and not flush.done()
        rec.record(provider="openai", model="gpt-4o", input_tokens=100, output_tokens=30, latency_ms=330)
        blocker.rollback()
        assert (await flush).stored == 30
        assert busy_since(db) is None
        assert (await rec.flush()).stored == 1
        t = await total(store, T0 - 60, T0 + 60)
        assert (t.requests, t.tokens) == (31, 31 * 100 + sum(range(31)))
        assert (await store.fetchone("SELECT COUNT(*) FROM usage_records"))[0] == 31
    finally:
        blocker.close()
        await store.close()


async def test_pruning_drops_attributions_no_kept_call_uses_and_a_recorder_that_remembers_one_recovers(tmp_path):
    from llmpulse.core.usage.queries import prune_usage

    store = await Store.open(tmp_path / "a.db")
    try:
        clock = ManualClock(T0)
        async with Recorder(store, Pricing(), clock=clock) as rec:
            rec.record(provider="openai", model="gpt-4o", department="Old", ts=T0 - 30 * 86400)
            await rec.flush()  # its own batch: its newest call marks when it was last used
            rec.record(provider="openai", model="gpt-4o", department="Kept", ts=T0 - 86400)
            await rec.flush()
            assert await prune_usage(store, T0, 7 * 86400) == 1
            names = {r[0] for r in await store.fetchall("SELECT department FROM usage_attrs")}
            assert names == {"Kept"}
            # The recorder still remembers the pruned attribution's id: its next call is stored with it.
            rec.record(provider="openai", model="gpt-4o", department="Old", ts=T0, input_tokens=5)
            await rec.flush()
        rows = await store.fetchall("SELECT department, input_tokens FROM usage_records ORDER BY ts")
        assert [tuple(r) for r in rows] == [("Kept", 0), ("Old", 5)]
        day = await store.fetchone(
            "SELECT requests FROM usage_rollups WHERE grain = 'd' AND dim = 'department' AND key = 'Old' AND start = ?",
            (T0 - T0 % 86400,),
        )
        assert day is not None and day[0] == 1
    finally:
        await store.close()
