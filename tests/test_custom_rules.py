"""`[[alerts.rules]]`: your own thresholds on usage figures, judged by the real collector round on a real
file, through the same lifecycle as the built-in rules; mistakes in them are one-line config errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llmpulse.core.alerts.engine import AlertEngine
from llmpulse.core.clock import ManualClock
from llmpulse.core.collector import Collector
from llmpulse.core.config import load_context
from llmpulse.core.store import Store
from llmpulse.core.usage.recorder import pricing_for
from llmpulse.core.usage.records import UsageRecord
from llmpulse.core.usage.rollup import ingest
from llmpulse.core.validate import ConfigError
from tests.cli_helpers import run_cli

INPUT_PER_M, OUTPUT_PER_M = 2.0, 8.0
PRICES = f'[prices.overrides."openai/gpt-4o"]\ninput = {INPUT_PER_M}\noutput = {OUTPUT_PER_M}\n'


def context(tmp_path: Path, rules: str):
    cfg = tmp_path / "llmpulse.toml"
    cfg.write_text('[probe]\ninterval = "1s"\n\n' + PRICES + rules)
    return load_context(config_path=str(cfg), db_path=str(tmp_path / "c.db"), environ={})


def rule(name: str, metric: str, scope: str, bound: str, window: str = "1h", severity: str = "warning") -> str:
    return (
        f'[[alerts.rules]]\nname = "{name}"\nmetric = "{metric}"\nscope = "{scope}"\nwindow = "{window}"\n'
        f'{bound}\nseverity = "{severity}"\n\n'
    )


def calls(now: float, department: str, n: int, status: str = "ok") -> list[UsageRecord]:
    return [
        UsageRecord(
            ts=now - 600 - i,
            provider="openai",
            model="gpt-4o",
            input_tokens=10_000,
            output_tokens=1_000,
            latency_ms=400.0,
            status=status,
            error_kind="server_error" if status == "error" else None,
            department=department,
        )
        for i in range(n)
    ]


async def test_custom_rules_fire_resolve_and_stay_unjudged_without_enough_calls(tmp_path: Path) -> None:
    now = time.time()
    marketing_cost = 30 * (10_000 * INPUT_PER_M + 1_000 * OUTPUT_PER_M) / 1e6  # 30 calls, priced by hand
    rules = (
        rule("marketing-spend-hour", "cost_usd", "department:Marketing", f"above = {marketing_cost * 0.9:.6f}")
        + rule("support-quiet", "requests", "department:Support", "below = 5", severity="info")
        + rule("openai-errors", "error_rate", "provider:openai", "above = 0.5", severity="critical")
        + rule("sales-p95", "p95_latency_ms", "department:Sales", "above = 100")
    )
    ctx = context(tmp_path, rules)
    store = await Store.open(ctx.db_path)
    try:
        await ingest(
            store, calls(now, "Marketing", 30) + calls(now, "Support", 10) + calls(now, "Sales", 2), pricing_for(ctx)
        )
        clock = ManualClock(now)
        collector = Collector(ctx, store, clock)
        await collector.run_round()
        engine = AlertEngine(store, ctx.config.alerts, clock)
        by_rule = {a.rule: a for a in await engine.open_alerts()}
        spend = by_rule["marketing-spend-hour"]
        assert (spend.subject, spend.severity) == ("department:Marketing", "warning")
        assert f"${marketing_cost:,.2f}" in spend.message
        assert "support-quiet" not in by_rule  # 10 requests, not below 5
        assert "openai-errors" not in by_rule  # 0% errors
        assert "sales-p95" not in by_rule  # 2 calls are fewer than min_requests: not judged

        # Two hours on, the last hour holds no spend: the alert resolves through the usual lifecycle,
        # and Support's silence now trips its "below" rule.
        clock.advance(7200)
        await collector.run_round()
        by_rule = {a.rule: a for a in await engine.open_alerts()}
        assert "marketing-spend-hour" not in by_rule
        assert by_rule["support-quiet"].severity == "info"
        events = [t.event for t in await engine.transitions(spend.id)]
        assert events[0] == "opened" and events[-1] == "resolved"
        outbox = await store.fetchall("SELECT event FROM alert_outbox WHERE alert_id = ? ORDER BY id", (spend.id,))
        assert [r["event"] for r in outbox] == ["firing", "resolved"]
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("rules", "key", "expected"),
    [
        (rule("x", "dollars", "total", "above = 1"), "metric", "one of cost_usd"),
        (rule("x", "cost_usd", "team:Marketing", "above = 1"), "scope", "department:NAME"),
        (rule("x", "cost_usd", "total", "above = 1\nbelow = 0"), "above", "exactly one"),
        (rule("x", "cost_usd", "total", "above = 1", window="5s"), "window", "from 1m to 31d"),
        (rule("x", "cost_usd", "total", "above = 1", window="32d"), "window", "from 1m to 31d"),
        (rule("budget_exceeded", "cost_usd", "total", "above = 1"), "name", "no built-in"),
        (rule("x", "error_rate", "total", "above = 5"), "above", "0.05 = 5%"),
        ('[alerts.rules]\nname = "x"\n', "alerts.rules", "an array of tables ([[alerts.rules]])"),
    ],
)
def test_custom_rule_mistakes_are_config_errors(tmp_path: Path, rules: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        context(tmp_path, rules)
    assert key in str(caught.value) and expected in str(caught.value)


def test_custom_rule_mistake_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "llmpulse.toml").write_text(rule("x", "dollars", "total", "above = 1"))
    proc = run_cli(tmp_path, "--config", "llmpulse.toml", "--db", "x.db", "alerts")
    assert proc.returncode != 0
    assert "metric" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
