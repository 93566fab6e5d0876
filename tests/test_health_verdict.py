"""One health verdict per provider from probes AND real traffic (issue 18 §2): a provider whose probes
pass while 13% of its real requests fail is degraded, with the reason; bands are words; p50 and p95 come
from the same calls and say whose."""

from __future__ import annotations

import time

from llmpulse.core.collector import Collector
from llmpulse.core.config import load_context
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.snapshot import build_snapshot
from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.records import record_from_mapping
from llmpulse.core.usage.rollup import ingest

KEY = "sk-proj-VerdictSecret0123456789abcdef"


def _traffic(provider: str, n: int, failed: int, now: float, latency) -> list:
    return [
        record_from_mapping(
            {
                "ts": now - 30 - i * 5,
                "provider": provider,
                "model": "m",
                "status": "error" if i < failed else "ok",
                "latency_ms": latency(i),
            },
            now,
        )
        for i in range(n)
    ]


async def test_traffic_errors_and_latency_weigh_in_the_verdict(tmp_path):
    providers = [
        FakeProvider("openai", key=KEY),
        FakeProvider("groq", kind="groq", key=KEY),
        FakeProvider("mistral", kind="mistral", key=KEY),
    ]
    with Fleet(providers) as fleet:
        lines = ["[probe]", 'timeout = "1s"', "[health]", 'window = "15m"']
        for pid in fleet.providers:
            lines += [f"[providers.{pid}]", f'base_url = "{fleet.base_url(pid)}"']
        (tmp_path / "llmpulse.toml").write_text("\n".join(lines) + "\n")
        env = {"OPENAI_API_KEY": KEY, "GROQ_API_KEY": KEY, "MISTRAL_API_KEY": KEY}
        ctx = load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "v.db"), environ=env)
        now = time.time()
        store = await Store.open(ctx.db_path)
        try:
            openai_lat = [200.0 + i for i in range(100)]
            records = (
                _traffic("openai", 100, 13, now, lambda i: openai_lat[i])  # 13% failed
                + _traffic("groq", 100, 21, now, lambda i: 300.0)  # 21%
                + _traffic("mistral", 3, 3, now, lambda i: 9000.0)  # a trickle: the probes decide
            )
            await ingest(store, records, Pricing())
            await Collector(ctx, store, on_event=lambda _: None).run_round()
            snap = await build_snapshot(store, ctx, time.time())
        finally:
            await store.close()
    by_id = {h.provider_id: h for h in snap.providers}
    openai, groq, mistral = by_id["openai"], by_id["groq"], by_id["mistral"]
    assert openai.probe_status == "healthy" and openai.status == "degraded"
    assert openai.reason == "degraded: 13% of requests failed over 15m"
    assert openai.error_band == "critical" and openai.error_source == "traffic"
    ordered = sorted(openai_lat)
    assert (openai.p50_ms, openai.p95_ms, openai.latency_source) == (ordered[49], ordered[94], "traffic")
    assert openai.latency_band == "excellent"
    assert groq.status == "degraded" and "21% of requests failed" in groq.reason
    assert mistral.status == "healthy" and mistral.error_source == "probes" and mistral.latency_source == "probes"
    assert mistral.p95_ms is not None and mistral.p95_ms < 9000.0
    as_json = openai.to_json()
    for field in ("status", "reason", "error_band", "latency_band", "latency_source", "p50_ms", "p95_ms", "watched"):
        assert field in as_json
    assert snap.header.providers_healthy == 1  # only mistral: the header counts verdicts, not probes
