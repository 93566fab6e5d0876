"""The providers' own usage APIs, pulled with an admin key from the simulator (llmpulse.core.simulator.
usage_reports) on 127.0.0.1: pages followed, empty buckets, a backfill, re-pulls that count nothing
twice, a late bucket updated, projects and keys mapped to departments and agents, a refused admin key
and a hang recorded without holding up the others."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from llmpulse.core.catalog import CATALOG_BY_ID, ProviderOverride, resolve_providers
from llmpulse.core.config import parse_config
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.simulator.usage_reports import serve_anthropic_usage, serve_openai_usage
from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.queries import breakdown, total
from llmpulse.core.usage.recorder import Recorder
from llmpulse.core.usage.usage_api import pull_usage
from tests.cli_helpers import run_cli

ADMIN = "sk-admin-UsageApiSecret0123456789abcd"
ANT_ADMIN = "sk-ant-admin01-UsageApiSecret0123456789"
KEY = "sk-proj-UsageApiKey0123456789abcdef"
DAY = 86400
NOW = float((int(time.time()) // DAY) * DAY + 3600)  # one hour into today (UTC)
# USD per million tokens (overrides), so the test prices each row itself
RATES = {
    ("openai", "gpt-4o-mini-2024-07-18"): (0.15, 0.6, 0.075),
    ("anthropic", "claude-sonnet-4-20250514"): (3.0, 15.0, 0.3),
}
CONFIG = {
    "prices": {
        "overrides": {
            f"{p}/{m}": {"input": i, "output": o, "cache_read": c, "cache_write": i * 1.25}
            for (p, m), (i, o, c) in RATES.items()
        }
    },
    "usage_api": {
        "bucket_width": "1d",
        "backfill_days": 40,
        "openai": {
            "projects": {"proj_abc": {"department": "Support"}},
            "api_keys": {"key_abc": {"agent": "triage-bot"}},
        },
        "anthropic": {
            "api_keys": {"apikey_01Rj2N8SVvo6BePZj99NhmiT": {"department": "Research", "agent": "summarizer"}}
        },
    },
}


def openai_buckets(days: int) -> list[dict[str, Any]]:
    """Daily buckets as the organization usage API writes them: every third day empty."""
    out = []
    for d in range(days, 0, -1):
        start = int(NOW - NOW % DAY) - d * DAY
        results = []
        if d % 3:
            results.append(
                {
                    "object": "organization.usage.completions.result",
                    "input_tokens": 5000 + d,
                    "output_tokens": 1000,
                    "input_cached_tokens": 4000,
                    "input_audio_tokens": 0,
                    "output_audio_tokens": 0,
                    "num_model_requests": 5,
                    "project_id": "proj_abc",
                    "user_id": None,
                    "api_key_id": "key_abc",
                    "model": "gpt-4o-mini-2024-07-18",
                    "batch": None,
                    "service_tier": None,
                }
            )
        out.append({"object": "bucket", "start_time": start, "end_time": start + DAY, "results": results})
    return out


def anthropic_buckets() -> list[dict[str, Any]]:
    def iso(ts: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

    start = NOW - NOW % DAY - DAY
    return [
        {
            "starting_at": iso(start),
            "ending_at": iso(start + DAY),
            "results": [
                {
                    "uncached_input_tokens": 1500,
                    "cache_creation": {"ephemeral_1h_input_tokens": 1000, "ephemeral_5m_input_tokens": 500},
                    "cache_read_input_tokens": 200,
                    "output_tokens": 500,
                    "server_tool_use": {"web_search_requests": 10},
                    "api_key_id": "apikey_01Rj2N8SVvo6BePZj99NhmiT",
                    "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
                    "model": "claude-sonnet-4-20250514",
                    "service_tier": "standard",
                    "context_window": "0-200k",
                }
            ],
        },
        {"starting_at": iso(start + DAY), "ending_at": iso(start + 2 * DAY), "results": []},
    ]


def providers_on(fleet: Fleet, env: dict[str, str]):
    ids = list(fleet.providers)
    overrides = {i: ProviderOverride(base_url=fleet.base_url(i)) for i in ids}
    return resolve_providers({i: CATALOG_BY_ID[i] for i in ids}, env, overrides)


def price(provider: str, model: str, tin: int, tout: int, read: int, write: int) -> float:
    i, o, c = RATES[(provider, model)]
    return ((tin - read - write) * i + tout * o + read * c + write * i * 1.25) / 1e6


async def test_pull_pages_backfill_idempotent_late_bucket_and_mapping(tmp_path):
    cfg = parse_config(CONFIG, "t.toml")
    usage_cfg = cfg.usage.usage_api
    pricing = Pricing(cfg.usage.prices)
    oa = openai_buckets(40)
    with Fleet([FakeProvider("openai", key=KEY), FakeProvider("anthropic", kind="anthropic", key=KEY)]) as fleet:
        serve_openai_usage(fleet, "openai", ADMIN, oa)
        serve_anthropic_usage(fleet, "anthropic", ANT_ADMIN, anthropic_buckets())
        providers = providers_on(
            fleet, {"OPENAI_API_KEY": KEY, "OPENAI_ADMIN_KEY": ADMIN, "ANTHROPIC_ADMIN_KEY": ANT_ADMIN}
        )
        store = await Store.open(tmp_path / "u.db")
        try:
            first = {r.provider_id: r for r in await pull_usage(store, providers, usage_cfg, pricing, NOW)}
            assert first["openai"].error is None and first["anthropic"].error is None
            pages = [r for r in fleet.requests("openai") if r.path.endswith("/completions")]
            assert len(pages) == 2 and pages[1].query["page"]  # 40 daily buckets, 31 a page
            assert set(pages[0].query["group_by"]) == {"model", "project_id", "api_key_id"}
            want = [b for b in oa if b["results"]]
            assert first["openai"].rows == first["openai"].changed == len(want)
            rows = await store.fetchall(
                "SELECT * FROM provider_usage WHERE provider_id = 'openai' ORDER BY bucket_start"
            )
            assert [r["bucket_start"] for r in rows] == [b["start_time"] for b in want]
            r0, b0 = rows[0], want[0]["results"][0]
            assert (r0["requests"], r0["input_tokens"], r0["cache_read_tokens"]) == (5, b0["input_tokens"], 4000)
            assert (r0["department"], r0["agent"], r0["project"], r0["api_key"]) == (
                "Support",
                "triage-bot",
                "proj_abc",
                "key_abc",
            )
            assert (
                abs(r0["cost_usd"] - price("openai", "gpt-4o-mini-2024-07-18", b0["input_tokens"], 1000, 4000, 0))
                < 1e-12
            )
            (a,) = await store.fetchall("SELECT * FROM provider_usage WHERE provider_id = 'anthropic'")
            # all prompt tokens: uncached + read + written, as a record counts them
            assert (a["input_tokens"], a["cache_read_tokens"], a["cache_write_tokens"], a["requests"]) == (
                3200,
                200,
                1500,
                None,
            )
            assert (a["department"], a["agent"]) == ("Research", "summarizer")
            assert abs(a["cost_usd"] - price("anthropic", "claude-sonnet-4-20250514", 3200, 500, 200, 1500)) < 1e-12

            # a re-pull an hour later changes nothing; it goes back only late_days, not the whole backfill
            again = {r.provider_id: r for r in await pull_usage(store, providers, usage_cfg, pricing, NOW + 3600)}
            assert again["openai"].changed == 0 and again["anthropic"].changed == 0
            assert again["openai"].since < NOW - DAY and again["openai"].since > NOW - 3 * DAY
            (count,) = await store.fetchone("SELECT COUNT(*) FROM provider_usage")
            assert count == len(want) + 1
            # yesterday's bucket is filled in late: the row is replaced, not added to
            oa[-1]["results"][0]["output_tokens"] = 7777
            late = {r.provider_id: r for r in await pull_usage(store, providers, usage_cfg, pricing, NOW + 7200)}
            assert late["openai"].changed == 1
            (out,) = await store.fetchone(
                "SELECT output_tokens FROM provider_usage WHERE provider_id = 'openai' AND bucket_start = ?",
                (oa[-1]["start_time"],),
            )
            assert out == 7777
            (count2,) = await store.fetchone("SELECT COUNT(*) FROM provider_usage")
            assert count2 == count
        finally:
            await store.close()
    data = (tmp_path / "u.db").read_bytes()
    assert ADMIN.encode() not in data and ANT_ADMIN.encode() not in data


async def test_refused_admin_key_and_hang_are_recorded_and_hold_nothing_up(tmp_path):
    cfg = parse_config(CONFIG, "t.toml")
    with Fleet([FakeProvider("openai", key=KEY), FakeProvider("anthropic", kind="anthropic", key=KEY)]) as fleet:
        serve_openai_usage(fleet, "openai", ADMIN, openai_buckets(3))
        serve_anthropic_usage(fleet, "anthropic", ANT_ADMIN, anthropic_buckets())
        store = await Store.open(tmp_path / "u.db")
        try:
            # OpenAI: a project key where the admin key belongs (the real 403 body); Anthropic hangs
            providers = providers_on(fleet, {"OPENAI_ADMIN_KEY": KEY, "ANTHROPIC_ADMIN_KEY": ANT_ADMIN})
            fleet.set_behaviour("anthropic", "hang")
            # anthropic never answers: the pull ends only because its own 0.5 s deadline cut it (its error
            # says so below). The 30 s guard only stops a regression from hanging the suite.
            pulled = pull_usage(store, providers, cfg.usage.usage_api, Pricing(), NOW, timeout=0.5)
            reports = {r.provider_id: r for r in await asyncio.wait_for(pulled, 30)}
            assert reports["openai"].error.startswith("HTTP 403: You have insufficient permissions")
            assert "api.usage.read" in reports["openai"].error and KEY not in reports["openai"].error
            assert reports["anthropic"].error == "no answer within 0.5s"
            (stored,) = await store.fetchone("SELECT COUNT(*) FROM provider_usage")
            assert stored == 0
            errors = {r["provider_id"]: r["error"] for r in await store.fetchall("SELECT * FROM provider_usage_pulls")}
            assert errors == {"openai": reports["openai"].error, "anthropic": "no answer within 0.5s"}
        finally:
            await store.close()
    assert KEY.encode() not in (tmp_path / "u.db").read_bytes()


def openai_result(project: str, key: str, tin: int, tout: int) -> dict[str, Any]:
    """One result of OpenAI's organization usage (completions) page, as its API reference shows it."""
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": tin,
        "output_tokens": tout,
        "input_cached_tokens": 0,
        "num_model_requests": 3,
        "project_id": project,
        "user_id": None,
        "api_key_id": key,
        "model": "gpt-4o-mini-2024-07-18",
        "batch": None,
    }


def test_budgets_count_the_usage_api_when_told_and_reconcile_shows_both(tmp_path):
    now = time.time()
    today = int(now - now % DAY)

    buckets = [
        {
            "object": "bucket",
            "start_time": today,
            "end_time": today + DAY,
            "results": [
                openai_result("proj_abc", "key_x", 200_000, 50_000),
                openai_result("proj_other", "key_x", 100_000, 10_000),
            ],
        }
    ]
    z_support = price("openai", "gpt-4o-mini-2024-07-18", 200_000, 50_000, 0, 0)
    z_other = price("openai", "gpt-4o-mini-2024-07-18", 100_000, 10_000, 0, 0)
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        serve_openai_usage(fleet, "openai", ADMIN, buckets)
        (tmp_path / "llmpulse.toml").write_text(
            f'[providers.openai]\nbase_url = "{fleet.base_url("openai")}"\n'
            '[prices.overrides."openai/gpt-4o-mini-2024-07-18"]\ninput = 0.15\noutput = 0.6\n'
            '[prices.overrides."anthropic/claude-sonnet-4-20250514"]\ninput = 3.0\noutput = 15.0\n'
            '[usage_api]\nbucket_width = "1d"\nbackfill_days = 2\n'
            '[usage_api.openai]\nbudgets = "usage_api"\n'
            '[usage_api.openai.projects.proj_abc]\ndepartment = "Support"\n'
            '[[budgets]]\nscope = "total"\nlimit_usd = 1000\n'
            '[[budgets]]\nscope = "department:Support"\nlimit_usd = 1000\n'
        )
        env = {"OPENAI_API_KEY": KEY, "OPENAI_ADMIN_KEY": ADMIN}
        db = str(tmp_path / "b.db")
        calls = [
            ("openai", "gpt-4o-mini-2024-07-18", 10_000, 1_000, "Support"),  # counted by the usage API instead
            ("openai", "gpt-4o-mini-2024-07-18", 20_000, 2_000, ""),
            ("anthropic", "claude-sonnet-4-20250514", 1_000, 100, "Support"),  # recorded: counted as recorded
        ]
        for p, m, tin, tout, dept in calls:
            args = ["--provider", p, "--model", m, "--input-tokens", str(tin), "--output-tokens", str(tout)]
            r = run_cli(tmp_path, "--db", db, "record", *args, *(["--department", dept] if dept else []), env=env)
            assert r.returncode == 0, r.stderr
        recorded_openai = sum(price(p, m, i, o, 0, 0) for p, m, i, o, _ in calls if p == "openai")
        anthropic = price("anthropic", "claude-sonnet-4-20250514", 1_000, 100, 0, 0)

        r = run_cli(tmp_path, "--db", db, "reconcile", "--json", env=env)
        data = json.loads(r.stdout)
        (src,) = data["usage_api"]
        assert src["provider_id"] == "openai" and src["budgets_use"] == "usage_api" and src["error"] is None
        assert abs(src["recorded_usd"] - recorded_openai) < 1e-9
        assert abs(src["reported_usd"] - (z_support + z_other)) < 1e-9
        assert abs(src["difference_usd"] - (z_support + z_other - recorded_openai)) < 1e-9
        assert (src["reported_requests"], src["reported_tokens"]) == (6, 360_000)
        table = run_cli(tmp_path, "--db", db, "reconcile", "--cached", env=env)
        assert "USAGE API" in table.stdout and ADMIN not in table.stdout + table.stderr

        # `report` shows the usage API's figures beside its table; the table counts OpenAI by its report
        # (its budgets do), never both
        rep = json.loads(run_cli(tmp_path, "--db", db, "report", "--format", "json", env=env).stdout)
        (beside,) = rep["usage_api"]
        assert abs(beside["reported_usd"] - (z_support + z_other)) < 1e-9
        assert abs(rep["total"]["cost_usd"] - (z_support + z_other + anthropic)) < 1e-9
        text = run_cli(tmp_path, "--db", db, "report", env=env).stdout
        assert "openai: 6 requests, 360,000 tokens" in text

        r = run_cli(tmp_path, "--db", db, "budgets", "--json", env=env)
        spent = {b["scope"]: b["spent_usd"] for b in json.loads(r.stdout)["budgets"]}
    # OpenAI's recorded calls are replaced by its usage report; Anthropic's recorded calls still count
    assert abs(spent["total"] - (anthropic + z_support + z_other)) < 1e-9
    assert abs(spent["department:Support"] - (anthropic + z_support)) < 1e-9


async def test_an_answer_past_the_size_cap_is_refused_not_read_whole(tmp_path, monkeypatch):
    import llmpulse.core.usage.reconcile as reconcile

    monkeypatch.setattr(reconcile, "MAX_ANSWER_BYTES", 2000)
    cfg = parse_config(CONFIG, "t.toml")
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        serve_openai_usage(fleet, "openai", ADMIN, openai_buckets(40))  # ~25 kB a page
        store = await Store.open(tmp_path / "u.db")
        try:
            providers = providers_on(fleet, {"OPENAI_ADMIN_KEY": ADMIN})
            (report,) = await pull_usage(store, providers, cfg.usage.usage_api, Pricing(), NOW)
            assert report.error == "HTTP 200: answer larger than 2,000 bytes; stopped reading"
            (stored,) = await store.fetchone("SELECT COUNT(*) FROM provider_usage")
            assert stored == 0
        finally:
            await store.close()


def test_report_breakdowns_count_each_providers_budget_source_once(tmp_path):
    """`report --by department/agent/provider`: OpenAI's budgets count its usage report, so its groups
    come from the report's rows (projects and API keys mapped to departments and agents), its recorded
    calls left out; Anthropic's count its recorded calls, so its report (pulled too) is only for
    reconcile. Every figure is priced here from the pages served, and the budgets say the same."""
    now = time.time()
    today = int(now - now % DAY)

    openai_pages = [
        {
            "object": "bucket",
            "start_time": today,
            "end_time": today + DAY,
            "results": [
                openai_result("proj_abc", "key_bot", 200_000, 50_000),
                openai_result("proj_other", "key_x", 100_000, 10_000),
            ],
        }
    ]
    anthropic_pages = anthropic_buckets()
    anthropic_pages[0]["starting_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(today))
    anthropic_pages = anthropic_pages[:1]
    mini = "gpt-4o-mini-2024-07-18"
    sonnet = "claude-sonnet-4-20250514"
    z_support = price("openai", mini, 200_000, 50_000, 0, 0)
    z_other = price("openai", mini, 100_000, 10_000, 0, 0)
    with Fleet([FakeProvider("openai", key=KEY), FakeProvider("anthropic", kind="anthropic", key=KEY)]) as fleet:
        serve_openai_usage(fleet, "openai", ADMIN, openai_pages)
        serve_anthropic_usage(fleet, "anthropic", ANT_ADMIN, anthropic_pages)
        (tmp_path / "llmpulse.toml").write_text(
            f'[providers.openai]\nbase_url = "{fleet.base_url("openai")}"\n'
            f'[providers.anthropic]\nbase_url = "{fleet.base_url("anthropic").removesuffix("/v1")}"\n'
            f'[prices.overrides."openai/{mini}"]\ninput = 0.15\noutput = 0.6\ncache_read = 0.075\n'
            f'[prices.overrides."anthropic/{sonnet}"]\ninput = 3.0\noutput = 15.0\ncache_read = 0.3\n'
            "cache_write = 3.75\n"
            '[usage_api]\nbucket_width = "1d"\nbackfill_days = 2\n'
            '[usage_api.openai]\nbudgets = "usage_api"\n'
            '[usage_api.openai.projects.proj_abc]\ndepartment = "Support"\n'
            '[usage_api.openai.api_keys.key_bot]\nagent = "triage-bot"\n'
            '[usage_api.anthropic.api_keys.apikey_01Rj2N8SVvo6BePZj99NhmiT]\ndepartment = "Research"\n'
            '[[budgets]]\nscope = "total"\nlimit_usd = 1000\n'
            '[[budgets]]\nscope = "department:Support"\nlimit_usd = 1000\n'
            '[[budgets]]\nscope = "agent:triage-bot"\nlimit_usd = 1000\n'
        )
        env = {"OPENAI_API_KEY": KEY, "OPENAI_ADMIN_KEY": ADMIN, "ANTHROPIC_ADMIN_KEY": ANT_ADMIN}
        db = str(tmp_path / "b.db")
        calls = [
            ("openai", mini, 10_000, 1_000, "Support", "triage-bot"),  # OpenAI: its report counts instead
            ("openai", mini, 20_000, 2_000, "", ""),
            ("anthropic", sonnet, 1_000, 100, "Support", ""),  # Anthropic: recorded calls count
        ]
        for p, m, tin, tout, dept, agent in calls:
            args = ["--provider", p, "--model", m, "--input-tokens", str(tin), "--output-tokens", str(tout)]
            args += (["--department", dept] if dept else []) + (["--agent", agent] if agent else [])
            r = run_cli(tmp_path, "--db", db, "record", *args, env=env)
            assert r.returncode == 0, r.stderr
        anthropic = price("anthropic", sonnet, 1_000, 100, 0, 0)
        pulled = json.loads(run_cli(tmp_path, "--db", db, "reconcile", "--json", env=env).stdout)
        assert {u["provider_id"]: u["error"] for u in pulled["usage_api"]} == {"openai": None, "anthropic": None}

        def report(by: str) -> dict[str, Any]:
            r = run_cli(tmp_path, "--db", db, "report", "--by", by, "--format", "json", env=env)
            assert r.returncode == 0, r.stderr
            return json.loads(r.stdout)

        def groups(data: dict[str, Any]) -> dict[str, tuple[int, int, float]]:
            return {g["key"]: (g["requests"], g["tokens"], round(g["cost_usd"], 12)) for g in data["groups"]}

        dept = report("department")
        assert groups(dept) == {
            "Support": (1 + 3, 1_100 + 250_000, round(anthropic + z_support, 12)),
            "(no department)": (3, 110_000, round(z_other, 12)),
        }  # no "Research": Anthropic's report is for reconcile only
        assert dept["total"]["requests"] == 7
        assert abs(dept["total"]["cost_usd"] - (anthropic + z_support + z_other)) < 1e-12
        assert abs(sum(d["cost_usd"] for d in dept["daily"]) - dept["total"]["cost_usd"]) < 1e-12
        assert groups(report("agent")) == {
            "triage-bot": (3, 250_000, round(z_support, 12)),
            "(no agent)": (1 + 3, 1_100 + 110_000, round(anthropic + z_other, 12)),
        }
        by_provider = report("provider")
        assert groups(by_provider) == {
            "openai": (6, 360_000, round(z_support + z_other, 12)),
            "anthropic": (1, 1_100, round(anthropic, 12)),
        }
        # the success rate is the recorded calls' (a usage report has none)
        assert {g["key"]: g["success_rate"] for g in by_provider["groups"]} == {"openai": 1.0, "anthropic": 1.0}
        text = run_cli(tmp_path, "--db", db, "report", "--by", "department", env=env).stdout
        assert "the table and budgets count the source marked *" in text

        r = run_cli(tmp_path, "--db", db, "budgets", "--json", env=env)
        spent = {b["scope"]: b["spent_usd"] for b in json.loads(r.stdout)["budgets"]}
    assert abs(spent["total"] - dept["total"]["cost_usd"]) < 1e-12
    assert abs(spent["department:Support"] - (anthropic + z_support)) < 1e-12
    assert abs(spent["agent:triage-bot"] - z_support) < 1e-12


async def test_a_report_without_request_counts_replaces_tokens_and_cost_and_keeps_recorded_requests(tmp_path):
    """Anthropic's usage report counts no requests: with its budgets on the usage API, a group's
    requests stay the recorded calls' while tokens and cost are the report's (mapped key -> agent)."""
    cfg = parse_config(
        {
            **CONFIG,
            "usage_api": {
                **CONFIG["usage_api"],
                "anthropic": {
                    "budgets": "usage_api",
                    "api_keys": {"apikey_01Rj2N8SVvo6BePZj99NhmiT": {"agent": "summarizer"}},
                },
            },
        },
        "t.toml",
    )
    usage_cfg = cfg.usage.usage_api
    sonnet = "claude-sonnet-4-20250514"
    start = NOW - NOW % DAY - DAY  # the page's bucket: yesterday
    with Fleet([FakeProvider("anthropic", kind="anthropic", key=KEY)]) as fleet:
        serve_anthropic_usage(fleet, "anthropic", ANT_ADMIN, anthropic_buckets())
        providers = providers_on(fleet, {"ANTHROPIC_ADMIN_KEY": ANT_ADMIN})
        store = await Store.open(tmp_path / "a.db")
        try:
            pricing = Pricing(cfg.usage.prices)
            async with Recorder(store, pricing) as rec:
                for i in range(4):  # recorded with the agent's name: replaced, except their count
                    rec.record(
                        provider="anthropic",
                        model=sonnet,
                        input_tokens=100,
                        output_tokens=10,
                        agent="summarizer",
                        ts=start + 600 + i,
                    )
            (pulled,) = await pull_usage(store, providers, usage_cfg, pricing, NOW)
            assert pulled.error is None
            rows = await breakdown(store, "agent", start, NOW, usage_api=usage_cfg.usage_api_budgets)
            (g,) = rows
            assert (g.key, g.requests, g.input_tokens, g.output_tokens, g.cache_read_tokens) == (
                "summarizer",
                4,
                3200,
                500,
                200,
            )
            assert abs(g.cost_usd - price("anthropic", sonnet, 3200, 500, 200, 1500)) < 1e-12
            # without the usage API, the same range is the recorded calls
            (plain,) = await breakdown(store, "agent", start, NOW)
            assert (plain.requests, plain.input_tokens) == (4, 400)
            # the total and the per-provider rows (the provider's recorded side from the roll-ups) agree
            whole = await total(store, start, NOW, usage_api=usage_cfg.usage_api_budgets)
            (by_provider,) = await breakdown(store, "provider", start, NOW, usage_api=usage_cfg.usage_api_budgets)
            for row in (whole, by_provider):
                assert (row.requests, row.input_tokens, row.output_tokens) == (4, 3200, 500)
                assert abs(row.cost_usd - g.cost_usd) < 1e-12
        finally:
            await store.close()
