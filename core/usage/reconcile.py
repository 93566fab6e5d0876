"""Reconcile our cost estimate with the provider's own bill.

Where a provider reports spend — OpenAI's organization costs API and Anthropic's cost report (both
with an admin key), OpenRouter's key usage — this month's provider-reported spend is fetched on a slow
timer and stored; DeepSeek and Moonshot report a balance, which is stored too. `reconcile()` puts the
provider's figure beside ours (from the usage roll-ups) with the difference. Polling never raises:
a refused key, a timeout or an unexpected body is stored as that provider's error (redacted).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from llmpulse.core.catalog import Provider
from llmpulse.core.errors import LlmpulseError
from llmpulse.core.http_answer import fetch
from llmpulse.core.probe import auth_headers, error_message
from llmpulse.core.redact import redact
from llmpulse.core.store import Store
from llmpulse.core.usage.queries import breakdown, period_start

RECONCILE_INTERVAL_S = 15 * 60.0
TIMEOUT_S = 20.0
MAX_PAGES = 10
MAX_ANSWER_BYTES = 32 * 1024 * 1024  # one page of a report: a month of 1-minute buckets fits many times
UTC = ZoneInfo("UTC")


@dataclass
class BillingReport:
    provider_id: str
    period_start: float
    period_end: float
    reported_usd: float | None  # spend the provider reports for the period
    balance: float | None  # what is left, where the provider says
    currency: str | None
    fetched_at: float
    error: str | None = None


@dataclass
class ReconcileRow:
    provider_id: str
    period_start: float
    reported_usd: float | None
    estimated_usd: float
    difference_usd: float | None  # reported - estimated
    difference_pct: float | None
    balance: float | None
    fetched_at: float | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class BillingError(LlmpulseError):
    """A provider's billing API could not be read; the message says which and why."""


def _with_key(provider: Provider, admin: bool) -> Provider:
    return replace(provider, api_key=provider.admin_key) if admin else provider


async def _get(client: httpx.AsyncClient, provider: Provider, url: str, params: dict[str, Any], admin: bool) -> Any:
    headers = {"accept": "application/json", **auth_headers(_with_key(provider, admin))}
    # Read at most MAX_ANSWER_BYTES: an answer that never ends must not fill the memory.
    response = await fetch(client, "GET", url, limit=MAX_ANSWER_BYTES, params=params, headers=headers)
    body = response.body
    if response.truncated:
        raise BillingError(
            f"HTTP {response.status_code}: answer larger than {MAX_ANSWER_BYTES:,} bytes; stopped reading"
        )
    if not 200 <= response.status_code < 300:
        raise BillingError(f"HTTP {response.status_code}: {error_message(bytes(body))}")
    try:
        return json.loads(body)
    except ValueError:
        raise BillingError(f"HTTP {response.status_code} but the body is not JSON") from None


# How one result of a bucketed cost report gives its amount and currency.
AmountOf = Callable[[dict[str, Any]], tuple[float, str | None]]


def _bucket_sum(data: Any, amount_of: AmountOf) -> tuple[float, str | None]:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise BillingError("expected {data: [buckets...]}")
    total, currency = 0.0, None
    for bucket in data["data"]:
        for result in (bucket.get("results") or []) if isinstance(bucket, dict) else []:
            value, cur = amount_of(result)
            total += value
            currency = currency or cur
    return total, currency


async def _paged_cost(
    client: httpx.AsyncClient, p: Provider, url: str, params: dict[str, Any], amount_of: AmountOf
) -> tuple[float, None, str]:
    """Sum a bucketed cost report (OpenAI and Anthropic share the shape), following next_page."""
    total, currency = 0.0, None
    async for data in admin_pages(client, p, url, params, MAX_PAGES):
        part, cur = _bucket_sum(data, amount_of)
        total, currency = total + part, currency or cur
    return total, None, currency or "USD"


async def admin_pages(
    client: httpx.AsyncClient, p: Provider, url: str, params: dict[str, Any], max_pages: int
) -> AsyncIterator[dict[str, Any]]:
    """The pages of an admin report (OpenAI's organization costs and usage, Anthropic's cost and usage
    reports share the shape: {data: [...], has_more, next_page}), with the admin key, following next_page;
    BillingError for a refusal or a page that is not that shape, or more than `max_pages` pages."""
    page = None
    for _ in range(max_pages):
        data = await _get(client, p, url, {**params, **({"page": page} if page else {})}, admin=True)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise BillingError("expected {data: [buckets...], has_more, next_page}")
        yield data
        page = data.get("next_page") if data.get("has_more") else None
        if not page:
            return
    raise BillingError(f"more than {max_pages} pages: stopped following next_page")


async def _openai(
    client: httpx.AsyncClient, p: Provider, start: float, now: float
) -> tuple[float | None, float | None, str | None]:
    def amount(result: dict[str, Any]) -> tuple[float, str | None]:
        a = result.get("amount") or {}
        return float(a.get("value") or 0.0), a.get("currency", "usd").upper()

    return await _paged_cost(
        client,
        p,
        f"{p.base_url}/organization/costs",
        {"start_time": int(start), "bucket_width": "1d", "limit": 31},
        amount,
    )


async def _anthropic(
    client: httpx.AsyncClient, p: Provider, start: float, now: float
) -> tuple[float | None, float | None, str | None]:
    def amount(result: dict[str, Any]) -> tuple[float, str | None]:
        # The cost report's amount is a decimal string in cents.
        return float(result.get("amount") or 0) / 100.0, result.get("currency", "USD")

    starting_at = dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return await _paged_cost(
        client,
        p,
        f"{p.base_url}/v1/organizations/cost_report",
        {"starting_at": starting_at, "bucket_width": "1d"},
        amount,
    )


async def _openrouter(
    client: httpx.AsyncClient, p: Provider, start: float, now: float
) -> tuple[float | None, float | None, str | None]:
    data = await _get(client, p, f"{p.base_url}/key", {}, admin=False)
    info = data.get("data") if isinstance(data, dict) else None
    if not isinstance(info, dict):
        raise BillingError("expected {data: {usage, limit, ...}}")
    monthly = info.get("usage_monthly")
    remaining = info.get("limit_remaining")
    return (float(monthly) if monthly is not None else None, float(remaining) if remaining is not None else None, "USD")


async def _deepseek(
    client: httpx.AsyncClient, p: Provider, start: float, now: float
) -> tuple[float | None, float | None, str | None]:
    data = await _get(client, p, f"{p.base_url}/user/balance", {}, admin=False)
    infos = data.get("balance_infos") if isinstance(data, dict) else None
    if not isinstance(infos, list) or not infos:
        raise BillingError("expected {balance_infos: [...]}")
    return None, float(infos[0].get("total_balance") or 0), infos[0].get("currency")


async def _moonshot(
    client: httpx.AsyncClient, p: Provider, start: float, now: float
) -> tuple[float | None, float | None, str | None]:
    data = await _get(client, p, f"{p.base_url}/users/me/balance", {}, admin=False)
    info = data.get("data") if isinstance(data, dict) else None
    if not isinstance(info, dict) or "available_balance" not in info:
        raise BillingError("expected {data: {available_balance, ...}}")
    return None, float(info["available_balance"]), None


# kind -> (fetcher, needs the admin key)
FETCHERS = {
    "openai": (_openai, True),
    "anthropic": (_anthropic, True),
    "openrouter": (_openrouter, False),
    "deepseek": (_deepseek, False),
    "moonshot": (_moonshot, False),
}


def billable(providers: Sequence[Provider]) -> list[Provider]:
    out = []
    for p in providers:
        entry = FETCHERS.get(p.spec.kind)
        if entry is None or not p.enabled or not p.base_url:
            continue
        if (p.admin_key if entry[1] else p.api_key) is not None:
            out.append(p)
    return out


async def poll_billing(
    store: Store,
    providers: Sequence[Provider],
    now: float,
    *,
    client: httpx.AsyncClient | None = None,
    timeout: float = TIMEOUT_S,
) -> list[BillingReport]:
    """Fetch this month's provider-reported spend (or balance) for every provider that reports one."""
    start = period_start(now, "month", UTC)
    end = (dt.datetime.fromtimestamp(start, dt.UTC) + dt.timedelta(days=32)).replace(day=1).timestamp()

    async def one(c: httpx.AsyncClient, p: Provider) -> BillingReport:
        fetch = FETCHERS[p.spec.kind][0]
        try:
            async with asyncio.timeout(timeout):
                reported, balance, currency = await fetch(c, p, start, now)
            return BillingReport(p.id, start, end, reported, balance, currency, now)
        except (TimeoutError, httpx.TimeoutException):
            error = f"no answer within {timeout:g}s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except (BillingError, ValueError, TypeError, AttributeError) as exc:
            error = str(exc)
        return BillingReport(p.id, start, end, None, None, None, now, redact(error))

    targets = billable(providers)
    if client is None:
        async with httpx.AsyncClient(timeout=timeout) as own:
            reports = list(await asyncio.gather(*(one(own, p) for p in targets)))
    else:
        reports = list(await asyncio.gather(*(one(client, p) for p in targets)))
    if reports:
        await store.executemany(
            "INSERT INTO billing_reports (provider_id, period_start, period_end, reported_usd, balance, currency, "
            "fetched_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.provider_id,
                    r.period_start,
                    r.period_end,
                    r.reported_usd,
                    r.balance,
                    r.currency,
                    r.fetched_at,
                    r.error,
                )
                for r in reports
            ],
        )
    return reports


async def reconcile(store: Store, now: float) -> list[ReconcileRow]:
    """The latest provider-reported figures for this month beside our estimate from the roll-ups."""
    start = period_start(now, "month", UTC)
    rows = await store.fetchall(
        "SELECT b.* FROM billing_reports b JOIN (SELECT provider_id, MAX(fetched_at) AS at FROM billing_reports "
        "WHERE period_start = ? GROUP BY provider_id) last ON b.provider_id = last.provider_id "
        "AND b.fetched_at = last.at WHERE b.period_start = ? ORDER BY b.provider_id",
        (start, start),
    )
    ours = {g.key: g.cost_usd for g in await breakdown(store, "provider", start, now, latency=False)}
    out = []
    for r in rows:
        estimated = ours.get(r["provider_id"], 0.0)
        reported = r["reported_usd"]
        diff = None if reported is None else reported - estimated
        pct = None if diff is None or not reported else diff / reported
        out.append(
            ReconcileRow(
                r["provider_id"], start, reported, estimated, diff, pct, r["balance"], r["fetched_at"], r["error"]
            )
        )
    return out
