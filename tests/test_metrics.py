"""GET /metrics over a real socket: the contract's metric names and labels, figures checked against what the
test stored (or the raw rows), counters that pruning never lowers, OpenMetrics on request, the token, and
the real `promtool check metrics` (Debian's prometheus package; skipped with the reason without it)."""

from __future__ import annotations

import asyncio
import datetime as dt
from asyncio.subprocess import PIPE
from collections import Counter

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from thirdparty import binary

from llmpulse.core.clock import ManualClock
from llmpulse.core.collector import Collector
from llmpulse.core.config import load_context
from llmpulse.core.health_state import prune_probe_results
from llmpulse.core.server.app import Server, ServerState
from llmpulse.core.server.config import Listener
from llmpulse.core.server.health import install as install_health
from llmpulse.core.server.metrics import install as install_metrics
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.store import Store
from llmpulse.core.usage.queries import prune_usage
from llmpulse.core.usage.recorder import Recorder, pricing_for

KEY = "sk-proj-MetricsSecret0123456789abcdef"
TOKEN = "metrics-token-0123456789abcdef"
T0 = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC).timestamp()
CONTRACT = {
    "llmpulse_provider_up": ("gauge", {"provider"}),
    "llmpulse_provider_state": ("gauge", {"provider", "state"}),
    "llmpulse_probe_duration_seconds": ("histogram", {"provider"}),
    "llmpulse_requests": ("counter", {"provider", "model", "status"}),
    "llmpulse_tokens": ("counter", {"provider", "model", "type"}),
    "llmpulse_cost_usd": ("counter", {"provider", "model"}),
    "llmpulse_budget_utilization_ratio": ("gauge", {"budget"}),
    "llmpulse_budget_spent_usd": ("gauge", {"budget"}),
    "llmpulse_budget_projected_usd": ("gauge", {"budget"}),
    "llmpulse_alerts_firing": ("gauge", {"severity"}),
    "llmpulse_circuit_state": ("gauge", {"provider", "state"}),
    "llmpulse_ratelimit_headroom_ratio": ("gauge", {"provider"}),
    "llmpulse_balance_usd": ("gauge", {"provider"}),
    "llmpulse_migration_traffic_share_ratio": ("gauge", {"migration"}),
}
# (provider, model, status, input, output, cache_read, n): what the test records
CALLS = [
    ("openai", "gpt-4o", "ok", 1000, 200, 100, 30),
    ("openai", "gpt-4o", "error", 500, 0, 0, 4),
    ("openai", "gpt-4.1", "ok", 800, 300, 0, 12),
    ("deepseek", "deepseek-chat", "ok", 2000, 500, 0, 7),
]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


@pytest.fixture
async def served(tmp_path):
    """Two collector rounds on a fleet (openai healthy with rate-limit headers, deepseek healthy with a
    balance, groq failing), recorded usage, a budget and a migration; a server on 127.0.0.1."""
    with Fleet(
        [
            FakeProvider("openai", key=KEY),
            FakeProvider("deepseek", kind="deepseek", key=KEY),
            FakeProvider("groq", kind="groq", key=KEY, behaviour="server_error"),
        ]
    ) as fleet:
        lines = ["[probe]", 'timeout = "2s"']
        for pid in fleet.providers:
            lines += [f"[providers.{pid}]", f'base_url = "{fleet.base_url(pid)}"']
        lines += [
            "[[budgets]]",
            'scope = "total"',
            'period = "month"',
            "limit_usd = 1",
            "[[migrations]]",
            'name = "gpt-4.1"',
            'from = ["gpt-4o"]',
            'to = "gpt-4.1"',
            "start = 2026-11-01",
            "deadline = 2026-12-31",
        ]
        (tmp_path / "llmpulse.toml").write_text("\n".join(lines) + "\n")
        env = {"OPENAI_API_KEY": KEY, "DEEPSEEK_API_KEY": KEY, "GROQ_API_KEY": KEY}
        ctx = load_context(str(tmp_path / "llmpulse.toml"), str(tmp_path / "m.db"), environ=env)
        store = await Store.open(ctx.db_path)
        clock = ManualClock(T0)
        collector = Collector(ctx, store, clock, on_event=lambda _: None)
        for _ in range(3):
            await collector.run_round()
            clock.advance(30)
        async with Recorder(store, pricing_for(ctx), clock=clock) as rec:
            for provider, model, status, inp, out, cache, n in CALLS:
                for _ in range(n):
                    rec.record(
                        provider=provider,
                        model=model,
                        status=status,
                        input_tokens=inp,
                        output_tokens=out,
                        cache_read_tokens=cache,
                        ts=clock.now(),
                    )
        await collector.run_round()  # judges the recorded traffic too (budget, migration)
        state = ServerState(ctx, store, ctx.config.server, clock=clock)
        server = Server(state, Listener("127.0.0.1", 0, TOKEN), [install_health, install_metrics])
        await server.start()
        try:
            yield server, store, clock, ctx
        finally:
            await server.stop()
            await collector.notifier.drain(5)
            await store.close()


async def scrape(server: Server, accept: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if accept:
        headers["Accept"] = accept
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    return r


async def test_the_contract_names_labels_and_figures(served):
    server, store, _clock, _ctx = served
    async with httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.get("/metrics")).status_code == 401  # scrapes carry the token like any client
    r = await scrape(server)
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name, (kind, labels) in CONTRACT.items():
        assert name in families, name
        assert families[name].type == kind, name
        for s in families[name].samples:
            assert set(s.labels) - {"le"} == labels, (name, s.labels)
    found = samples(r.text)

    # Verdicts: configured providers only, one-hot state, up = healthy/degraded.
    statuses = {
        r["provider_id"]: r["last_status"]
        for r in await store.fetchall(
            "SELECT provider_id, last_status FROM provider_state WHERE last_status != 'unknown'"
        )
    }
    assert statuses == {"openai": "healthy", "deepseek": "healthy", "groq": "failed"}
    # The verdict weighs real traffic too (issue 18 §2): openai's recorded calls fail 4 of 46 (8.7%),
    # inside the default "concerning" error band (5%..10%), so it is degraded though its probes pass.
    openai_calls = [c for c in CALLS if c[0] == "openai"]
    rate = sum(c[6] for c in openai_calls if c[2] == "error") / sum(c[6] for c in openai_calls)
    assert 0.05 <= rate <= 0.10
    verdicts = {**statuses, "openai": "degraded"}
    for pid, status in verdicts.items():
        assert value(found, "llmpulse_provider_up", provider=pid) == (0.0 if status == "failed" else 1.0)
        assert value(found, "llmpulse_provider_state", provider=pid, state=status) == 1.0
        assert (
            sum(v for (n, labels), v in found.items() if n == "llmpulse_provider_state" and ("provider", pid) in labels)
            == 1.0
        )
    assert not any(("provider", "anthropic") in labels for _, labels in found)  # not configured: no series

    # The probe histogram counts every answered probe (raw rows counted here independently).
    answered = Counter(
        r["provider_id"]
        for r in await store.fetchall(
            "SELECT provider_id FROM probe_results WHERE latency_ms IS NOT NULL AND http_status"
        )
    )
    for pid, n in answered.items():
        assert value(found, "llmpulse_probe_duration_seconds_count", provider=pid) == n
        assert value(found, "llmpulse_probe_duration_seconds_bucket", provider=pid, le="+Inf") == n

    # Usage counters against what the test recorded.
    tokens: Counter[tuple[str, str, str]] = Counter()
    for provider, model, status, inp, out, cache, n in CALLS:
        assert value(found, "llmpulse_requests_total", provider=provider, model=model, status=status) == n
        for kind, each in (("input", inp), ("output", out), ("cache_read", cache), ("cache_write", 0)):
            tokens[(provider, model, kind)] += each * n
    for (provider, model, kind), n in tokens.items():
        assert value(found, "llmpulse_tokens_total", provider=provider, model=model, type=kind) == n
    raw_cost = {
        (r[0], r[1]): r[2]
        for r in await store.fetchall(
            "SELECT provider, model, SUM(cost_usd) FROM usage_records GROUP BY provider, model"
        )
    }
    for (provider, model), cost in raw_cost.items():
        assert value(found, "llmpulse_cost_usd_total", provider=provider, model=model) == pytest.approx(cost)
    assert raw_cost[("openai", "gpt-4o")] > 0

    # Budget, migration share (12 of 46 requests on gpt-4.1... of old+new: 12 / (34 + 12)), alerts.
    total_cost = sum(raw_cost.values())
    assert value(found, "llmpulse_budget_spent_usd", budget="total/month") == pytest.approx(total_cost)
    assert value(found, "llmpulse_budget_utilization_ratio", budget="total/month") == pytest.approx(total_cost / 1)
    assert value(found, "llmpulse_migration_traffic_share_ratio", migration="gpt-4.1") == pytest.approx(12 / 46)
    firing = Counter(r["severity"] for r in await store.fetchall("SELECT severity FROM alerts WHERE state = 'firing'"))
    for severity in ("info", "warning", "critical"):
        assert value(found, "llmpulse_alerts_firing", severity=severity) == firing.get(severity, 0)
    assert firing["critical"] >= 1  # groq is down

    # Circuit one-hot; the fleet's openai answers with rate-limit headers, deepseek with a balance.
    for pid in statuses:
        assert (
            sum(v for (n, labels), v in found.items() if n == "llmpulse_circuit_state" and ("provider", pid) in labels)
            == 1.0
        )
    assert 0.0 <= value(found, "llmpulse_ratelimit_headroom_ratio", provider="openai") <= 1.0
    assert ("llmpulse_balance_usd", (("provider", "deepseek"),)) in found


async def test_counters_never_go_down_when_raw_rows_are_pruned(served):
    server, store, clock, _ctx = served
    before = samples((await scrape(server)).text)
    clock.advance(400 * 86400)
    assert await prune_usage(store, clock.now(), 3600) > 0
    await prune_probe_results(store, clock.now(), 3600)
    # all but the newest call (retention never deletes the largest id: SQLite would give it again)
    assert (await store.fetchone("SELECT COUNT(*) FROM usage_calls"))[0] == 1
    assert (await store.fetchone("SELECT COUNT(*) FROM probe_results"))[0] == 0
    after = samples((await scrape(server)).text)
    counters = [k for k in before if k[0].endswith(("_total", "_count", "_sum", "_bucket"))]
    assert counters and all(after[k] == before[k] for k in counters)


async def test_openmetrics_when_asked(served):
    server, *_ = served
    r = await scrape(server, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")
    names = {f.name for f in parse_openmetrics(r.text)}
    assert {"llmpulse_requests", "llmpulse_probe_duration_seconds", "llmpulse_provider_up"} <= names


async def test_promtool_check_metrics_passes(served):
    promtool = binary("promtool", package="prometheus")
    server, *_ = served
    body = (await scrape(server)).text
    proc = await asyncio.create_subprocess_exec(promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE)
    out, err = await asyncio.wait_for(proc.communicate(body.encode()), timeout=30)
    # promtool prints each lint problem (and exits non-zero); a clean exposition prints nothing.
    assert proc.returncode == 0 and out.strip() == b"" and err.strip() == b"", (out + err).decode()


async def test_usage_totals_cache_sums_settled_days_once_and_never_goes_down(tmp_path):
    from llmpulse.core.metric_totals import UsageTotalsCache

    store = await Store.open(tmp_path / "u.db")
    clock = ManualClock(T0)
    try:

        async def record(n: int, days_ago: float) -> None:
            async with Recorder(store, clock=clock) as rec:
                for _ in range(n):
                    rec.record(provider="openai", model="gpt-4o", input_tokens=10, ts=clock.now() - days_ago * 86400)

        await record(5, days_ago=6)
        await record(3, days_ago=0)
        cache = UsageTotalsCache(refresh_s=600)
        assert (await cache.read(store, clock.now()))[("openai", "gpt-4o")].requests == 8
        await record(4, days_ago=0)  # live traffic: seen at once
        await record(2, days_ago=6)  # an import into a settled day: seen at the next refresh
        clock.advance(60)
        assert (await cache.read(store, clock.now()))[("openai", "gpt-4o")].requests == 12
        clock.advance(600)
        assert (await cache.read(store, clock.now()))[("openai", "gpt-4o")].requests == 14
        # A new day moves the settled boundary: nothing counted twice, nothing dropped.
        clock.advance(86400)
        assert (await cache.read(store, clock.now()))[("openai", "gpt-4o")].requests == 14
        clock.advance(86400)
        assert (await cache.read(store, clock.now()))[("openai", "gpt-4o")].requests == 14
    finally:
        await store.close()
