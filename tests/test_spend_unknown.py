"""A provider whose budgets count its own usage report ([usage_api.<provider>] budgets = "usage_api")
has its recorded calls left out of every figure and its report's buckets put in. Until a pull of that
report has worked, nothing replaces the calls left out: `budgets`, `status`, `report`, the dashboard's
cost panel and header, and /metrics showed its spend as $0 and projected budgets from the rest as if
they were the whole. Its spend is unknown — said with why (not pulled yet, last pull failed with the
redacted reason, the report too short) — and every figure that includes it is a lower bound ("≥"),
with no projection; Prometheus gets no sample for such a budget.

Real parts: the `llmpulse` command in a subprocess on a real SQLite file, the OpenAI usage API served
by the simulator on 127.0.0.1, the dashboard through Textual's Pilot, /metrics through the real server.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from llmpulse.core.clock import ManualClock
from llmpulse.core.config import load_context
from llmpulse.core.server.app import Server, ServerState
from llmpulse.core.server.config import Listener
from llmpulse.core.server.metrics import install as install_metrics
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.simulator.usage_reports import serve_openai_usage
from llmpulse.core.store import Store
from llmpulse.tui.app import PulseApp
from llmpulse.tui.core_backend import CoreBackend
from tests.cli_helpers import run_cli
from tests.tui_helpers import settle, shown, wait_for

ADMIN = "sk-admin-SpendUnknownSecret0123456789ab"
KEY = "sk-proj-SpendUnknownKey0123456789abcdef"
WRONG_ADMIN = "sk-admin-WrongAdminKey0123456789abcdefgh"
DAY = 86400
MODEL = "gpt-4o-mini-2024-07-18"
IN_RATE, OUT_RATE = 0.15, 0.6  # USD per million tokens (overrides), so the test prices each call itself
SONNET = "claude-sonnet-4-20250514"
S_IN, S_OUT = 3.0, 15.0


def usd(tin: int, tout: int, rin: float, rout: float) -> float:
    return (tin * rin + tout * rout) / 1e6


def config(base_url: str, backfill_days: int = 40) -> str:
    return (
        f'[providers.openai]\nbase_url = "{base_url}"\n'
        f'[prices.overrides."openai/{MODEL}"]\ninput = {IN_RATE}\noutput = {OUT_RATE}\n'
        f'[prices.overrides."anthropic/{SONNET}"]\ninput = {S_IN}\noutput = {S_OUT}\n'
        f'[usage_api]\nbucket_width = "1d"\nbackfill_days = {backfill_days}\n'
        '[usage_api.openai]\nbudgets = "usage_api"\n'
        '[usage_api.openai.projects.proj_abc]\ndepartment = "Support"\n'
        '[[budgets]]\nscope = "total"\nlimit_usd = 1000\n'
        '[[budgets]]\nscope = "provider:openai"\nlimit_usd = 500\n'
        '[[budgets]]\nscope = "department:Support"\nlimit_usd = 300\n'
        '[[budgets]]\nscope = "provider:anthropic"\nlimit_usd = 5000\n'
        '[[budgets]]\nscope = "user:dana"\nlimit_usd = 10000\n'
    )


def report_buckets(today: int) -> list[dict[str, Any]]:
    return [
        {
            "object": "bucket",
            "start_time": today,
            "end_time": today + DAY,
            "results": [
                {
                    "object": "organization.usage.completions.result",
                    "input_tokens": 300_000,
                    "output_tokens": 40_000,
                    "input_cached_tokens": 0,
                    "num_model_requests": 9,
                    "project_id": "proj_abc",
                    "user_id": None,
                    "api_key_id": "key_x",
                    "model": MODEL,
                    "batch": None,
                }
            ],
        }
    ]


def budgets_json(tmp_path, db: str, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    r = run_cli(tmp_path, "--db", db, "budgets", "--json", env=env)
    assert r.returncode == 0, r.stderr
    return {b["scope"]: b for b in json.loads(r.stdout)["budgets"]}


async def scrape_budgets(tmp_path, db: str, env: dict[str, str]) -> dict[tuple[str, str], float]:
    ctx = load_context(str(tmp_path / "llmpulse.toml"), db, environ=env)
    store = await Store.open(ctx.db_path, readonly=True)
    state = ServerState(ctx, store, ctx.config.server, clock=ManualClock(time.time()))
    server = Server(state, Listener("127.0.0.1", 0, None), [install_metrics])
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            text = (await c.get("/metrics")).text
    finally:
        await server.stop()
        await store.close()
    return {
        (s.name, s.labels.get("budget", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("llmpulse_budget_")
    }


async def dashboard_text(tmp_path, db: str, env: dict[str, str], size: tuple[int, int]) -> tuple[str, str]:
    """The Cost vs budget panel's rows and its border subtitle, as drawn."""
    ctx = load_context(str(tmp_path / "llmpulse.toml"), db, environ=env)
    clock = ManualClock(time.time())
    app = PulseApp(CoreBackend(ctx, clock=clock), clock=clock, actor="ops", collect=False, watch_terminal=False)
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        panel = app.dashboard.panels[2]
        rows = "\n".join(panel.table.render_line(y).text for y in range(panel.table.size.height))
        h = app.latest.header
        # (The header line itself is checked below on a fixed snapshot: here, with no collector ever run,
        # its warning leaves no room for the spend at these widths.)
        assert h.period_partial and h.budget_partial and h.budget_name == "total/month", h
        # the costs screen (2, enter): its total says it is a lower bound, and whose spend it leaves out
        await pilot.press("2", "enter")
        assert await wait_for(pilot, lambda: "Total" in shown(app, "#costs-total"))
        total = shown(app, "#costs-total")
        assert "Total ≥" in total and "openai spend unknown, not in the figures: not pulled yet" in total, total
        return rows, str(panel.border_subtitle)


async def test_a_usage_report_never_pulled_is_unknown_everywhere_never_zero(tmp_path):
    now = time.time()
    today = int(now - now % DAY)
    db = str(tmp_path / "s.db")
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        serve_openai_usage(fleet, "openai", ADMIN, report_buckets(today))
        (tmp_path / "llmpulse.toml").write_text(config(fleet.base_url("openai")))
        env = {"OPENAI_API_KEY": KEY}
        calls = [
            ("openai", MODEL, 10_000, 1_000, ["--department", "Support"]),
            ("anthropic", SONNET, 2_000, 500, ["--user", "dana"]),
        ]
        for provider, model, tin, tout, extra in calls:
            args = ["--provider", provider, "--model", model, "--input-tokens", str(tin), "--output-tokens", str(tout)]
            r = run_cli(tmp_path, "--db", db, "record", *args, *extra, env=env)
            assert r.returncode == 0, r.stderr
        anthropic = usd(2_000, 500, S_IN, S_OUT)

        # 1. Never pulled (no admin key anywhere): OpenAI's spend is unknown, not $0.
        budgets = budgets_json(tmp_path, db, env)
        for scope in ("total", "provider:openai", "department:Support"):
            b = budgets[scope]
            assert b["partial"] and b["spend_unknown"] == {"openai": "not pulled yet"}, scope
            assert b["projected_usd"] is None and b["burn_rate_usd_per_day"] is None, scope
            assert b["projected_to_exceed"] is None and b["exhaust_at"] is None, scope
        # what is known is still there, as a lower bound: Anthropic's call
        assert abs(budgets["total"]["spent_usd"] - anthropic) < 1e-9
        # a budget whose scope cannot take in OpenAI's report is whole, with its projection
        for scope in ("provider:anthropic", "user:dana"):
            b = budgets[scope]
            assert not b["partial"] and b["spend_unknown"] == {} and b["projected_usd"] is not None, scope
            assert abs(b["spent_usd"] - anthropic) < 1e-9, scope
        text = run_cli(tmp_path, "--db", db, "budgets", env=env).stdout
        total_row = next(line for line in text.splitlines() if line.startswith("total/month"))
        assert f"≥${anthropic:,.2f}" in total_row and "unknown" in total_row, total_row
        assert "openai: spend unknown (not pulled yet)" in text

        status = json.loads(run_cli(tmp_path, "--db", db, "status", "--json", env=env).stdout)
        assert status["spend_unknown"] == [{"provider": "openai", "reason": "not pulled yet"}]
        assert {b["scope"] for b in status["budgets"] if b["partial"]} == {
            "total",
            "provider:openai",
            "department:Support",
        }
        status_text = run_cli(tmp_path, "--db", db, "status", env=env).stdout
        assert "openai: spend unknown (not pulled yet)" in status_text and f"≥${anthropic:,.2f}" in status_text

        report = json.loads(run_cli(tmp_path, "--db", db, "report", "--format", "json", env=env).stdout)
        assert report["partial"] and report["spend_unknown"] == [{"provider": "openai", "reason": "not pulled yet"}]
        report_text = run_cli(tmp_path, "--db", db, "report", env=env).stdout
        assert (
            "at least" in report_text and "openai: spend unknown, not in these figures (not pulled yet)" in report_text
        )
        csv = run_cli(tmp_path, "--db", db, "report", "--format", "csv", env=env)
        assert "openai: not pulled yet: its spend is not in these rows" in csv.stderr

        found = await scrape_budgets(tmp_path, db, env)
        for name in ("total/month", "provider:openai/month", "department:Support/month"):
            for metric in ("spent_usd", "utilization_ratio", "projected_usd"):
                assert (f"llmpulse_budget_{metric}", name) not in found, (metric, name)
        assert abs(found[("llmpulse_budget_spent_usd", "provider:anthropic/month")] - anthropic) < 1e-9

        for size in ((80, 24), (120, 40)):
            rows, subtitle = await dashboard_text(tmp_path, db, env, size)
            total_line = next(line for line in rows.splitlines() if "total" in line)
            assert "≥" in total_line and "?" in total_line, (size, total_line)
            anthropic_line = next(line for line in rows.splitlines() if "anthropic" in line)
            assert "≥" not in anthropic_line and "?" not in anthropic_line, (size, anthropic_line)
            assert "openai spend unknown: not pulled yet" in subtitle, (size, subtitle)

        # 2. A pull that fails (a project key where the admin key belongs): unknown, with the redacted reason.
        bad = {**env, "OPENAI_ADMIN_KEY": WRONG_ADMIN}
        r = run_cli(tmp_path, "--db", db, "reconcile", env=bad)
        assert r.returncode == 1
        budgets = budgets_json(tmp_path, db, env)
        reason = budgets["total"]["spend_unknown"]["openai"]
        assert reason.startswith("last pull failed: HTTP 403") and WRONG_ADMIN not in reason
        assert budgets["total"]["projected_usd"] is None
        rec = json.loads(run_cli(tmp_path, "--db", db, "reconcile", "--cached", "--json", env=env).stdout)
        (src,) = rec["usage_api"]
        assert src["reported_usd"] is None and src["difference_usd"] is None and src["last_pull_at"] is None

        # 3. A pull that works: the report counts, the budgets are whole again, to the cent.
        good = {**env, "OPENAI_ADMIN_KEY": ADMIN}
        # (its exit code also counts the costs API, which the simulator does not serve: the pull is checked)
        pulled = json.loads(run_cli(tmp_path, "--db", db, "reconcile", "--json", env=good).stdout)
        assert pulled["usage_api"][0]["error"] is None
        report_usd = usd(300_000, 40_000, IN_RATE, OUT_RATE)
        budgets = budgets_json(tmp_path, db, env)
        assert all(not b["partial"] and b["projected_usd"] is not None for b in budgets.values())
        assert abs(budgets["total"]["spent_usd"] - (report_usd + anthropic)) < 1e-9
        assert abs(budgets["department:Support"]["spent_usd"] - report_usd) < 1e-9
        found = await scrape_budgets(tmp_path, db, env)
        assert abs(found[("llmpulse_budget_spent_usd", "total/month")] - (report_usd + anthropic)) < 1e-9

        # 4. A later pull that fails: the report is as of the last good one — stale, so partial again.
        assert run_cli(tmp_path, "--db", db, "reconcile", env=bad).returncode == 1
        reason = budgets_json(tmp_path, db, env)["total"]["spend_unknown"]["openai"]
        assert reason.startswith("last pull failed: HTTP 403") and "its report as of" in reason

    assert ADMIN.encode() not in (tmp_path / "s.db").read_bytes()
    assert WRONG_ADMIN.encode() not in (tmp_path / "s.db").read_bytes()


def test_a_report_that_does_not_reach_back_makes_the_range_partial(tmp_path):
    """Pulled with backfill_days = 1, the report starts yesterday: a 7-day report of its spend is partial."""
    now = time.time()
    today = int(now - now % DAY)
    db = str(tmp_path / "r.db")
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        serve_openai_usage(fleet, "openai", ADMIN, report_buckets(today))
        (tmp_path / "llmpulse.toml").write_text(config(fleet.base_url("openai"), backfill_days=1))
        env = {"OPENAI_API_KEY": KEY, "OPENAI_ADMIN_KEY": ADMIN}
        assert (
            json.loads(run_cli(tmp_path, "--db", db, "reconcile", "--json", env=env).stdout)["usage_api"][0]["error"]
            is None
        )
        week = json.loads(run_cli(tmp_path, "--db", db, "report", "--since", "7d", "--format", "json", env=env).stdout)
        day = json.loads(run_cli(tmp_path, "--db", db, "report", "--since", "1h", "--format", "json", env=env).stdout)
    (gap,) = week["spend_unknown"]
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(today - DAY))
    assert gap["provider"] == "openai" and gap["reason"] == f"its usage report starts {yesterday} 00:00 UTC"
    assert not day["partial"] and day["spend_unknown"] == []


async def test_the_header_says_at_least_when_the_period_is_partial():
    import dataclasses

    from tests.snapshot_apps.fixed import FixedBackend, fixed_app, fixed_snapshot

    snap = fixed_snapshot()
    for partial in (False, True):
        header = dataclasses.replace(snap.header, period_partial=partial, budget_partial=partial)
        app = fixed_app(backend=FixedBackend(dataclasses.replace(snap, header=header)))
        async with app.run_test(size=(160, 40)) as pilot:
            await settle(pilot, app)
            line = app.dashboard.header_line.render_line(0).text
        pct = f"{snap.header.budget_utilization:.0%}"
        money = f"${snap.header.cost_period:,.0f}"
        assert ("≥" + pct in line) is partial and ("≥" + money in line) is partial and money in line, line


async def test_a_partial_budget_never_resolves_its_alerts(tmp_path):
    """Counted by OpenAI's report from now on, never pulled yet: the month's known spend drops to the rest
    (a lower bound). The budget alert that fired on the whole spend must not resolve as 'condition cleared';
    a budget known whole still resolves."""
    import dataclasses

    from llmpulse.core.alerts.engine import AlertEngine
    from llmpulse.core.alerts.rules import RuleInputs, covered_rules, evaluate_rules
    from llmpulse.core.config import parse_config
    from llmpulse.core.usage.budgets import project

    cfg = parse_config(
        {
            "budgets": [
                {"scope": "total", "period": "month", "limit_usd": 100.0},
                {"scope": "provider:anthropic", "period": "month", "limit_usd": 100.0},
            ]
        },
        "t.toml",
    )
    total, anthropic = cfg.usage.budgets
    t0 = time.time()
    start, end = t0 - 10 * DAY, t0 + 20 * DAY
    store = await Store.open(tmp_path / "a.db")
    try:
        engine = AlertEngine(store, cfg.alerts, ManualClock(t0))

        async def round_with(budgets: list[Any]) -> None:
            inputs = RuleInputs(now=t0, budgets=budgets)
            await engine.process(evaluate_rules(inputs, cfg.alerts), covered=covered_rules(inputs, cfg.alerts))

        # spend known: both budgets past 80%
        await round_with([project(total, 90.0, start, end, t0), project(anthropic, 85.0, start, end, t0)])
        assert {a.subject for a in await engine.open_alerts() if a.rule == "budget_warning"} == {
            "total/month",
            "provider:anthropic/month",
        }
        # total now partial (OpenAI's report unknown): 20 known; anthropic known and back under 80%
        partial = project(total, 20.0, start, end, t0, spend_unknown={"openai": "not pulled yet"})
        assert partial.projected_usd is None and partial.partial
        await round_with([partial, project(anthropic, 10.0, start, end, t0)])
        still = {a.subject for a in await engine.open_alerts() if a.rule == "budget_warning"}
        assert still == {"total/month"}
        # once known whole and under, it resolves
        await round_with([dataclasses.replace(partial, spend_unknown={}), project(anthropic, 10.0, start, end, t0)])
        assert not [a for a in await engine.open_alerts() if a.rule == "budget_warning"]
    finally:
        await store.close()


def test_budgets_help_says_what_a_partial_budget_is(tmp_path):
    r = run_cli(tmp_path, "budgets", "--help")
    assert r.returncode == 0 and "partial" in r.stdout and "≥" in r.stdout and "usage_api" in r.stdout


def test_an_export_of_partial_budgets_writes_their_reasons_as_clean_json(tmp_path):
    """`export --format csv` wrote a budget's list and dict fields (warn_at, crossed, spend_unknown) as
    Python's repr — `{'openai': ...}`, which no script reads as data — and past the cleaning every other
    cell gets. They are JSON now, control sequences escaped, then cleaned like any text."""
    import csv
    import sqlite3

    db = tmp_path / "e.db"
    (tmp_path / "llmpulse.toml").write_text(config("http://127.0.0.1:9/v1"))
    # the schema as the daemon creates it (reading commands no longer create a missing database)
    import asyncio

    from llmpulse.core.store import Store

    async def create_schema() -> None:
        await (await Store.open(db)).close()

    asyncio.run(create_schema())
    hostile = "HTTP 403: \x1b[31mred\x1b[0m denied"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO provider_usage_pulls (provider_id, last_pull_at, covered_from, error) VALUES (?, ?, ?, ?)",
            ("openai", 1.0, 1.0, hostile),
        )
    r = run_cli(tmp_path, "--db", str(db), "export", "--out", str(tmp_path / "out"), "--format", "csv")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "out" / "budgets.csv").read_text()
    assert "\x1b" not in text
    rows = {row["scope"]: row for row in csv.DictReader(text.splitlines())}
    assert json.loads(rows["total"]["spend_unknown"]) == {"openai": "last pull failed: " + hostile}
    assert json.loads(rows["total"]["warn_at"]) == [0.8, 1.0]
