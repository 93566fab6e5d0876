"""Category as a dimension: rolled up as calls arrive, backfilled for calls stored before, grouped on by
`report --by category`, and usable as a budget scope — each figure against sums the test makes itself."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from llmpulse.core.schema import MIGRATIONS
from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.records import UsageRecord
from llmpulse.core.usage.rollup import ingest
from tests.cli_helpers import run_cli

INPUT_PER_M, OUTPUT_PER_M = 2.0, 8.0
PRICES = f'[prices.overrides."openai/gpt-4o"]\ninput = {INPUT_PER_M}\noutput = {OUTPUT_PER_M}\n'
CATEGORIES = ("support", "search", "codegen")


def lines(now: float) -> list[dict]:
    out = []
    for i in range(60):
        line = {
            "ts": now - 900 - 97 * i,
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 1000 + 13 * i,
            "output_tokens": 200 + 7 * i,
            "latency_ms": 40.0 + 600 * (i % 7),
            "request_id": f"c{i}",
        }
        if i % 4:
            line["category"] = CATEGORIES[i % 3]
        out.append(line)
    return out


def cost(line: dict) -> float:
    return (line["input_tokens"] * INPUT_PER_M + line["output_tokens"] * OUTPUT_PER_M) / 1e6


def test_report_and_budget_by_category(tmp_path: Path) -> None:
    now = time.time()
    data = lines(now)
    (tmp_path / "calls.jsonl").write_text("".join(json.dumps(line) + "\n" for line in data))
    spent_support = sum(cost(line) for line in data if line.get("category") == "support")
    (tmp_path / "llmpulse.toml").write_text(
        PRICES + f'[[budgets]]\nscope = "category:support"\nperiod = "day"\nlimit_usd = {spent_support * 2:.6f}\n'
    )
    base = ("--config", "llmpulse.toml", "--db", "u.db")
    assert run_cli(tmp_path, *base, "import", "calls.jsonl").returncode == 0

    proc = run_cli(tmp_path, *base, "report", "--by", "category", "--since", "24h", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    groups = {g["key"]: g for g in json.loads(proc.stdout)["groups"]}
    for category in CATEGORIES:
        mine = [line for line in data if line.get("category") == category]
        assert groups[category]["requests"] == len(mine)
        assert abs(groups[category]["cost_usd"] - sum(cost(line) for line in mine)) < 1e-9

    proc = run_cli(tmp_path, *base, "budgets", "--json")
    assert proc.returncode == 0, proc.stderr
    [budget] = json.loads(proc.stdout)["budgets"]
    assert budget["name"] == "category:support/day"
    assert abs(budget["spent_usd"] - spent_support) < 1e-9
    assert abs(budget["utilization"] - 0.5) < 1e-6


async def test_category_rollups_are_backfilled_for_calls_stored_before(tmp_path: Path) -> None:
    now = time.time()
    data = lines(now)
    # every migration but the backfill itself (later ones, like 0193's column, are what today's ingest writes)
    before = [m for m in MIGRATIONS if not m.name.startswith("0192")]
    assert len(before) < len(MIGRATIONS)
    store = await Store.open(tmp_path / "b.db", migrations=before)
    records = [UsageRecord(**line) for line in data]
    await ingest(store, records, Pricing())
    # as an older llmpulse left it: no category roll-ups at all
    await store.execute("DELETE FROM usage_rollups WHERE dim = 'category'")
    await store.close()

    store = await Store.open(tmp_path / "b.db")  # runs the backfill
    await store.close()
    with sqlite3.connect(tmp_path / "b.db") as conn:
        got = {
            (grain, key): (requests, tokens, timed)
            for grain, key, requests, tokens, timed in conn.execute(
                "SELECT grain, key, SUM(requests), SUM(input_tokens + output_tokens), "
                f"SUM({' + '.join(f'l{i}' for i in range(16))}) FROM usage_rollups WHERE dim = 'category' "
                "GROUP BY grain, key"
            )
        }
        slowest_bucket = dict(
            conn.execute("SELECT key, SUM(l9) FROM usage_rollups WHERE dim = 'category' AND grain = 'd' GROUP BY key")
        )
    for grain in ("h", "d"):
        for category in CATEGORIES:
            mine = [line for line in data if line.get("category") == category]
            tokens = sum(line["input_tokens"] + line["output_tokens"] for line in mine)
            assert got[(grain, category)] == (len(mine), tokens, len(mine))
    for category in CATEGORIES:  # bucket l9 is (2000, 3000] ms
        mine = [line for line in data if line.get("category") == category]
        assert slowest_bucket[category] == sum(1 for line in mine if 2000 < line["latency_ms"] <= 3000)
