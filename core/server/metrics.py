"""`GET /metrics`: Prometheus exposition of provider health, usage, cost, budgets, alerts and migrations.

The names and labels below are a contract dashboards are built on (see README "Prometheus"). Every scrape
builds the metrics from the database at that moment through a custom prometheus_client collector: the
same health, budget and alert queries the dashboard refreshes with, and each migration's traffic share
from the roll-ups' counts (no usage summary, no request-stats window, no exact latencies from raw records), plus two small reads of all-time totals (llmpulse.core.metric_totals) for the counters and the
probe-latency histogram, which pruning never lowers. Labels are provider, model, budget, migration,
severity and fixed vocabularies (state, status, type): nothing per user or per request.

The text format by default; OpenMetrics when the scraper's Accept header asks for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from llmpulse.core.alerts.engine import AlertEngine
from llmpulse.core.clock import ManualClock
from llmpulse.core.enablement import apply_enablement
from llmpulse.core.health import load_health
from llmpulse.core.metric_totals import LatencyTotals, UsageTotals, UsageTotalsCache, probe_latency_totals
from llmpulse.core.migration.status import migration_shares
from llmpulse.core.server.app import STATE, ServerState
from llmpulse.core.usage.budgets import budget_statuses
from llmpulse.core.vocabulary import CIRCUITS, PROVIDER_STATUSES, SEVERITIES

UP_STATUSES = ("healthy", "degraded")
TOKEN_TYPES = ("input", "output", "cache_read", "cache_write")


@dataclass
class ScrapeData:
    """What one scrape reads from the database; the collector only formats it."""

    providers: list[Any] = field(default_factory=list)  # ProviderHealth of enabled, configured providers
    latency: dict[str, LatencyTotals] = field(default_factory=dict)
    usage: dict[tuple[str, str], UsageTotals] = field(default_factory=dict)
    budgets: list[Any] = field(default_factory=list)  # BudgetStatus
    migration_shares: dict[str, float | None] = field(default_factory=dict)  # name -> share of requests
    firing: dict[str, int] = field(default_factory=dict)  # severity -> firing alerts


USAGE_TOTALS: web.AppKey[UsageTotalsCache] = web.AppKey("llmpulse_usage_totals", UsageTotalsCache)


async def gather(state: ServerState, usage: UsageTotalsCache | None = None) -> ScrapeData:
    ctx, store, now = state.ctx, state.store, state.clock.now()
    cfg = ctx.config
    providers = await apply_enablement(store, ctx.providers)
    # The verdict weighs the window's real traffic (its error rate and p95 can make a provider whose
    # probes pass degraded or failed), so the scrape reads the same request statistics the dashboard does.
    from llmpulse.core.snapshot import window_traffic  # what the collector published, as the dashboard reads it

    stats, _ = await window_traffic(store, now, cfg.health.window)
    health = await load_health(store, providers, cfg.health, now, stats)
    alerts = await AlertEngine(store, cfg.alerts, ManualClock(now), None).open_alerts()
    firing: dict[str, int] = {s: sum(1 for a in alerts if a.state == "firing" and a.severity == s) for s in SEVERITIES}
    return ScrapeData(
        providers=[h for h in health if h.enabled and h.configured],
        latency=await probe_latency_totals(store),
        usage=await (usage or UsageTotalsCache()).read(store, now),
        budgets=await budget_statuses(store, cfg.usage, now),
        migration_shares=await migration_shares(store, cfg, now),
        firing=firing,
    )


class LlmpulseCollector:
    """A prometheus_client custom collector over one scrape's data."""

    def __init__(self, data: ScrapeData):
        self.data = data

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; collect() is only called per scrape

    def collect(self) -> Iterator[Metric]:
        d = self.data
        watched = sorted(d.providers, key=lambda h: h.provider_id)
        up = GaugeMetricFamily(
            "llmpulse_provider_up",
            "1 when the provider's verdict is healthy or degraded, 0 when failed",
            labels=["provider"],
        )
        state = GaugeMetricFamily(
            "llmpulse_provider_state",
            "The provider's current verdict: 1 for its state, 0 for the others",
            labels=["provider", "state"],
        )
        circuit = GaugeMetricFamily(
            "llmpulse_circuit_state", "The provider's circuit breaker: 1 for its state", labels=["provider", "state"]
        )
        headroom = GaugeMetricFamily(
            "llmpulse_ratelimit_headroom_ratio",
            "The smallest remaining/limit share of the provider's rate limits (0..1)",
            labels=["provider"],
        )
        balance = GaugeMetricFamily(
            "llmpulse_balance_usd", "Credit left on the provider's account, in US dollars", labels=["provider"]
        )
        for h in watched:
            pid = h.provider_id
            if h.status in UP_STATUSES or h.status == "failed":  # unknown: no verdict, no 0 or 1 either
                up.add_metric([pid], 1.0 if h.status in UP_STATUSES else 0.0)
            for s in PROVIDER_STATUSES:
                state.add_metric([pid, s], 1.0 if h.status == s else 0.0)
            for c in CIRCUITS:
                circuit.add_metric([pid, c], 1.0 if h.circuit == c else 0.0)
            ratio = h.rate_limit.headroom if h.rate_limit is not None else None
            if ratio is not None:
                headroom.add_metric([pid], float(ratio))
            b = h.balance
            if b is not None and b.amount is not None and (b.currency or "USD").upper() == "USD":
                balance.add_metric([pid], float(b.amount))
        yield from (up, state, circuit, headroom, balance)

        duration = HistogramMetricFamily(
            "llmpulse_probe_duration_seconds", "Latency of answered probes", labels=["provider"]
        )
        for h in watched:
            t = d.latency.get(h.provider_id)
            if t is not None:
                duration.add_metric([h.provider_id], t.cumulative(), t.sum_s)
        yield duration

        requests = CounterMetricFamily(
            "llmpulse_requests", "LLM calls recorded, by outcome", labels=["provider", "model", "status"]
        )
        tokens = CounterMetricFamily(
            "llmpulse_tokens", "Tokens of recorded LLM calls", labels=["provider", "model", "type"]
        )
        cost = CounterMetricFamily(
            "llmpulse_cost_usd",
            "Cost of recorded LLM calls in US dollars (calls of unknown price excluded)",
            labels=["provider", "model"],
        )
        for (provider, model), u in sorted(d.usage.items()):
            requests.add_metric([provider, model, "ok"], float(u.requests - u.errors))
            requests.add_metric([provider, model, "error"], float(u.errors))
            for kind, n in zip(
                TOKEN_TYPES, (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens), strict=True
            ):
                tokens.add_metric([provider, model, kind], float(n))
            cost.add_metric([provider, model], u.cost_usd)
        yield from (requests, tokens, cost)

        utilization = GaugeMetricFamily(
            "llmpulse_budget_utilization_ratio", "Spent / limit over the budget's current period", labels=["budget"]
        )
        spent = GaugeMetricFamily(
            "llmpulse_budget_spent_usd", "Spent in the budget's current period", labels=["budget"]
        )
        projected = GaugeMetricFamily(
            "llmpulse_budget_projected_usd",
            "Projected spend at the period's end at the current burn rate",
            labels=["budget"],
        )
        for b in sorted(d.budgets, key=lambda b: b.name):
            if b.partial:
                # A usage report the budget counts is not known: its figures are lower bounds, and a lower
                # bound in a gauge reads as the figure. No sample is Prometheus' "unknown".
                continue
            utilization.add_metric([b.name], float(b.utilization))
            spent.add_metric([b.name], float(b.spent_usd))
            if b.projected_usd is not None:
                projected.add_metric([b.name], float(b.projected_usd))
        yield from (utilization, spent, projected)

        firing = GaugeMetricFamily(
            "llmpulse_alerts_firing", "Open alerts firing (not acknowledged)", labels=["severity"]
        )
        for severity in SEVERITIES:
            firing.add_metric([severity], float(d.firing.get(severity, 0)))
        yield firing

        share = GaugeMetricFamily(
            "llmpulse_migration_traffic_share_ratio",
            "Share of the migration's requests on the new model",
            labels=["migration"],
        )
        for name, ratio in sorted(d.migration_shares.items()):
            if ratio is not None:
                share.add_metric([name], float(ratio))
        yield share


def exposition(data: ScrapeData, accept: str) -> tuple[bytes, str]:
    """The body and its content type: OpenMetrics when `accept` asks for it, else the text format."""
    encoder, content_type = choose_encoder(accept)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LlmpulseCollector(data))
    return encoder(registry), content_type


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await gather(state, request.app[USAGE_TOTALS])
    # Formatting is CPU work on every series; off the event loop so ingest requests keep flowing.
    body, content_type = await asyncio.to_thread(exposition, data, request.headers.get("Accept", ""))
    state.counters["metrics_scrapes"] += 1
    return web.Response(body=body, headers={"Content-Type": content_type})


def install(app: web.Application, state: ServerState) -> None:
    app[USAGE_TOTALS] = UsageTotalsCache()
    app.router.add_get("/metrics", metrics)
