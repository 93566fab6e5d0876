"""Classification true to what providers really send: the simulator serves the answers recorded in the
providers' own SDK issue trackers and API references (status, body and headers), and the probe, the
failover client and the rate-limit headroom must read them the way the provider meant them."""

from __future__ import annotations

import time

import pytest

from llmpulse.core.failover import FailoverClient, RequestRejected
from llmpulse.core.health import circuit_states
from llmpulse.core.probe import classify_error
from llmpulse.core.simulator.fleet import FakeProvider, Fleet, Response
from llmpulse.core.store import Store
from tests.test_failover_edges import HI, context, fresh_key, posts
from tests.test_probe import fake, probe


@pytest.mark.parametrize(
    ("kind", "behaviour", "http", "expected"),
    [
        # the money ran out, whatever status the provider uses for it
        ("anthropic", "quota", 400, "quota"),  # 400 invalid_request_error "Your credit balance is too low"
        ("xai", "quota", 403, "quota"),  # 403 "used all available credits or reached its monthly spending limit"
        ("openai", "quota", 429, "quota"),  # 429 insufficient_quota
        ("deepseek", "quota", 402, "quota"),  # 402 Insufficient Balance
        # limits that lift by themselves, though their words mention billing
        ("openai", "rate_limited", 429, "rate_limited"),  # daily limit, "try again in 7m12s", "payment method"
        ("gemini", "rate_limited", 429, "rate_limited"),  # RESOURCE_EXHAUSTED + RetryInfo, "plan and billing"
        ("groq", "rate_limited", 429, "rate_limited"),  # TPM, retry-after, "settings/billing"
        ("together", "rate_limited", 429, "rate_limited"),  # QPM, type credit_limit, "settings/billing"
        ("anthropic", "rate_limited", 429, "rate_limited"),  # rate_limit_error
    ],
)
async def test_real_answers_are_classified_as_the_provider_meant(fleet, kind, behaviour, http, expected):
    result = (await probe(fleet, fake(kind, kind, behaviour)))[kind]
    assert (result.http_status, result.error_kind) == (http, expected)
    assert result.status == ("degraded" if expected == "rate_limited" else "failed")


def test_structured_fields_win_over_words():
    # OpenAI's per-minute limit names billing; its error.code says what it is.
    body = (
        b'{"error": {"message": "Rate limit reached for gpt-4o on tokens per min (TPM). Please add a payment '
        b'method to your account to increase your rate limit. Visit https://platform.openai.com/account/billing",'
        b' "type": "tokens", "param": null, "code": "rate_limit_exceeded"}}'
    )
    assert classify_error(429, body) == "rate_limited"
    # insufficient_quota says the opposite, whatever the words
    body = b'{"error": {"message": "Rate limited?", "type": "insufficient_quota", "code": "insufficient_quota"}}'
    assert classify_error(429, body) == "quota"
    # Gemini with no quota at all on the tier (quotaValue 0, no RetryInfo): nothing to wait for
    body = (
        b'{"error": {"code": 429, "message": "You exceeded your current quota", "status": "RESOURCE_EXHAUSTED",'
        b' "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId":'
        b' "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "quotaValue": "0"}]}]}}'
    )
    assert classify_error(429, body) == "quota"
    # a bare 429 with a retry-after header and billing words is still a rate limit
    assert classify_error(429, b"see your billing page", {"Retry-After": "3"}) == "rate_limited"


@pytest.mark.parametrize(("pid", "http"), [("anthropic", 400), ("xai", 403)])
async def test_quota_answers_fall_through_and_open_the_circuit(tmp_path, pid, http):
    key = fresh_key()
    with Fleet(
        [FakeProvider(pid, kind=pid, key=key, behaviour="quota"), FakeProvider("moonshot", kind="moonshot", key=key)]
    ) as fleet:
        ctx = context(tmp_path, fleet, key, threshold=3)
        store = await Store.open(ctx.db_path)
        try:
            models = {pid: "some-model", "moonshot": "kimi-k2"}  # moonshot: the lowest priority of the three
            async with FailoverClient(ctx, store, timeout=5) as client:
                answer = await client.chat(HI, models=models)
            assert answer.provider_id == "moonshot"
            assert [(a.provider_id, a.http_status, a.error_kind) for a in answer.attempts] == [
                (pid, http, "quota"),
                ("moonshot", 200, None),
            ]
            # an empty account does not refill in seconds: open at the first answer, not after 3
            assert (await circuit_states(store, ctx.config.health, time.time()))[pid].circuit == "open"
        finally:
            await store.close()


@pytest.mark.parametrize("status", [401, 402, 403])
async def test_a_providers_own_refusal_falls_through(tmp_path, status):
    key = fresh_key()
    with Fleet(
        [FakeProvider("openai", kind="openai", key=key), FakeProvider("mistral", kind="mistral", key=key)]
    ) as fleet:
        fleet.add_route(
            "openai",
            "POST",
            "/chat/completions",
            lambda fake, req: Response.json(
                status, {"error": {"message": "You do not have access", "type": "permission_error"}}
            ),
        )
        ctx = context(tmp_path, fleet, key)
        store = await Store.open(ctx.db_path)
        try:
            async with FailoverClient(ctx, store, timeout=5) as client:
                answer = await client.chat(HI, models={"openai": "gpt-4o-mini", "mistral": "mistral-small-latest"})
            assert answer.provider_id == "mistral" and answer.attempts[0].http_status == status
            assert (await circuit_states(store, ctx.config.health, time.time()))["openai"].circuit == "open"
        finally:
            await store.close()


async def test_a_wrong_request_is_still_raised_at_once(tmp_path):
    key = fresh_key()
    with Fleet(
        [FakeProvider("openai", kind="openai", key=key), FakeProvider("mistral", kind="mistral", key=key)]
    ) as fleet:
        fleet.add_route(
            "openai",
            "POST",
            "/chat/completions",
            lambda fake, req: Response.json(
                400,
                {
                    "error": {
                        "message": "Invalid value for 'temperature': must be <= 2.",
                        "type": "invalid_request_error",
                        "param": "temperature",
                        "code": "invalid_value",
                    }
                },
            ),
        )
        ctx = context(tmp_path, fleet, key)
        store = await Store.open(ctx.db_path)
        try:
            async with FailoverClient(ctx, store, timeout=5) as client:
                with pytest.raises(RequestRejected, match="HTTP 400 bad_request"):
                    await client.chat(HI, models={"openai": "gpt-4o-mini", "mistral": "mistral-small-latest"})
            assert not posts(fleet, "mistral")
        finally:
            await store.close()


@pytest.mark.parametrize(
    ("kind", "limits", "tightest"),
    [
        # Anthropic sends requests, tokens, input and output tokens: the output limit is the one about to bite
        ("anthropic", {"output_tokens": 0.05}, 16000),
        ("anthropic", {"input_tokens": 0.1}, 80000),
        # Together: requests in x-ratelimit-*, tokens in x-tokenlimit-*
        ("together", {"tokens": 0.02}, 200000),
    ],
)
async def test_headroom_is_the_tightest_of_every_limit(fleet, kind, limits, tightest):
    result = (await probe(fleet, fake(kind, kind, limit_headroom=limits)))[kind]
    limit = tightest
    share = next(iter(limits.values()))
    assert result.status == "healthy"
    assert result.rate_limit.headroom == pytest.approx(int(limit * share) / limit)
    assert result.rate_limit.headroom < 0.9  # the other limits are 90% free


async def test_groqs_413_tokens_per_minute_is_its_limit_not_the_requests_fault(tmp_path):
    key = fresh_key()
    with Fleet([FakeProvider("groq", kind="groq", key=key), FakeProvider("mistral", kind="mistral", key=key)]) as fleet:
        fleet.add_route(
            "groq",
            "POST",
            "/chat/completions",
            lambda fake, req: Response.json(
                413,
                {
                    "error": {
                        "message": "Request too large for model `llama-3.3-70b-versatile` in organization "
                        "`org_01kgg5588eftc8k70aes4864eb` service tier `on_demand` on tokens per minute (TPM): "
                        "Limit 12000, Requested 14137, please reduce your message size and try again. Need more "
                        "tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing",
                        "type": "tokens",
                        "code": "rate_limit_exceeded",
                    }
                },
            ),
        )
        ctx = context(tmp_path, fleet, key)
        store = await Store.open(ctx.db_path)
        try:
            models = {"groq": "llama-3.3-70b-versatile", "mistral": "mistral-small-latest"}
            async with FailoverClient(ctx, store, timeout=5) as client:
                answer = await client.chat(HI, models=models)
            assert [(a.provider_id, a.http_status, a.error_kind) for a in answer.attempts] == [
                ("groq", 413, "rate_limited"),
                ("mistral", 200, None),
            ]
        finally:
            await store.close()
