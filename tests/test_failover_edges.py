"""Failover edges against the fleet on 127.0.0.1: 498/529, which 4xx stop the chain, keys kept out of
errors and the database, skipped providers as fallbacks, half-open circuits, request ids, recorders."""

from __future__ import annotations

import contextlib
import secrets

import pytest

from llmpulse.core.clock import ManualClock
from llmpulse.core.config import load_context
from llmpulse.core.enablement import set_enabled
from llmpulse.core.failover import AllProvidersFailed, FailoverClient, RequestRejected, plan_chain
from llmpulse.core.health import circuit_states, load_health
from llmpulse.core.simulator.fleet import FakeProvider, Fleet, Response
from llmpulse.core.store import Store
from llmpulse.core.usage.recorder import Recorder, pricing_for

MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "groq": "llama-3.3-70b-versatile",
    "mistral": "mistral-small-latest",
}
HI = [{"role": "user", "content": "hi"}]
# priorities in the catalog: openai 20, anthropic 21, groq 33, mistral 34


def fresh_key() -> str:
    # no provider-key shape, so only the client's own registration of loaded keys can mask it
    return "fleetkey" + secrets.token_hex(12)


def context(tmp_path, fleet: Fleet, key: str, threshold: int = 2, cooldown: str = "60s", urls=None):
    lines = ["[health]", f"failure_threshold = {threshold}", f'cooldown = "{cooldown}"']
    for pid in fleet.providers:
        lines += [f"[providers.{pid}]", f'base_url = "{(urls or {}).get(pid) or fleet.base_url(pid)}"']
    (tmp_path / "llmpulse.toml").write_text("\n".join(lines) + "\n")
    env = {f"{pid.upper()}_API_KEY": key for pid in fleet.providers}
    return load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "f.db"), environ=env)


def fleet_of(key: str, *spec):
    return Fleet([FakeProvider(pid, kind=pid, key=key, behaviour=b) for pid, b in spec])


@contextlib.asynccontextmanager
async def on_fleet(tmp_path, *spec):
    """A fresh key, the fleet answering with it, a context pointing at the fleet, and its store."""
    key = fresh_key()
    with fleet_of(key, *spec) as fleet:
        ctx = context(tmp_path, fleet, key)
        store = await Store.open(ctx.db_path)
        try:
            yield key, fleet, ctx, store
        finally:
            await store.close()


async def usage_rows(store):
    return [
        dict(r)
        for r in await store.fetchall(
            "SELECT provider, status, error_kind, is_fallback, fallback_from, request_id FROM usage_records "
            "ORDER BY ts, id"
        )
    ]


def posts(fleet, pid):
    return [r for r in fleet.requests(pid) if r.method == "POST"]


async def test_529_and_498_fall_through(tmp_path):
    key = fresh_key()
    with fleet_of(key, ("anthropic", "overloaded"), ("groq", "ok"), ("mistral", "ok")) as fleet:
        fleet.add_route(
            "groq",
            "POST",
            "/chat/completions",
            lambda fake, req: Response.json(
                498, {"error": {"message": "Flex tier capacity exceeded", "type": "capacity_exceeded"}}
            ),
        )
        ctx = context(tmp_path, fleet, key)
        store = await Store.open(ctx.db_path)
        try:
            async with FailoverClient(ctx, store, timeout=2) as client:
                answer = await client.chat(HI, models=MODELS)
            assert answer.provider_id == "mistral"
            assert [(a.provider_id, a.http_status, a.error_kind) for a in answer.attempts] == [
                ("anthropic", 529, "overloaded"),
                ("groq", 498, "overloaded"),
                ("mistral", 200, None),
            ]
            assert [(r["provider"], r["is_fallback"], r["fallback_from"]) for r in await usage_rows(store)] == [
                ("anthropic", 0, None),
                ("groq", 1, "anthropic"),
                ("mistral", 1, "groq"),
            ]
        finally:
            await store.close()


@pytest.mark.parametrize("code", [400, 404, 409, 422])
async def test_callers_errors_are_raised_at_once_not_retried(tmp_path, code):
    key = fresh_key()
    with fleet_of(key, ("openai", "ok"), ("mistral", "ok")) as fleet:
        fleet.add_route(
            "openai",
            "POST",
            "/chat/completions",
            lambda fake, req: Response.json(
                code, {"error": {"message": "The model `gpt-9` does not exist", "type": "invalid_request_error"}}
            ),
        )
        ctx = context(tmp_path, fleet, key, threshold=1)
        store = await Store.open(ctx.db_path)
        try:
            async with FailoverClient(ctx, store) as client:
                with pytest.raises(RequestRejected, match=f"openai rejected the request: HTTP {code}") as err:
                    await client.chat(HI, models=MODELS)
            assert [a.provider_id for a in err.value.attempts] == ["openai"]
            assert not posts(fleet, "mistral")
            assert [(r["provider"], r["status"], r["is_fallback"]) for r in await usage_rows(store)] == [
                ("openai", "error", 0)
            ]
            # the caller's mistake says nothing about the provider: its circuit stays closed
            circuits = await circuit_states(store, ctx.config.health, 0)
            assert "openai" not in circuits or circuits["openai"].circuit == "closed"
        finally:
            await store.close()


async def test_a_key_echoed_by_a_provider_stays_out_of_errors_and_the_database(tmp_path):
    key = fresh_key()
    with fleet_of(key, ("openai", "ok"), ("mistral", "ok")) as fleet:
        for pid in ("openai", "mistral"):
            fleet.add_route(
                pid,
                "POST",
                "/chat/completions",
                lambda fake, req: Response.json(
                    500, {"error": {"message": f"upstream refused key {key} for this org", "type": "server_error"}}
                ),
            )
        ctx = context(tmp_path, fleet, key)
        store = await Store.open(ctx.db_path)
        try:
            async with FailoverClient(ctx, store) as client:
                with pytest.raises(AllProvidersFailed) as err:
                    await client.chat(HI, models=MODELS, department="Support")
            message = str(err.value)
            assert "openai (HTTP 500 server_error: upstream refused key *** for this org" in message
            assert key not in message and all(key not in (a.error or "") for a in err.value.attempts)
            for table in ("usage_records", "provider_state"):
                for row in await store.fetchall(f"SELECT * FROM {table}"):
                    assert key not in repr(tuple(row))
        finally:
            await store.close()
    assert (tmp_path / "f.db").exists() and key.encode() not in (tmp_path / "f.db").read_bytes()


async def test_connection_refused_falls_through(tmp_path):
    key = fresh_key()
    with fleet_of(key, ("openai", "ok"), ("mistral", "ok")) as fleet:
        ctx = context(tmp_path, fleet, key, urls={"openai": Fleet.closed_port_url() + "/v1"})
        store = await Store.open(ctx.db_path)
        try:
            async with FailoverClient(ctx, store, timeout=2) as client:
                answer = await client.chat(HI, models=MODELS)
            assert answer.provider_id == "mistral" and answer.attempts[0].error_kind == "connect"
        finally:
            await store.close()


async def test_open_circuit_is_skipped_counted_as_fallback_then_half_open_closes(tmp_path):
    key = fresh_key()
    clock = ManualClock()
    with fleet_of(key, ("openai", "server_error"), ("mistral", "ok")) as fleet:
        ctx = context(tmp_path, fleet, key, threshold=2, cooldown="60s")
        store = await Store.open(ctx.db_path)
        try:
            async with FailoverClient(ctx, store, clock=clock) as client:
                for _ in range(2):
                    assert (await client.chat(HI, models=MODELS)).provider_id == "mistral"
                assert len(posts(fleet, "openai")) == 2
                order, skipped = await client.chain(MODELS)
                assert [p.id for p in order] == ["mistral"] and skipped == [("openai", "circuit open")]
                # openai is out: the request goes straight to mistral, and that is still a fallback from openai
                answer = await client.chat(HI, models=MODELS)
                assert len(posts(fleet, "openai")) == 2 and len(answer.attempts) == 1
                assert answer.attempts[0].is_fallback and answer.attempts[0].fallback_from == "openai"
                # after the cool-down one request may try it again; a success closes the circuit
                fleet.set_behaviour("openai", "ok")
                clock.advance(61)
                assert (await client.chat(HI, models=MODELS)).provider_id == "openai"
            circuits = await circuit_states(store, ctx.config.health, clock.now())
            assert circuits["openai"].circuit == "closed" and circuits["openai"].consecutive_failures == 0
            assert [(r["provider"], r["is_fallback"], r["fallback_from"]) for r in await usage_rows(store)] == [
                ("openai", 0, None),
                ("mistral", 1, "openai"),
                ("openai", 0, None),
                ("mistral", 1, "openai"),
                ("mistral", 1, "openai"),
                ("openai", 0, None),
            ]
        finally:
            await store.close()


async def test_a_disabled_provider_is_neither_tried_nor_a_fallback_source(tmp_path):
    async with on_fleet(tmp_path, ("openai", "ok"), ("mistral", "ok")) as (_key, fleet, ctx, store):
        await set_enabled(store, "openai", False)
        async with FailoverClient(ctx, store) as client:
            answer = await client.chat(HI, models=MODELS)
        assert answer.provider_id == "mistral" and not answer.attempts[0].is_fallback
        assert not posts(fleet, "openai")
        plan = plan_chain(await load_health(store, ctx.providers, ctx.config.health, 0))
        assert [(e.provider_id, e.position, e.skipped) for e in plan] == [
            ("openai", 1, None),
            ("mistral", 2, None),
        ]  # without enablement applied both are in


async def test_request_id_kept_apart_per_attempt_and_shared_recorder(tmp_path):
    async with on_fleet(tmp_path, ("openai", "rate_limited"), ("mistral", "ok")) as (_key, _fleet, ctx, store):
        async with Recorder(store, pricing_for(ctx), flush_interval=60) as rec:
            async with FailoverClient(ctx, store, recorder=rec) as client:
                await client.chat(HI, models=MODELS, request_id="req-1")
            # the application's recorder is its own: the client does not close or flush it
            assert await usage_rows(store) == []
        assert [(r["provider"], r["request_id"]) for r in await usage_rows(store)] == [
            ("openai", "req-1"),
            ("mistral", "req-1@mistral"),
        ]


async def test_without_async_with_attempts_are_written_at_once(tmp_path):
    key = fresh_key()
    with fleet_of(key, ("mistral", "ok")) as fleet:
        ctx = context(tmp_path, fleet, key)
        store = await Store.open(ctx.db_path)
        client = FailoverClient(ctx, store)
        try:
            await client.chat(HI, model="mistral-small-latest")
            assert [r["provider"] for r in await usage_rows(store)] == ["mistral"]
        finally:
            await client.aclose()
            await store.close()


async def test_bad_call_is_refused_before_anything_is_sent(tmp_path):
    async with on_fleet(tmp_path, ("mistral", "ok")) as (_key, fleet, ctx, store):
        async with FailoverClient(ctx, store) as client:
            with pytest.raises(ValueError, match="needs a model"):
                await client.chat(HI)
            with pytest.raises(TypeError, match="unknown attribution departmnt"):
                await client.chat(HI, models=MODELS, departmnt="Support")
        assert not posts(fleet, "mistral") and await usage_rows(store) == []


async def test_a_provider_whose_probe_failed_is_skipped_with_the_reason(tmp_path):
    from llmpulse.core.health import record_probe_results
    from llmpulse.core.probe import probe_all

    async with on_fleet(tmp_path, ("openai", "server_error"), ("mistral", "ok")) as (_key, fleet, ctx, store):
        clock = ManualClock()
        results = await probe_all(ctx.providers, ctx.config.probe, now=clock.now())
        await record_probe_results(store, results, ctx.config.health, clock.now())
        async with FailoverClient(ctx, store, clock=clock) as client:
            assert (await client.chain(MODELS))[1] == [("openai", "latest probe failed (server_error)")]
            answer = await client.chat(HI, models=MODELS)
        assert answer.provider_id == "mistral" and answer.attempts[0].fallback_from == "openai"
        assert not posts(fleet, "openai")


async def test_a_success_on_a_healthy_circuit_writes_nothing_but_one_after_a_failure_resets_it(tmp_path):
    """Reading the chain costs one row per candidate; a success that changes no circuit is not written
    (a write per call would queue chats behind the collector), while one after a failure is."""
    async with on_fleet(tmp_path, ("openai", "ok"), ("groq", "ok")) as (_key, _fleet, ctx, store):
        async with FailoverClient(ctx, store) as client:
            for _ in range(3):
                assert (await client.chat(HI, models=MODELS)).provider_id == "openai"
            assert await store.fetchall("SELECT * FROM provider_state") == []
            await store.execute(
                "INSERT INTO provider_state (provider_id, consecutive_failures, updated_at) VALUES ('openai', 1, 0)"
            )
            await client.chat(HI, models=MODELS)
        row = await store.fetchone(
            "SELECT circuit, consecutive_failures FROM provider_state WHERE provider_id = 'openai'"
        )
        assert (row["circuit"], row["consecutive_failures"]) == ("closed", 0)
        assert len(await usage_rows(store)) == 4
