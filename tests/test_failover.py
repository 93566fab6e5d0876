"""The failover client against fake providers on 127.0.0.1, recording every attempt as usage."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from llmpulse.core.config import load_context
from llmpulse.core.failover import AllProvidersFailed, FailoverClient
from llmpulse.core.health import circuit_states
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.store import Store
from tests.cli_helpers import run_cli

KEY = "sk-proj-FailoverSecret0123456789abcdef"
MODELS = {
    "openai": "gpt-4o-mini",
    "groq": "llama-3.3-70b-versatile",
    "mistral": "mistral-small-latest",
    "anthropic": "claude-haiku-4-5",
}


def context(tmp_path, fleet: Fleet, timeout: str = "1s"):
    lines = ["[probe]", f'timeout = "{timeout}"', "[health]", "failure_threshold = 2"]
    for pid in fleet.providers:
        lines += [f"[providers.{pid}]", f'base_url = "{fleet.base_url(pid)}"']
    (tmp_path / "llmpulse.toml").write_text("\n".join(lines) + "\n")
    env = {f"{pid.upper()}_API_KEY": KEY for pid in fleet.providers}
    return load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "f.db"), environ=env)


def fleet_of(*spec):
    return Fleet([FakeProvider(pid, kind=pid, key=KEY, behaviour=b) for pid, b in spec])


async def usage_rows(store):
    return [
        dict(r)
        for r in await store.fetchall(
            "SELECT provider, model, status, error_kind, is_fallback, fallback_from, input_tokens, output_tokens, "
            "department FROM usage_records ORDER BY ts, id"
        )
    ]


async def test_falls_through_429_then_500_then_ok(tmp_path):
    # priorities: openai 20, anthropic 21, groq 33, mistral 34
    with fleet_of(("openai", "rate_limited"), ("groq", "server_error"), ("mistral", "ok")) as fleet:
        ctx = context(tmp_path, fleet)
        store = await Store.open(ctx.db_path)
        try:
            async with FailoverClient(ctx, store, timeout=2) as client:
                answer = await client.chat([{"role": "user", "content": "hi"}], models=MODELS, department="Support")
            assert answer.provider_id == "mistral" and answer.text == "hello from mistral" and answer.fell_back
            rows = await usage_rows(store)
            assert [
                (r["provider"], r["status"], r["error_kind"], r["is_fallback"], r["fallback_from"]) for r in rows
            ] == [
                ("openai", "error", "rate_limited", 0, None),
                ("groq", "error", "server_error", 1, "openai"),
                ("mistral", "ok", None, 1, "groq"),
            ]
            assert (
                rows[2]["input_tokens"] == 12 and rows[2]["output_tokens"] == 7 and rows[2]["department"] == "Support"
            )
            [req] = [r for r in fleet.requests("mistral") if r.method == "POST"]
            assert req.headers["authorization"] == f"Bearer {KEY}" and req.json()["model"] == "mistral-small-latest"
        finally:
            await store.close()


async def test_anthropic_messages_and_a_401_falls_through_and_opens_its_circuit(tmp_path):
    with fleet_of(("anthropic", "ok"), ("mistral", "ok")) as fleet:
        ctx = context(tmp_path, fleet)
        store = await Store.open(ctx.db_path)
        try:
            async with FailoverClient(ctx, store) as client:
                answer = await client.chat(
                    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                    models=MODELS,
                    max_tokens=50,
                )
                assert answer.provider_id == "anthropic" and answer.input_tokens == 12
                [req] = [r for r in fleet.requests("anthropic") if r.method == "POST"]
                assert req.path == "/v1/messages" and req.headers["x-api-key"] == KEY
                assert req.json()["system"] == "be brief" and req.headers["anthropic-version"] == "2023-06-01"
                fleet.set_behaviour("anthropic", "bad_key")
                # A refused key is that provider's problem: the next one answers, and the refusing
                # provider's circuit opens at once (threshold 2 is not waited for: retrying will not fix a key).
                answer = await client.chat([{"role": "user", "content": "hi"}], models=MODELS)
                assert answer.provider_id == "mistral"
                assert [(a.provider_id, a.http_status, a.error_kind) for a in answer.attempts] == [
                    ("anthropic", 401, "auth"),
                    ("mistral", 200, None),
                ]
                assert all(KEY not in (a.error or "") for a in answer.attempts)
            assert len([r for r in fleet.requests("mistral") if r.method == "POST"]) == 1
            assert (await circuit_states(store, ctx.config.health, time.time()))["anthropic"].circuit == "open"
        finally:
            await store.close()


async def test_all_down_names_each_and_hang_costs_its_timeout(tmp_path):
    with fleet_of(("openai", "overloaded"), ("groq", "hang"), ("mistral", "server_error")) as fleet:
        ctx = context(tmp_path, fleet)
        store = await Store.open(ctx.db_path)
        try:
            async with FailoverClient(ctx, store, timeout=0.5) as client:
                # groq never answers: the call ends only because its own 0.5 s deadline cut it, which the
                # message says below. The 30 s guard only stops a regression from hanging the suite.
                with pytest.raises(AllProvidersFailed) as err:
                    await asyncio.wait_for(client.chat([{"role": "user", "content": "hi"}], models=MODELS), 30)
                message = str(err.value)
                assert message.startswith("all 3 providers failed: openai (HTTP 503 overloaded")
                assert (
                    "groq (timeout: no answer within 0.5s)" in message and "mistral (HTTP 500 server_error" in message
                )
                # a second round of failures opens the circuits (threshold 2): the third call skips them all
                with pytest.raises(AllProvidersFailed, match="all 3 providers failed"):
                    await client.chat([{"role": "user", "content": "hi"}], models=MODELS)
                with pytest.raises(AllProvidersFailed, match="no usable provider to try; skipped: .*circuit open"):
                    await client.chat([{"role": "user", "content": "hi"}], models=MODELS)
            circuits = await circuit_states(store, ctx.config.health, time.time())
            assert {pid: c.circuit for pid, c in circuits.items()} == {
                "openai": "open",
                "groq": "open",
                "mistral": "open",
            }
        finally:
            await store.close()


def test_failover_command_shows_chain_and_fallback_stats(tmp_path):
    import asyncio

    with fleet_of(("openai", "rate_limited"), ("mistral", "ok"), ("groq", "ok")) as fleet:
        ctx = context(tmp_path, fleet)

        async def traffic():
            store = await Store.open(ctx.db_path)
            try:
                async with FailoverClient(ctx, store) as client:
                    for _ in range(2):
                        await client.chat([{"role": "user", "content": "hi"}], models=MODELS)
            finally:
                await store.close()

        asyncio.run(traffic())
        assert run_cli(tmp_path, "--db", str(ctx.db_path), "providers", "disable", "groq").returncode == 0
        env = {f"{pid.upper()}_API_KEY": KEY for pid in fleet.providers}
        r = run_cli(tmp_path, "--db", str(ctx.db_path), "failover", "--json", env=env)
        text = run_cli(tmp_path, "--db", str(ctx.db_path), "failover", env=env)
    assert r.returncode == 0 and text.returncode == 0, r.stderr + text.stderr
    assert KEY not in r.stdout + r.stderr + text.stdout + text.stderr
    assert "no: circuit open" in text.stdout and "no: disabled" in text.stdout
    assert "fallbacks 24h: 2 of 4 requests (50.0%); openai→groq 2" in text.stdout
    data = json.loads(r.stdout)
    chain = {c["id"]: c for c in data["chain"]}
    # openai's two 429s opened its circuit (threshold 2): mistral now leads
    assert chain["openai"]["skipped"] == "circuit open" and chain["mistral"]["position"] == 1
    assert chain["groq"]["skipped"] == "disabled" and chain["groq"]["position"] is None
    day = data["fallbacks"]["24h"]
    assert day["fallbacks"] == 2 and day["requests"] == 4
    assert day["pairs"] == [{"from": "openai", "to": "groq", "requests": 2}]  # groq (33) before mistral (34)
    assert day["fallback_rate"] == 0.5 and data["fallbacks"]["7d"]["pairs"] == day["pairs"]
    assert chain["mistral"]["circuit"] == "closed" and chain["openai"]["enabled"] is True
