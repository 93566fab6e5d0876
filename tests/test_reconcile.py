"""Reconciling with providers' own bills: billing endpoints served by llmpulse.core.simulator.fleet routes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time

from llmpulse.core.catalog import CATALOG_BY_ID, ProviderOverride, resolve_providers
from llmpulse.core.simulator.fleet import FakeProvider, Fleet, Response
from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.reconcile import poll_billing, reconcile
from llmpulse.core.usage.records import record_from_mapping
from llmpulse.core.usage.rollup import ingest
from tests.cli_helpers import run_cli

ADMIN = "sk-admin-ReconcileSecret0123456789abcd"
KEY = "sk-proj-ReconcileApiKey0123456789abcdef"
ENV = {
    "OPENAI_API_KEY": KEY,
    "OPENAI_ADMIN_KEY": ADMIN,
    "ANTHROPIC_API_KEY": KEY,
    "ANTHROPIC_ADMIN_KEY": ADMIN,
    "OPENROUTER_API_KEY": KEY,
    "DEEPSEEK_API_KEY": KEY,
    "MOONSHOT_API_KEY": KEY,
}


def billing_fleet() -> Fleet:
    fleet = Fleet(
        [FakeProvider(pid, kind=pid, key=KEY) for pid in ("openai", "anthropic", "openrouter", "deepseek", "moonshot")]
    )

    def openai_costs(fake, req):
        if req.headers.get("authorization") != f"Bearer {ADMIN}":
            return Response.json(401, {"error": {"message": "admin key required"}})
        page = req.query.get("page", [None])[0]
        if page is None:  # first page: two daily buckets, more to come
            return Response.json(
                200,
                {
                    "object": "page",
                    "data": [
                        {"start_time": 1, "end_time": 2, "results": [{"amount": {"value": 10.25, "currency": "usd"}}]},
                        {"start_time": 2, "end_time": 3, "results": [{"amount": {"value": 4.75, "currency": "usd"}}]},
                    ],
                    "has_more": True,
                    "next_page": "page_2",
                },
            )
        return Response.json(
            200,
            {
                "object": "page",
                "data": [{"start_time": 3, "end_time": 4, "results": [{"amount": {"value": 5.0, "currency": "usd"}}]}],
                "has_more": False,
                "next_page": None,
            },
        )

    def anthropic_cost(fake, req):
        if req.headers.get("x-api-key") != ADMIN or "anthropic-version" not in req.headers:
            return Response.json(
                401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
            )
        return Response.json(
            200,
            {
                "data": [
                    {
                        "starting_at": "2026-11-01T00:00:00Z",
                        "ending_at": "2026-11-02T00:00:00Z",
                        "results": [{"amount": "1234.5", "currency": "USD"}, {"amount": "65.5", "currency": "USD"}],
                    }
                ],
                "has_more": False,
                "next_page": None,
            },
        )

    fleet.add_route("openai", "GET", "/organization/costs", openai_costs)
    fleet.add_route("anthropic", "GET", "/v1/organizations/cost_report", anthropic_cost)
    fleet.add_route(
        "openrouter",
        "GET",
        "/key",
        lambda f, r: Response.json(
            200,
            {
                "data": {
                    "label": "sk-or-v1-abc",
                    "usage": 80.0,
                    "usage_monthly": 7.5,
                    "limit": 100.0,
                    "limit_remaining": 20.0,
                }
            },
        ),
    )
    return fleet


def providers_on(fleet: Fleet, env=ENV):
    ids = list(fleet.providers)
    return resolve_providers(
        {i: CATALOG_BY_ID[i] for i in ids}, env, {i: ProviderOverride(base_url=fleet.base_url(i)) for i in ids}
    )


async def test_each_billing_shape_and_the_difference(tmp_path):
    now = time.time()
    with billing_fleet() as fleet:
        store = await Store.open(tmp_path / "r.db")
        try:
            await ingest(
                store,
                [
                    record_from_mapping(
                        {
                            "ts": now - 60,
                            "provider": "openai",
                            "model": "gpt-4o",
                            "input_tokens": 1_000_000,
                            "output_tokens": 100_000,
                        },
                        now,
                    )
                ],
                Pricing(),
            )
            reports = {r.provider_id: r for r in await poll_billing(store, providers_on(fleet), now)}
            assert reports["openai"].reported_usd == 20.0 and reports["openai"].error is None  # both pages
            assert reports["anthropic"].reported_usd == 13.0  # cents strings
            assert (reports["openrouter"].reported_usd, reports["openrouter"].balance) == (7.5, 20.0)
            assert reports["deepseek"].balance == 42.5 and reports["moonshot"].balance == 42.5
            rows = {r.provider_id: r for r in await reconcile(store, now)}
        finally:
            await store.close()
    ours = Pricing().cost("openai", "gpt-4o", 1_000_000, 100_000)
    assert rows["openai"].estimated_usd == ours
    assert rows["openai"].difference_usd == 20.0 - ours
    assert rows["anthropic"].estimated_usd == 0.0 and rows["anthropic"].difference_pct == 1.0


async def test_refused_key_and_hanging_endpoint_are_recorded_not_raised(tmp_path):
    with billing_fleet() as fleet:
        fleet.set_behaviour("openrouter", "hang")
        env = {**ENV, "ANTHROPIC_ADMIN_KEY": "sk-ant-admin-wrong-0000000000"}
        store = await Store.open(tmp_path / "r.db")
        try:
            # openrouter never answers: the poll ends only because its own 0.5 s deadline cut it (its error
            # says so below). The 30 s guard only stops a regression from hanging the suite.
            polled = poll_billing(store, providers_on(fleet, env), time.time(), timeout=0.5)
            reports = {r.provider_id: r for r in await asyncio.wait_for(polled, 30)}
            assert reports["anthropic"].error.startswith("HTTP 401: invalid x-api-key")
            assert reports["openrouter"].error == "no answer within 0.5s"
            assert reports["openai"].reported_usd == 20.0  # the others were not held up
        finally:
            await store.close()
    data = (tmp_path / "r.db").read_bytes()
    assert ADMIN.encode() not in data and KEY.encode() not in data


def test_reconcile_command(tmp_path):
    with billing_fleet() as fleet:
        lines = []
        for pid in fleet.providers:
            lines += [f"[providers.{pid}]", f'base_url = "{fleet.base_url(pid)}"']
        (tmp_path / "llmpulse.toml").write_text("\n".join(lines) + "\n")
        db = ["--db", str(tmp_path / "c.db")]
        r = run_cli(tmp_path, *db, "reconcile", "--json", env=ENV)
        table = run_cli(tmp_path, *db, "reconcile", "--cached", env=ENV)
    assert r.returncode == 0, r.stderr
    rows = {p["provider_id"]: p for p in json.loads(r.stdout)["providers"]}
    assert rows["openai"]["reported_usd"] == 20.0 and rows["openai"]["estimated_usd"] == 0.0
    assert "PROVIDER SAYS" in table.stdout and "$13.00" in table.stdout
    assert ADMIN not in r.stdout + r.stderr + table.stdout
    none = run_cli(tmp_path, "--db", str(tmp_path / "n.db"), "reconcile")
    assert none.returncode == 1 and "OPENAI_ADMIN_KEY" in none.stderr
