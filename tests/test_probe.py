"""Probes against real HTTP servers on 127.0.0.1 (llmpulse.core.simulator.fleet): every error kind, every auth style,
the deadline, and keys kept out of everything a probe produces."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import pytest

from llmpulse.core.catalog import CATALOG_BY_ID, ProviderOverride, resolve_providers
from llmpulse.core.health import record_probe_results
from llmpulse.core.health_settings import HealthSettings
from llmpulse.core.probe import probe_all
from llmpulse.core.probe_settings import ProbeSettings
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.store import Store
from tests.conftest import providers_for

OPENAI_KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123456789"
KEYS = {
    "OPENAI_API_KEY": OPENAI_KEY,
    "ANTHROPIC_API_KEY": "sk-ant-api03-ZYXWVUTSRQ0987654321",
    "GOOGLE_API_KEY": "AIzaSyA1234567890abcdefghijklmnopqrs",
    "AZURE_OPENAI_API_KEY": "azurekey0123456789abcdef",
    "DEEPSEEK_API_KEY": "sk-deepseek0123456789abcdef",
    "MOONSHOT_API_KEY": "sk-moonshot0123456789ab",
    "OPENROUTER_API_KEY": "sk-or-v1-0123456789abcdef0123",
    "XAI_API_KEY": "xai-0123456789abcdefghij",
    "TOGETHER_API_KEY": "tgp_v1_0123456789abcdefghij",
    "GROQ_API_KEY": "gsk_0123456789abcdefghij",
    "MISTRAL_API_KEY": "mistral0123456789abcdefgh",
}
KEY_OF_KIND = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GOOGLE_API_KEY",
    "azure": "AZURE_OPENAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "moonshot": "MOONSHOT_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "xai": "XAI_API_KEY",
    "together": "TOGETHER_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
}
# A healthy answer is never "slow" here (slow = timeout): on a loaded machine an instant answer can take
# longer than a small threshold, and that must not flip a test about auth or shapes. The slow test sets
# its own threshold, far below the fake's delay.
SETTINGS = ProbeSettings(timeout=1.0, slow=1.0)


def fake(pid: str, kind: str, behaviour: str = "ok", **kw) -> FakeProvider:
    key = KEYS[KEY_OF_KIND[kind]] if kind in KEY_OF_KIND else None
    return FakeProvider(pid, kind=kind, key=key, behaviour=behaviour, **kw)


async def probe(fleet: Fleet, *fakes: FakeProvider, settings: ProbeSettings = SETTINGS):
    for f in fakes:
        fleet.add(f)
    providers = providers_for(fleet, KEYS, [f.id for f in fakes])
    results = await probe_all(providers, settings)
    return {r.provider_id: r for r in results}


@pytest.mark.parametrize(
    "kind",
    [
        "openai",
        "azure",
        "anthropic",
        "gemini",
        "together",
        "openrouter",
        "moonshot",
        "deepseek",
        "xai",
        "mistral",
        "groq",
        "ollama",
        "localai",
    ],
)
async def test_every_kind_healthy_with_its_auth_header(fleet, kind):
    results = await probe(fleet, fake(kind, kind))
    r = results[kind]
    assert (r.status, r.error_kind, r.http_status) == ("healthy", None, 200), r
    [req] = fleet.requests(kind)
    headers = req.headers
    expected = {"anthropic": "x-api-key", "gemini": "x-goog-api-key", "azure": "api-key"}.get(kind)
    if kind in KEY_OF_KIND:
        key = KEYS[KEY_OF_KIND[kind]]
        if expected:
            assert headers[expected] == key and "authorization" not in headers
        else:
            assert headers["authorization"] == f"Bearer {key}"
        # Never in the URL (Gemini's ?key= leaks into logs)
        assert key not in req.path and all(key not in v for vs in req.query.values() for v in vs)
    if kind == "anthropic":
        assert headers["anthropic-version"] == "2023-06-01"
    if kind == "azure":
        assert req.query["api-version"] == ["2024-10-21"]
    if kind in ("deepseek", "moonshot", "openrouter"):
        assert r.balance is not None and r.balance.amount == pytest.approx(42.5)


@pytest.mark.parametrize(
    "kind,behaviour,status,error_kind,http",
    [
        ("openai", "bad_key", "failed", "auth", 401),
        ("gemini", "bad_key", "failed", "auth", 400),  # Gemini says API_KEY_INVALID with a 400
        ("xai", "bad_key", "failed", "auth", 400),
        ("deepseek", "quota", "failed", "quota", 402),
        ("openai", "quota", "failed", "quota", 429),  # insufficient_quota: a 429 that is not a rate limit
        ("groq", "rate_limited", "degraded", "rate_limited", 429),
        ("anthropic", "overloaded", "degraded", "overloaded", 529),
        ("together", "overloaded", "degraded", "overloaded", 503),
        ("mistral", "server_error", "failed", "server_error", 500),
        ("openai", "garbage", "failed", "bad_response", 200),
        ("anthropic", "wrong_shape", "failed", "bad_response", 200),
        ("openai", "hang", "failed", "timeout", None),
    ],
)
async def test_error_kinds(fleet, kind, behaviour, status, error_kind, http):
    r = (await probe(fleet, fake("p", kind, behaviour)))["p"]
    assert (r.status, r.error_kind, r.http_status) == (status, error_kind, http), r
    assert r.error


async def test_wrong_key_is_auth_even_when_the_service_is_fine(fleet):
    fleet.add(FakeProvider("openai", kind="openai", key="sk-some-other-key-0000000000"))
    [r] = await probe_all(providers_for(fleet, KEYS, ["openai"]), SETTINGS)
    assert (r.status, r.error_kind) == ("failed", "auth")
    assert OPENAI_KEY not in json.dumps(r.to_json())


async def test_rate_limit_headers_and_retry_after(fleet):
    r = (await probe(fleet, fake("groq", "groq", "rate_limited")))["groq"]
    assert r.rate_limit.retry_after_s == 12 and r.rate_limit.headroom == 0.0
    ok = (await probe(fleet, fake("anthropic", "anthropic", headroom=0.25)))["anthropic"]
    assert ok.rate_limit.headroom == pytest.approx(0.25)
    assert 0 < ok.rate_limit.reset_s <= 21


async def test_slow_answer_is_degraded(fleet):
    settings = ProbeSettings(timeout=5.0, slow=0.2)
    r = (await probe(fleet, fake("openai", "openai", delay=0.5), settings=settings))["openai"]
    assert (r.status, r.error_kind) == ("degraded", "slow") and r.latency_ms >= 500


async def test_closed_port_is_connect(fleet):
    spec = CATALOG_BY_ID["openai"]
    [p] = resolve_providers({"openai": spec}, KEYS, {"openai": ProviderOverride(base_url=Fleet.closed_port_url())})
    [r] = await probe_all([p], SETTINGS)
    assert (r.status, r.error_kind) == ("failed", "connect")


async def test_blocked_or_empty_accounts_answering_200(fleet):
    results = await probe(
        fleet, fake("deepseek", "deepseek", balance=0.0), fake("openrouter", "openrouter", balance=0.0)
    )
    assert results["deepseek"].error_kind == "quota" and results["openrouter"].error_kind == "quota"


async def test_unconfigured_and_disabled_are_unknown_without_a_request(fleet):
    fleet.add(fake("openai", "openai"))
    [p] = providers_for(fleet, {}, ["openai"])  # no key in the environment
    from dataclasses import replace

    disabled = replace(providers_for(fleet, KEYS, ["openai"])[0], enabled=False)
    results = await probe_all([p, disabled], SETTINGS)
    assert [(r.status, r.error_kind) for r in results] == [("unknown", "not_configured"), ("unknown", "disabled")]
    assert "OPENAI_API_KEY" in results[0].error
    assert fleet.requests("openai") == []


async def test_a_hanging_provider_delays_no_other(fleet):
    fakes = [fake("hang", "openai", "hang")] + [fake(f"ok{i}", "openai", delay=0.05) for i in range(20)]
    for f in fakes:
        fleet.add(f)
    # The hang's own deadline (2 s) is the yardstick; the others may take up to 10 s on a loaded machine.
    providers = [
        replace(p, spec=replace(p.spec, timeout=2.0)) if p.id == "hang" else p
        for p in providers_for(fleet, KEYS, [f.id for f in fakes])
    ]
    probed = await probe_all(providers, ProbeSettings(timeout=10.0, slow=10.0))
    results = {r.provider_id: r for r in probed}
    assert results["hang"].error_kind == "timeout"
    assert all(results[f"ok{i}"].status == "healthy" for i in range(20))
    # Order, not a stopwatch: every healthy probe reached its provider before the hanging probe gave up
    # (the fleet numbers arrivals, and notes where in that order a client abandoned a hung request).
    (hung,) = fleet.requests("hang")
    for _ in range(500):  # the fleet's thread sees the closed connection a moment after the client closed it
        if hung.abandoned_seq is not None:
            break
        await asyncio.sleep(0.01)
    assert hung.abandoned_seq is not None
    assert all(r.seq < hung.abandoned_seq for i in range(20) for r in fleet.requests(f"ok{i}"))


async def test_keys_never_reach_the_database_or_results(fleet, tmp_path):
    # The provider echoes the key back in its error text: redaction must catch it.
    fleet.add(fake("openai", "openai"))
    fleet.add_route(
        "openai",
        "GET",
        "/models",
        lambda f, req: __import__("llmpulse.core.simulator.fleet").core.simulator.fleet.Response.json(
            401, {"error": {"message": f"Incorrect API key provided: {OPENAI_KEY}"}}
        ),
    )
    results = await probe_all(providers_for(fleet, KEYS, ["openai"]), SETTINGS)
    assert results[0].error_kind == "auth"
    assert OPENAI_KEY not in json.dumps(results[0].to_json())
    store = await Store.open(tmp_path / "p.db")
    await record_probe_results(store, results, HealthSettings(), time.time())
    await store.close()
    assert OPENAI_KEY.encode() not in (tmp_path / "p.db").read_bytes()
    for extra in tmp_path.glob("p.db-*"):
        assert OPENAI_KEY.encode() not in extra.read_bytes()


async def test_the_kept_client_serves_every_round_and_closes_with_the_collector():
    """The collector keeps one probe client across rounds instead of building one per round."""
    from llmpulse.core.probe import ProbeClients

    with Fleet([FakeProvider("openai", kind="openai", key=KEYS["OPENAI_API_KEY"])]) as fleet:
        providers = providers_for(fleet, KEYS, ["openai"])
        async with ProbeClients(SETTINGS) as clients:
            [first] = await probe_all(providers, SETTINGS, clients=clients)
            kept = clients.client
            [second] = await probe_all(providers, SETTINGS, clients=clients)
            assert (first.status, second.status) == ("healthy", "healthy")
            assert clients.client is kept and not kept.is_closed
        assert kept.is_closed
        assert len([r for r in fleet.requests("openai") if r.method == "GET"]) == 2


async def test_a_retry_after_given_as_an_http_date_is_read_as_seconds():
    """Retry-After may be an HTTP date (RFC 9110) instead of seconds: read as the time left until then."""
    import email.utils

    from llmpulse.core.simulator.fleet import Response

    with Fleet([fake("openai", "openai")]) as fleet:
        until = time.time() + 90
        fleet.add_route(
            "openai",
            "GET",
            "/models",
            lambda fake_provider, req: Response.json(
                429,
                {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
                {"retry-after": email.utils.formatdate(until, usegmt=True)},
            ),
        )
        [r] = await probe_all(providers_for(fleet, KEYS, ["openai"]), SETTINGS)
    assert (r.status, r.error_kind) == ("degraded", "rate_limited")
    assert r.rate_limit is not None and 80 <= r.rate_limit.retry_after_s <= 91
