"""Costs true to what providers report: DeepSeek's cache hits are cache reads (priced as such, at the time
of the call), and a cost the provider itself reports — OpenRouter's usage.cost, a cost_usd field in an
imported line — is kept beside our estimate, stored and shown in the report."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time

import pytest

from llmpulse.core.clock import ManualClock
from llmpulse.core.failover import FailoverClient
from llmpulse.core.simulator.fleet import FakeProvider, Fleet, chat_usage
from llmpulse.core.store import Store
from tests.cli_helpers import run_cli
from tests.test_failover_edges import HI, context, fresh_key

# DeepSeek's published deepseek-chat prices per million tokens, as genai-prices carries them: standard
# hours (00:30-16:30 UTC) and the off-peak discount outside them.
DEEPSEEK_STANDARD = {"miss": 0.27, "hit": 0.07, "output": 1.10}
DEEPSEEK_OFF_PEAK = {"miss": 0.135, "hit": 0.035, "output": 0.55}


def utc(hour: int) -> float:
    return dt.datetime(2026, 11, 30, hour, 0, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(("hour", "prices"), [(10, DEEPSEEK_STANDARD), (20, DEEPSEEK_OFF_PEAK)])
async def test_deepseek_cache_hits_are_cache_reads_priced_at_the_calls_time(tmp_path, hour, prices):
    key = fresh_key()
    with Fleet([FakeProvider("deepseek", kind="deepseek", key=key)]) as fleet:
        ctx = context(tmp_path, fleet, key)
        store = await Store.open(ctx.db_path)
        try:
            async with FailoverClient(ctx, store, clock=ManualClock(utc(hour))) as client:
                await client.chat(HI, models={"deepseek": "deepseek-chat"})
            [row] = await store.fetchall(
                "SELECT input_tokens, cache_read_tokens, output_tokens, cost_usd FROM usage_records"
            )
        finally:
            await store.close()
    usage = chat_usage("deepseek")
    hit, miss, out = usage["prompt_cache_hit_tokens"], usage["prompt_cache_miss_tokens"], usage["completion_tokens"]
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (hit + miss, hit, out)
    expected = (miss * prices["miss"] + hit * prices["hit"] + out * prices["output"]) / 1e6
    assert row["cost_usd"] == pytest.approx(expected, rel=1e-9)
    every_token_fresh = ((hit + miss) * prices["miss"] + out * prices["output"]) / 1e6
    assert row["cost_usd"] < every_token_fresh * 0.7  # what dropping the hits used to charge


async def test_openrouter_reported_cost_is_kept_beside_the_estimate_and_reported(tmp_path):
    key = fresh_key()
    with Fleet([FakeProvider("openrouter", kind="openrouter", key=key)]) as fleet:
        ctx = context(tmp_path, fleet, key)
        store = await Store.open(ctx.db_path)
        try:
            async with FailoverClient(ctx, store) as client:
                for _ in range(3):
                    await client.chat(HI, models={"openrouter": "openai/gpt-4o-mini"})
            rows = await store.fetchall("SELECT reported_cost_usd, cost_usd FROM usage_records")
        finally:
            await store.close()
    charged = chat_usage("openrouter")["cost"]
    assert [r["reported_cost_usd"] for r in rows] == [charged] * 3
    r = run_cli(tmp_path, "--db", str(ctx.db_path), "report", "--format", "json")
    assert r.returncode == 0, r.stderr
    [reported] = json.loads(r.stdout)["provider_reported"]
    assert reported["provider"] == "openrouter" and reported["calls"] == 3
    assert reported["reported_usd"] == pytest.approx(3 * charged)
    text = run_cli(tmp_path, "--db", str(ctx.db_path), "report").stdout
    assert "openrouter reported $0.0000" in text or "openrouter reported <$0.0001" in text


def test_an_imported_cost_usd_is_the_providers_figure_not_ignored(tmp_path):
    an_hour_ago = time.time() - 3600
    lines = [
        {"ts": an_hour_ago, "provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100,
         "cost_usd": 0.5, "request_id": "a"},
        {"ts": an_hour_ago, "provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100,
         "cost_usd": "lots", "request_id": "b"},
        {"ts": an_hour_ago, "provider": "openai", "model": "gpt-4o", "input_tokens": 2000, "output_tokens": 0,
         "request_id": "c"},
    ]  # fmt: skip
    (tmp_path / "calls.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    db = tmp_path / "u.db"
    r = run_cli(tmp_path, "--db", str(db), "import", str(tmp_path / "calls.jsonl"))
    assert r.returncode == 1 and "line 2" in r.stderr and "cost_usd" in r.stderr, r.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT request_id, cost_usd, reported_cost_usd FROM usage_records ORDER BY request_id")
        got = {rid: (est, rep) for rid, est, rep in rows}
    # gpt-4o: $2.50 per million input tokens, $10 per million output tokens
    assert got["a"] == (pytest.approx((1000 * 2.5 + 100 * 10) / 1e6), 0.5)
    assert got["c"] == (pytest.approx(2000 * 2.5 / 1e6), None) and "b" not in got
    report = json.loads(run_cli(tmp_path, "--db", str(db), "report", "--format", "json").stdout)
    assert report["provider_reported"] == [
        {"provider": "openai", "calls": 1, "reported_usd": 0.5, "estimated_usd": pytest.approx(0.0035)}
    ]
