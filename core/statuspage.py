"""The providers' own status pages: what they declare (an incident, a component in partial outage) shown
beside what our probes measure, and the `provider_incident` alert rule's input.

Atlassian Statuspage's `/api/v2/summary.json` (and the compatible JSON incident.io serves) has the
page's `status.indicator` (none | minor | major | critical), `components[]` (name, status: operational |
degraded_performance | partial_outage | major_outage | under_maintenance) and the unresolved
`incidents[]` (name, status, impact, started_at / created_at, components, shortlink).

Pages are read on a slow timer (default every 2 min) by a background task the collector starts and never
awaits: a page that hangs costs its own timeout, a page that answers garbage or too much is one recorded
error, and the round goes on. Finished fetches are written by the next round (`StatusPages.record`). The
last good reading is kept beside the last error, so a page that stops answering leaves its provider's
declared state shown as stale, never as recovered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmpulse.core.errors import LlmpulseError
from llmpulse.core.redact import redact
from llmpulse.core.store import Store
from llmpulse.core.validate import Section

if TYPE_CHECKING:  # imported where pages are read: the config parses [status_pages] without httpx
    import httpx

# Built-in providers with a Statuspage-compatible page (../shared/PROVIDERS.md) and the components that
# are the API llmpulse watches (matched case-insensitively as a part of the component's name).
CATALOG_PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "openai": (
        "https://status.openai.com",
        (
            "Chat Completions",
            "Responses",
            "Embeddings",
            "Files",
            "Batch",
            "Fine-tuning",
            "Moderations",
            "Realtime",
            "Audio",
            "Images",
        ),
    ),
    "anthropic": ("https://status.claude.com", ("Claude API",)),
    "deepseek": ("https://status.deepseek.com", ("API",)),
    "groq": ("https://groqstatus.com", ("API",)),
}
SUMMARY_PATH = "/api/v2/summary.json"
MAX_PAGE_BYTES = 2_000_000  # real summaries are tens of KB
STATUS_WORDS = {
    "operational": "operational",
    "degraded_performance": "degraded performance",
    "partial_outage": "partial outage",
    "major_outage": "major outage",
    "under_maintenance": "maintenance",
}
COMPONENT_RANK = {
    "operational": 0,
    "under_maintenance": 1,
    "degraded_performance": 2,
    "partial_outage": 3,
    "major_outage": 4,
}
IMPACT_WORDS = {"none": "incident", "minor": "minor incident", "major": "major outage", "critical": "critical outage"}
OPEN_INCIDENT = ("investigating", "identified", "monitoring")


class PageError(LlmpulseError):
    """The page answered, but not with a summary we can read (HTTP error, not JSON, wrong shape, too big)."""


@dataclass(frozen=True)
class PageConfig:
    url: str  # the page's root; SUMMARY_PATH is added
    components: tuple[str, ...] = ()  # empty: every component counts


@dataclass(frozen=True)
class StatusPageSettings:
    enabled: bool = True
    interval: float = 120.0
    timeout: float = 10.0  # one page, the whole request
    pages: dict[str, PageConfig | None] = field(default_factory=dict)  # provider id -> page (None: off)

    def page_for(self, provider: Any) -> PageConfig | None:
        """The page to read for this provider: its `[status_pages.ID]`, else the catalog's — but only
        while the provider is reached at its catalog address (a proxy, a simulator or a test fake is not
        what the vendor's page describes, and must not send llmpulse to the internet)."""
        if not self.enabled:
            return None
        if provider.id in self.pages:
            return self.pages[provider.id]
        default = CATALOG_PAGES.get(provider.id)
        spec = getattr(provider, "spec", None)
        if default is None or spec is None or str(provider.base_url).rstrip("/") != str(spec.base_url).rstrip("/"):
            return None
        return PageConfig(default[0], default[1])


def parse_settings(root: Section) -> StatusPageSettings:
    """`[status_pages]`: interval, timeout, enabled; `[status_pages.ID]` url / components / enabled per provider."""
    sec = root.table("status_pages")
    d = StatusPageSettings()
    settings = {"enabled", "interval", "timeout"}
    pages: dict[str, PageConfig | None] = {}
    for pid in [k for k in sec.data if k not in settings]:
        one = sec.table(pid)
        default = CATALOG_PAGES.get(pid)
        url = one.string("url", default[0] if default else None)
        if one.boolean("enabled", True) is False:
            pages[pid] = None
        elif url is None:
            raise one.error("url", None, "the status page's address, e.g. https://status.example.com")
        elif not url.startswith(("http://", "https://")):
            raise one.error("url", url, "an http:// or https:// URL")
        else:
            components = one.string_list("components", list(default[1]) if default else [])
            pages[pid] = PageConfig(url.rstrip("/"), tuple(components))
        one.done()
    out = StatusPageSettings(
        enabled=sec.boolean("enabled", d.enabled),
        interval=sec.duration("interval", d.interval, minimum=10.0),
        timeout=sec.duration("timeout", d.timeout, minimum=0.1),
        pages=pages,
    )
    sec.done()
    return out


def status_page_settings(cfg: object) -> StatusPageSettings:
    found = getattr(cfg, "status_pages", None)
    return found if isinstance(found, StatusPageSettings) else StatusPageSettings()


# ---------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Declared:
    """What a page declares about the components llmpulse uses."""

    indicator: str  # the page's overall: none | minor | major | critical
    description: str  # the page's own words ("Partial System Outage")
    worst: str  # the worst status among the used components (operational when all are)
    components: tuple[str, ...]  # used components not operational, or named by an open incident
    incident: str | None  # the open incident touching them (the latest), by name
    impact: str | None  # its impact: none | minor | major | critical
    since: float | None  # when it started
    link: str | None  # its shortlink


def _ts(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _uses(name: str, wanted: Sequence[str]) -> bool:
    return not wanted or any(w.lower() in name.lower() for w in wanted)


def parse_summary(data: Any, wanted: Sequence[str]) -> Declared:
    """Judge a summary.json document for the components we use; PageError when it is not one."""
    if not isinstance(data, Mapping) or not isinstance(data.get("components"), list):
        raise PageError("not a Statuspage summary: no components list")
    status: Mapping[str, Any] = data["status"] if isinstance(data.get("status"), Mapping) else {}
    components = [c for c in data["components"] if isinstance(c, Mapping) and isinstance(c.get("name"), str)]
    used = [c for c in components if not c.get("group") and _uses(c["name"], wanted)]
    hurt = [c for c in used if c.get("status") not in ("operational", None)]
    worst = max((str(c.get("status")) for c in used), key=lambda s: COMPONENT_RANK.get(s, 0), default="operational")
    incidents = [i for i in data.get("incidents") or [] if isinstance(i, Mapping)]
    touching = []
    for inc in incidents:
        if inc.get("status") not in OPEN_INCIDENT:
            continue
        names = [c.get("name", "") for c in inc.get("components") or [] if isinstance(c, Mapping)]
        # An incident naming no component is taken as about the whole service.
        if not names or any(_uses(n, wanted) for n in names):
            touching.append((inc, [n for n in names if _uses(n, wanted)]))
    touching.sort(key=lambda pair: _ts(pair[0].get("started_at") or pair[0].get("created_at")) or 0.0)
    latest, named = touching[-1] if touching else (None, [])
    affected = [c["name"] for c in hurt] + [n for n in named if n not in {c["name"] for c in hurt}]
    return Declared(
        indicator=str(status.get("indicator") or "none"),
        description=str(status.get("description") or ""),
        worst=worst if worst in COMPONENT_RANK else "operational",
        components=tuple(affected),
        incident=str(latest.get("name")) if latest is not None else None,
        impact=str(latest.get("impact") or "none") if latest is not None else None,
        since=_ts(latest.get("started_at") or latest.get("created_at")) if latest is not None else None,
        link=str(latest["shortlink"]) if latest is not None and latest.get("shortlink") else None,
    )


async def fetch_summary(client: httpx.AsyncClient, page: PageConfig) -> Declared:
    """GET the page's summary.json, reading at most MAX_PAGE_BYTES."""
    from llmpulse.core.http_answer import fetch  # with httpx, only where pages are read

    response = await fetch(
        client, "GET", page.url + SUMMARY_PATH, limit=MAX_PAGE_BYTES, headers={"Accept": "application/json"}
    )
    if response.status_code != 200:
        raise PageError(f"HTTP {response.status_code}")
    if response.truncated:
        raise PageError(f"answer larger than {MAX_PAGE_BYTES // 1000} KB")
    body = response.body
    try:
        data = json.loads(bytes(body))
    except ValueError:
        raise PageError("answer is not JSON") from None
    return parse_summary(data, page.components)


@dataclass(frozen=True)
class Reading:
    provider_id: str
    url: str
    at: float
    declared: Declared | None  # None: this fetch failed
    error: str | None = None


async def read_pages(pages: Mapping[str, PageConfig], timeout: float, now: float) -> list[Reading]:
    """All pages at once, each bounded by `timeout` (a hanging page costs only itself)."""
    import httpx

    async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client:

        async def one(pid: str, page: PageConfig) -> Reading:
            try:
                declared = await asyncio.wait_for(fetch_summary(client, page), timeout=timeout)
                return Reading(pid, page.url, now, declared)
            except TimeoutError:
                return Reading(pid, page.url, now, None, f"no answer within {timeout:g}s")
            except PageError as exc:
                return Reading(pid, page.url, now, None, str(exc))
            except httpx.HTTPError as exc:
                return Reading(pid, page.url, now, None, redact(f"{type(exc).__name__}: {exc}") or type(exc).__name__)

        return list(await asyncio.gather(*(one(pid, page) for pid, page in pages.items())))


async def record_readings(store: Store, readings: Iterable[Reading]) -> int:
    """Keep each provider's last good reading and its last error (a failed fetch keeps the good one)."""
    count = 0
    async with store.transaction() as conn:
        for r in readings:
            count += 1
            if r.declared is not None:
                await conn.execute(
                    "INSERT INTO provider_status_pages (provider_id, url, ok_at, declared, error, error_at) "
                    "VALUES (?, ?, ?, ?, NULL, NULL) ON CONFLICT(provider_id) DO UPDATE SET url = excluded.url, "
                    "ok_at = excluded.ok_at, declared = excluded.declared, error = NULL, error_at = NULL",
                    (r.provider_id, r.url, r.at, json.dumps(r.declared.__dict__)),
                )
            else:
                await conn.execute(
                    "INSERT INTO provider_status_pages (provider_id, url, error, error_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(provider_id) DO UPDATE SET url = excluded.url, error = excluded.error, "
                    "error_at = excluded.error_at",
                    (r.provider_id, r.url, r.error, r.at),
                )
    return count


# ----------------------------------------------------------------------------------------- showing


@dataclass(frozen=True)
class ProviderIncident:
    """A provider's declared state beside its probe, for the snapshot and the `provider_incident` rule."""

    provider_id: str
    name: str  # the provider's display name
    url: str
    declared: Declared | None  # the last good reading (None: never read)
    read_at: float | None  # when it was read
    error: str | None  # the latest fetch's failure, when it failed after that reading
    stale: bool  # the last good reading is older than three intervals

    @property
    def active(self) -> bool:
        """The provider declares trouble on a component we use: an open incident or a component down."""
        d = self.declared
        return d is not None and (d.incident is not None or d.worst not in ("operational", "under_maintenance"))

    @property
    def status_words(self) -> str:
        d = self.declared
        if d is None:
            return "unknown"
        if d.worst not in ("operational", "under_maintenance"):
            return STATUS_WORDS.get(d.worst, d.worst)
        return IMPACT_WORDS.get(d.impact or "none", "incident") if d.incident else "operational"

    def headline(self) -> str:
        """ "OpenAI reports: partial outage — Chat Completions (since 09:12 UTC)" — or "" when all is well."""
        if not self.active or self.declared is None:
            return ""
        d = self.declared
        parts = f"{self.name} reports: {self.status_words}"
        if d.components:
            parts += (
                " — " + ", ".join(d.components[:3]) + (f" +{len(d.components) - 3}" if len(d.components) > 3 else "")
            )
        if d.since is not None:
            parts += f" (since {dt.datetime.fromtimestamp(d.since, dt.UTC).strftime('%H:%M')} UTC)"
        if d.incident:
            parts += f": {d.incident}"
        if self.stale or self.error:
            parts += " [stale: page not read since " + (
                dt.datetime.fromtimestamp(self.read_at, dt.UTC).strftime("%H:%M") + " UTC]" if self.read_at else "]"
            )
        return parts


async def load_incidents(
    store: Store, providers: Iterable[Any], settings: StatusPageSettings, now: float
) -> dict[str, ProviderIncident]:
    """The declared state of every provider that has a page, by provider id."""
    watched = {p.id: p for p in providers if getattr(p, "enabled", True) and getattr(p, "configured", True)}
    rows = await store.fetchall("SELECT provider_id, url, ok_at, declared, error, error_at FROM provider_status_pages")
    out: dict[str, ProviderIncident] = {}
    for r in rows:
        pid = r["provider_id"]
        if pid not in watched or settings.page_for(watched[pid]) is None:
            continue
        declared = None
        if r["declared"]:
            fields = json.loads(r["declared"])
            declared = Declared(**{**fields, "components": tuple(fields["components"])})
        error = (
            r["error"] if r["error_at"] is not None and (r["ok_at"] is None or r["error_at"] >= r["ok_at"]) else None
        )
        read_at = r["ok_at"]
        stale = read_at is None or now - read_at > 3 * settings.interval
        out[pid] = ProviderIncident(pid, watched[pid].name, r["url"], declared, read_at, error, stale)
    return out


class StatusPages:
    """The collector's slow timer for status pages: starts a background read when due, hands finished
    readings to the next round, never makes a round wait."""

    def __init__(self, settings: StatusPageSettings):
        self.settings = settings
        self._last_start = float("-inf")
        self._task: asyncio.Task[list[Reading]] | None = None

    def pages(self, providers: Iterable[Any]) -> dict[str, PageConfig]:
        out = {}
        for p in providers:
            if not getattr(p, "enabled", True) or not getattr(p, "configured", True):
                continue
            page = self.settings.page_for(p)
            if page is not None:
                out[p.id] = page
        return out

    def take(self) -> list[Reading]:
        """Readings of the read that finished since the last call (empty while one runs)."""
        if self._task is None or not self._task.done():
            return []
        task, self._task = self._task, None
        if task.cancelled() or task.exception() is not None:
            return []
        return task.result()

    def start_if_due(self, providers: Iterable[Any], now: float) -> bool:
        if self._task is not None or now - self._last_start < self.settings.interval:
            return False
        pages = self.pages(providers)
        if not pages:
            return False
        self._last_start = now
        # The whole read is bounded too: a page trickling bytes forever cannot hold the next one back.
        bounded = asyncio.wait_for(read_pages(pages, self.settings.timeout, now), self.settings.timeout * 2)
        self._task = asyncio.get_running_loop().create_task(bounded, name="status-pages")
        return True

    async def settle(self, timeout: float) -> None:
        """Wait for a read in flight (tests, and `probe_now`-style one-shot callers)."""
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
