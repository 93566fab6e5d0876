"""Usage as the providers' own usage APIs report it, pulled with an admin key.

- OpenAI: GET /v1/organization/usage/completions, grouped by model, project_id and api_key_id, in 1m, 1h
  or 1d buckets (`num_model_requests`, `input_tokens` with the cached ones included,
  `input_cached_tokens`, `output_tokens`).
- Anthropic: GET /v1/organizations/usage_report/messages, grouped by model, workspace_id and
  api_key_id (`uncached_input_tokens`, `cache_read_input_tokens`, `cache_creation.ephemeral_5m/1h_
  input_tokens`, `output_tokens`; no request count).

Each bucket and group is one provider_usage row, priced like a record and replaced when a later pull
finds it changed: pulling again never counts twice, and buckets the provider fills in late are
updated (every pull goes `late_days` back). The first pull goes `backfill_days` back. Projects and API
key ids map to departments and agents through `[usage_api.<provider>]`. Whether budgets count these
rows or the calls llmpulse records is chosen per provider (`budgets = "usage_api"`); `llmpulse
reconcile` shows the two side by side. A refused key, a hang or an odd page is stored as the pull's
error (redacted) and changes nothing already stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from llmpulse.core.catalog import Provider
from llmpulse.core.redact import redact
from llmpulse.core.store import Store
from llmpulse.core.usage.config import BUCKET_WIDTHS, Attribution, UsageApiConfig
from llmpulse.core.usage.reconcile import BillingError, admin_pages

if TYPE_CHECKING:
    from llmpulse.core.usage.pricing import Pricing

TIMEOUT_S = 60.0  # the whole pull of one provider, every page
MAX_PAGES = 200
# Buckets a page may hold, per width (both providers' maximums).
PAGE_LIMIT = {"1m": 1440, "1h": 168, "1d": 31}
KINDS = ("openai", "anthropic")


@dataclass(frozen=True)
class UsageRow:
    """One bucket of one group, as the provider reports it."""

    provider_id: str
    bucket_start: float
    bucket_width: float
    project: str
    api_key: str
    model: str
    requests: int | None
    input_tokens: int  # cached ones included, as in a record
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


@dataclass
class PullReport:
    provider_id: str
    rows: int  # bucket-groups read
    changed: int  # new or updated rows
    since: float
    error: str | None = None


def _count(result: dict[str, Any], name: str) -> int:
    value = result.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BillingError(f"{name}: found {value!r}; expected a whole number >= 0")
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def rows_from_openai(page: dict[str, Any], provider_id: str, width: float) -> list[UsageRow]:
    out = []
    for bucket in page["data"]:
        start = bucket.get("start_time") if isinstance(bucket, dict) else None
        if not isinstance(start, (int, float)):
            raise BillingError("a bucket without start_time; expected unix seconds")
        for r in bucket.get("results") or []:
            out.append(
                UsageRow(
                    provider_id,
                    float(start),
                    width,
                    _text(r.get("project_id")),
                    _text(r.get("api_key_id")),
                    _text(r.get("model")),
                    _count(r, "num_model_requests"),
                    _count(r, "input_tokens"),
                    _count(r, "output_tokens"),
                    _count(r, "input_cached_tokens"),
                    0,
                )
            )
    return out


def _rfc3339(value: Any) -> float:
    if not isinstance(value, str):
        raise BillingError(f"starting_at: found {value!r}; expected an RFC 3339 time")
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise BillingError(f"starting_at: found {value!r}; expected an RFC 3339 time") from None


def rows_from_anthropic(page: dict[str, Any], provider_id: str, width: float) -> list[UsageRow]:
    out = []
    for bucket in page["data"]:
        if not isinstance(bucket, dict):
            raise BillingError("a bucket that is not an object")
        start = _rfc3339(bucket.get("starting_at"))
        for r in bucket.get("results") or []:
            creation = r.get("cache_creation") or {}
            write = _count(creation, "ephemeral_5m_input_tokens") + _count(creation, "ephemeral_1h_input_tokens")
            read = _count(r, "cache_read_input_tokens")
            out.append(
                UsageRow(
                    provider_id,
                    start,
                    width,
                    _text(r.get("workspace_id")),
                    _text(r.get("api_key_id")),
                    _text(r.get("model")),
                    None,
                    _count(r, "uncached_input_tokens") + read + write,
                    _count(r, "output_tokens"),
                    read,
                    write,
                )
            )
    return out


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def fetch_usage(client: httpx.AsyncClient, p: Provider, since: float, width_name: str) -> list[UsageRow]:
    """Every bucket from `since` (snapped to the bucket) until now, all pages."""
    width = BUCKET_WIDTHS[width_name]
    start = since - since % width
    rows: list[UsageRow] = []
    if p.spec.kind == "openai":
        url = f"{p.base_url}/organization/usage/completions"
        params: dict[str, Any] = {
            "start_time": int(start),
            "bucket_width": width_name,
            "group_by": ["model", "project_id", "api_key_id"],
            "limit": PAGE_LIMIT[width_name],
        }
        async for page in admin_pages(client, p, url, params, MAX_PAGES):
            rows.extend(rows_from_openai(page, p.id, width))
    else:
        url = f"{p.base_url}/v1/organizations/usage_report/messages"
        params = {
            "starting_at": _iso(start),
            "bucket_width": width_name,
            "group_by[]": ["model", "workspace_id", "api_key_id"],
            "limit": PAGE_LIMIT[width_name],
        }
        async for page in admin_pages(client, p, url, params, MAX_PAGES):
            rows.extend(rows_from_anthropic(page, p.id, width))
    return rows


def pullable(providers: Sequence[Provider]) -> list[Provider]:
    return [p for p in providers if p.spec.kind in KINDS and p.enabled and p.base_url and p.admin_key is not None]


_UPSERT = """
INSERT INTO provider_usage (provider_id, bucket_start, bucket_width, project, api_key, model, requests,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, department, agent, fetched_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (provider_id, bucket_width, bucket_start, project, api_key, model) DO UPDATE SET
    requests = excluded.requests, input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
    cache_read_tokens = excluded.cache_read_tokens, cache_write_tokens = excluded.cache_write_tokens,
    cost_usd = excluded.cost_usd, department = excluded.department, agent = excluded.agent,
    fetched_at = excluded.fetched_at
WHERE requests IS NOT excluded.requests OR input_tokens != excluded.input_tokens
    OR output_tokens != excluded.output_tokens OR cache_read_tokens != excluded.cache_read_tokens
    OR cache_write_tokens != excluded.cache_write_tokens OR department IS NOT excluded.department
    OR agent IS NOT excluded.agent OR cost_usd IS NOT excluded.cost_usd
"""


def _who(cfg: UsageApiConfig, row: UsageRow) -> Attribution:
    entry = cfg.providers.get(row.provider_id)
    if entry is None:
        return Attribution()
    by_key = entry.api_keys.get(row.api_key) or Attribution()
    by_project = entry.projects.get(row.project) or Attribution()
    # an API key is narrower than its project: its mapping wins field by field
    return Attribution(by_key.department or by_project.department, by_key.agent or by_project.agent)


async def store_usage(store: Store, rows: Sequence[UsageRow], cfg: UsageApiConfig, pricing: Pricing, now: float) -> int:
    """Upsert the rows; returns how many were new or changed."""
    params = []
    for r in rows:
        who = _who(cfg, r)
        cost = (
            pricing.cost(
                r.provider_id, r.model, r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens
            )
            if r.model
            else None
        )
        params.append(
            (
                r.provider_id,
                r.bucket_start,
                r.bucket_width,
                r.project,
                r.api_key,
                r.model,
                r.requests,
                r.input_tokens,
                r.output_tokens,
                r.cache_read_tokens,
                r.cache_write_tokens,
                cost,
                who.department,
                who.agent,
                now,
            )
        )
    if not params:
        return 0
    async with store.transaction() as conn:
        before = conn.total_changes
        await conn.executemany(_UPSERT, params)
        return int(conn.total_changes - before)


async def pull_usage(
    store: Store,
    providers: Sequence[Provider],
    cfg: UsageApiConfig,
    pricing: Pricing,
    now: float,
    *,
    client: httpx.AsyncClient | None = None,
    timeout: float = TIMEOUT_S,
) -> list[PullReport]:
    """Pull every provider that has a usage API and an admin key; never raises for a provider's failure."""
    targets = pullable(providers)
    if not targets:
        return []
    last = {
        r["provider_id"]: r["last_pull_at"]
        for r in await store.fetchall("SELECT provider_id, last_pull_at FROM provider_usage_pulls")
    }

    async def one(c: httpx.AsyncClient, p: Provider) -> PullReport:
        previous = last.get(p.id)
        since = now - cfg.backfill_days * 86400.0 if previous is None else min(previous, now) - cfg.late_days * 86400.0
        error = None
        rows: list[UsageRow] = []
        changed = 0
        try:
            async with asyncio.timeout(timeout):
                rows = await fetch_usage(c, p, since, cfg.bucket_width)
            changed = await store_usage(store, rows, cfg, pricing, now)
        except (TimeoutError, httpx.TimeoutException):
            error = f"no answer within {timeout:g}s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except (BillingError, ValueError, TypeError, AttributeError) as exc:
            error = str(exc)
        report = PullReport(p.id, len(rows), changed, since, redact(error) if error else None)
        # covered_from and ok_at move only with a pull that worked: a failed one pulled nothing.
        await store.execute(
            "INSERT INTO provider_usage_pulls (provider_id, last_pull_at, covered_from, error, ok_at) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (provider_id) DO UPDATE SET error = excluded.error, "
            "last_pull_at = CASE WHEN excluded.error IS NULL THEN excluded.last_pull_at ELSE last_pull_at END, "
            "covered_from = CASE WHEN excluded.error IS NULL THEN MIN(covered_from, excluded.covered_from) "
            "ELSE covered_from END, "
            "ok_at = CASE WHEN excluded.error IS NULL THEN excluded.ok_at ELSE ok_at END",
            (
                p.id,
                now if error is None else (previous if previous is not None else since),
                since - since % BUCKET_WIDTHS[cfg.bucket_width],  # the first bucket asked for
                report.error,
                now if error is None else None,
            ),
        )
        return report

    if client is None:
        async with httpx.AsyncClient(timeout=min(timeout, 30.0)) as own:
            return list(await asyncio.gather(*(one(own, p) for p in targets)))
    return list(await asyncio.gather(*(one(client, p) for p in targets)))


@dataclass
class SourceComparison:
    """One provider this period: the calls llmpulse recorded beside the provider's own usage report."""

    provider_id: str
    budgets_use: str  # recorded | usage_api
    recorded_requests: int
    recorded_tokens: int
    recorded_usd: float
    # None: not known — never pulled successfully (then every reported_* is None, never 0), or, for
    # requests alone, a report that does not count them (Anthropic)
    reported_requests: int | None
    reported_tokens: int | None
    reported_usd: float | None
    last_pull_at: float | None  # the last pull that worked; None: none did
    error: str | None

    @property
    def difference_usd(self) -> float | None:
        """What the provider reports minus what llmpulse recorded (None while the report is unknown)."""
        return None if self.reported_usd is None else self.reported_usd - self.recorded_usd

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "difference_usd": self.difference_usd}


async def compare_sources(store: Store, cfg: UsageApiConfig, start: float, now: float) -> list[SourceComparison]:
    """For every provider pulled at least once: recorded calls vs its usage report since `start`."""
    from llmpulse.core.usage.queries import breakdown

    pulls = {r["provider_id"]: r for r in await store.fetchall("SELECT * FROM provider_usage_pulls")}
    if not pulls:
        return []
    recorded = {g.key: g for g in await breakdown(store, "provider", start, now)}
    reported = {
        r["provider_id"]: r
        for r in await store.fetchall(
            "SELECT provider_id, SUM(requests) AS requests, COUNT(requests) AS counted, "
            "TOTAL(input_tokens + output_tokens) AS tokens, TOTAL(cost_usd) AS cost FROM provider_usage "
            "WHERE bucket_start >= ? AND bucket_start < ? GROUP BY provider_id",
            (start, now),
        )
    }
    out = []
    for pid in sorted(pulls):
        rec, rep = recorded.get(pid), reported.get(pid)
        pulled = pulls[pid]["ok_at"] is not None  # no pull worked yet: its report is unknown, not empty
        out.append(
            SourceComparison(
                provider_id=pid,
                budgets_use=cfg.budget_source(pid),
                recorded_requests=rec.requests if rec else 0,
                recorded_tokens=rec.tokens if rec else 0,
                recorded_usd=rec.cost_usd if rec else 0.0,
                reported_requests=(int(rep["requests"]) if rep and rep["counted"] else (None if rep else 0))
                if pulled
                else None,
                reported_tokens=(int(rep["tokens"]) if rep else 0) if pulled else None,
                reported_usd=(float(rep["cost"]) if rep else 0.0) if pulled else None,
                last_pull_at=pulls[pid]["ok_at"],
                error=pulls[pid]["error"],
            )
        )
    return out
