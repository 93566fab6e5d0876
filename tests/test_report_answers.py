"""`llmpulse report` answers: efficiency per group, savings as an amount and a share, local vs remote,
cost per day, patterns and advice in JSON — each against figures this test computes from its own calls."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from tests.cli_helpers import run_cli

PRICES = {"openai/gpt-4o": (2.5, 10.0), "openai/gpt-4o-mini": (0.15, 0.6)}
CONFIG = (
    "".join(f'[prices.overrides."{model}"]\ninput = {i}\noutput = {o}\n' for model, (i, o) in PRICES.items())
    + '[prices]\nreference_model = "openai/gpt-4o"\n'
)


def calls(now: float) -> list[dict]:
    out = []
    for i in range(45):
        model = "gpt-4o" if i % 3 == 0 else "gpt-4o-mini"
        out.append(
            {
                "ts": now - 600 - 60 * i,
                "provider": "openai",
                "model": model,
                "input_tokens": 500 + 11 * i,
                "output_tokens": 50 + 3 * i,
                "latency_ms": 100.0 + 17 * i,
                "request_id": f"o{i}",
                "status": "error" if i % 9 == 0 else "ok",
            }
        )
    for i in range(15):
        out.append(
            {
                "ts": now - 900 - 60 * i,
                "provider": "ollama",
                "model": "llama3.2",
                "input_tokens": 300,
                "output_tokens": 40,
                "latency_ms": 900.0 + i,
                "request_id": f"l{i}",
            }
        )
    return out


def price(line: dict) -> float:
    i, o = PRICES[f"{line['provider']}/{line['model']}"]
    return (line["input_tokens"] * i + line["output_tokens"] * o) / 1e6


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


def test_report_efficiency_savings_and_patterns(tmp_path: Path) -> None:
    now = time.time()
    data = calls(now)
    (tmp_path / "llmpulse.toml").write_text(CONFIG)
    (tmp_path / "calls.jsonl").write_text("".join(json.dumps(c) + "\n" for c in data))
    base = ("--config", "llmpulse.toml", "--db", "r.db")
    assert run_cli(tmp_path, *base, "import", "calls.jsonl").returncode == 0
    proc = run_cli(tmp_path, *base, "report", "--since", "24h", "--by", "provider", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    groups = {g["key"]: g for g in report["groups"]}

    openai = [c for c in data if c["provider"] == "openai"]
    cost = sum(price(c) for c in openai)
    tokens = sum(c["input_tokens"] + c["output_tokens"] for c in openai)
    latencies = [c["latency_ms"] for c in openai]
    g = groups["openai"]
    assert abs(g["cost_per_request"] - cost / len(openai)) < 1e-12
    assert abs(g["tokens_per_request"] - tokens / len(openai)) < 1e-9
    assert abs(g["usd_per_1k_tokens"] - cost / tokens * 1000) < 1e-12
    assert abs(g["tokens_per_usd"] - tokens / cost) < 1e-6
    assert abs(g["avg_latency_ms"] - sum(latencies) / len(latencies)) < 1e-9
    assert g["p50_ms"] == nearest_rank(latencies, 0.5) and g["p95_ms"] == nearest_rank(latencies, 0.95)
    assert abs(g["success_rate"] - sum(c.get("status") != "error" for c in openai) / len(openai)) < 1e-12

    savings = report["savings"]
    remote = [c for c in data if c["provider"] != "ollama"]
    on_reference = sum(  # every call's tokens at gpt-4o's price, local ones included, at their average size
        (c["input_tokens"] * 2.5 + c["output_tokens"] * 10.0) / 1e6 for c in data
    )
    assert savings["remote_requests"] == len(remote) and savings["local_requests"] == len(data) - len(remote)
    assert abs(savings["actual_usd"] - cost) < 1e-9
    assert abs(savings["reference_usd"] - on_reference) / on_reference < 0.01  # average-size pricing per group
    assert abs(savings["saved_pct"] - savings["saved_usd"] / savings["reference_usd"]) < 1e-12
    assert abs(savings["cost_per_day"] - cost / 1.0) < 1e-9  # 24h is one day

    patterns = report["patterns"]
    assert sum(s["requests"] for s in patterns["by_hour"]) == len(data)
    assert patterns["most_used"][0]["model"] == "openai/gpt-4o-mini"
    assert "advice" in report and isinstance(report["advice"]["lines"], list)

    table = run_cli(tmp_path, *base, "report", "--since", "24h")
    assert table.returncode == 0, table.stderr
    assert "$/REQUEST" in table.stdout and "by hour of day (UTC)" in table.stdout
    assert f"saved ${savings['saved_usd']:,.2f}, {savings['saved_pct']:.0%}" in table.stdout
    csv_out = run_cli(tmp_path, *base, "report", "--since", "24h", "--format", "csv")
    assert csv_out.stdout.splitlines()[0].endswith("USD/REQUEST,TOKENS/REQUEST,USD/1K TOKENS,TOKENS/USD")
