"""`llmpulse status [--json]`: the verdicts for scripts and SSH one-liners — read only, never a probe."""

from __future__ import annotations

import hashlib
import json
import time

from llmpulse.core.collector import Collector
from llmpulse.core.config import load_context
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.records import record_from_mapping
from llmpulse.core.usage.rollup import ingest
from tests.cli_helpers import run_cli

KEY = "sk-proj-StatusSecret0123456789abcdefgh"


async def test_status_prints_the_verdicts_and_reads_only(tmp_path):
    with Fleet(
        [FakeProvider("openai", key=KEY), FakeProvider("groq", kind="groq", key=KEY, behaviour="bad_key")]
    ) as fleet:
        lines = ["[probe]", 'timeout = "1s"', "[[budgets]]", 'scope = "total"', 'period = "month"', "limit_usd = 50"]
        for pid in fleet.providers:
            lines += [f"[providers.{pid}]", f'base_url = "{fleet.base_url(pid)}"']
        (tmp_path / "llmpulse.toml").write_text("\n".join(lines) + "\n")
        env = {"OPENAI_API_KEY": KEY, "GROQ_API_KEY": KEY}
        ctx = load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "s.db"), environ=env)
        now = time.time()
        store = await Store.open(ctx.db_path)
        try:
            calls = [
                record_from_mapping(
                    {
                        "ts": now - 20 - i,
                        "provider": "openai",
                        "model": "gpt-4o",
                        "status": "error" if i < 13 else "ok",
                        "latency_ms": 100.0 + 10 * i,
                    },
                    now,
                )
                for i in range(100)
            ]
            await ingest(store, calls, Pricing())
            await Collector(ctx, store, on_event=lambda _: None).run_round()
            await Collector(ctx, store, on_event=lambda _: None).run_round()
        finally:
            await store.close()
        digest = hashlib.sha256(ctx.db_path.read_bytes()).hexdigest()
        # The fleet goes away: a status that probed would find nothing to reach and say so.
    cli_env = {"OPENAI_API_KEY": KEY, "GROQ_API_KEY": KEY}
    proc = run_cli(tmp_path, "--config", "llmpulse.toml", "--db", "s.db", "status", "--json", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert hashlib.sha256(ctx.db_path.read_bytes()).hexdigest() == digest  # nothing written
    by_id = {p["provider_id"]: p for p in data["providers"]}
    assert set(by_id) == {"openai", "groq"}
    openai, groq = by_id["openai"], by_id["groq"]
    assert openai["status"] == "degraded" and openai["reason"] == "degraded: 13% of requests failed over 15m"
    assert openai["error_band"] == "critical" and openai["latency_source"] == "traffic"
    latencies = sorted(100.0 + 10 * i for i in range(100))
    assert (openai["p50_ms"], openai["p95_ms"]) == (latencies[49], latencies[94])
    assert groq["status"] == "failed" and groq["reason"].startswith("failed: auth")
    assert groq["circuit"] in ("closed", "open")
    assert data["budgets"][0]["name"] == "total/month"
    assert any(a["rule"] == "provider_auth" for a in data["alerts"])
    assert not data["collector"]["alive"] and data["summary"].startswith("0/2 healthy")
    assert "no collector since" in data["summary"] and "data " in data["summary"]
    assert KEY not in proc.stdout

    text = run_cli(tmp_path, "--config", "llmpulse.toml", "--db", "s.db", "status", env=cli_env)
    assert text.returncode == 0, text.stderr
    first = text.stdout.splitlines()[0]
    assert first.startswith("0/2 healthy, ") and "no collector since" in first
    assert "degraded: 13% of requests failed over 15m" in text.stdout and "(traffic)" in text.stdout


def test_status_without_a_database_is_one_clear_line(tmp_path):
    proc = run_cli(tmp_path, "--db", str(tmp_path / "none" / "x.db"), "status")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
