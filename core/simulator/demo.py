"""`llmpulse demo`: the whole product with no API keys and no network.

A simulated fleet on 127.0.0.1 (llmpulse.core.simulator.fleet: real HTTP servers) — OpenAI healthy and fast, Anthropic
slow, Groq flapping, Together rate-limited, DeepSeek with a bad key, Mistral nearly out of rate limit,
Ollama local — is written into a generated config with budgets and a gpt-4o → gpt-4.1 migration.
Thirty days of usage across departments, agents and users are backfilled (the migration's share
climbing), then live traffic is fed at the same rate as the history while the dashboard's collector
probes the fleet, so the budgets — set from that rate, in the hundreds and thousands of dollars — stay
near their lines for the whole session whatever the day of the month. DeepSeek's key is refused by its
server, so its traffic fails too (and falls back to OpenAI). Everything goes to a temporary database,
removed on exit (also after a hang-up), unless `--db` is given.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmpulse.core.config import Context, load_context
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.vocabulary import counted

DEMO_KEY = "sk-demo-0000000000000000000000"
DAY = 86400.0
BACKFILL_DAYS = 30
MIGRATION_DAYS_IN = 21  # the migration started three weeks ago
MIGRATION_DAYS_LEFT = 30
REQUESTS_PER_DAY = 2400  # the simulated organisation's traffic, in the backfill and live alike
TOKEN_SCALE = 5  # prompts of a few thousand tokens: spend in the hundreds of dollars a day
BAD_KEY = frozenset({"deepseek"})  # the fleet refuses this provider's key: probes and traffic fail


@dataclass(frozen=True)
class Route:
    provider: str
    model: str
    weight: float
    in_tokens: int  # typical prompt size
    out_tokens: int
    latency_ms: float
    error_rate: float = 0.01


# What the simulated organisation runs. gpt-4o / gpt-4.1 carry the migration; acme/support-ft-7b has
# no public price (it shows as "price unknown", never as $0); Ollama is local and costs nothing.
ROUTES = (
    Route("openai", "gpt-4o", 0.0, 1800, 450, 900),  # weight set by the migration's progress
    Route("openai", "gpt-4.1", 0.0, 1800, 450, 800),
    Route("openai", "gpt-4o-mini", 0.18, 900, 250, 450),
    Route("anthropic", "claude-sonnet-4-5", 0.12, 2600, 700, 1900, 0.02),
    Route("anthropic", "claude-haiku-4-5", 0.08, 1200, 300, 700),
    Route("groq", "llama-3.3-70b-versatile", 0.08, 1000, 300, 250, 0.08),
    Route("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo", 0.06, 1000, 300, 600, 0.03),
    Route("together", "acme/support-ft-7b", 0.03, 700, 200, 400),
    Route("deepseek", "deepseek-chat", 0.05, 1500, 400, 1100, 0.02),
    Route("mistral", "mistral-small-latest", 0.05, 800, 200, 500),
    Route("ollama", "llama3.2", 0.10, 600, 200, 1200),
)
MIGRATION_WEIGHT = 0.25  # share of all traffic that is gpt-4o or gpt-4.1
TEAMS = {
    "Engineering": (("code-review", "ci-triage", "docs-writer"), ("alice", "bob", "chen")),
    "Support": (("ticket-triage", "reply-drafter"), ("dana", "eli")),
    "Research": (("paper-summarizer", "eval-runner"), ("fatima", "gus")),
    "Marketing": (("copy-writer",), ("hana",)),
}
TEAM_WEIGHTS = {"Engineering": 0.45, "Support": 0.3, "Research": 0.17, "Marketing": 0.08}
TASKS = ("chat", "summarize", "classify", "extract", "code")
FALLBACK = {"groq": "together", "anthropic": "openai", "deepseek": "openai"}


def fleet_providers() -> list[FakeProvider]:
    return [
        FakeProvider("openai", kind="openai", key=DEMO_KEY, delay=0.06),
        FakeProvider("anthropic", kind="anthropic", key=DEMO_KEY, delay=1.4),  # slow: degraded
        FakeProvider("groq", kind="groq", key=DEMO_KEY, behaviour="flapping", delay=0.03),
        FakeProvider("together", kind="together", key=DEMO_KEY, behaviour="rate_limited", delay=0.05),
        FakeProvider("deepseek", kind="deepseek", key="sk-the-key-deepseek-expects-00", delay=0.05),  # bad key
        FakeProvider("mistral", kind="mistral", key=DEMO_KEY, delay=0.12, headroom=0.06),
        FakeProvider("ollama", kind="ollama", key=None, delay=0.01),
    ]


def migration_share(t: float, start: float) -> float:
    """gpt-4.1's share of the migrating traffic at time t: a slow climb, ~35% today: at risk."""
    days = (t - start) / DAY
    return 0.0 if days < 0 else min(0.95, 0.02 + 0.016 * days)


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def synthetic_usage(rng: random.Random, t: float, migration_start: float) -> dict[str, Any]:
    """One usage record (as the mapping `llmpulse import` reads) at time t."""
    share = migration_share(t, migration_start)
    weights = [r.weight for r in ROUTES]
    weights[0] = MIGRATION_WEIGHT * (1 - share)
    weights[1] = MIGRATION_WEIGHT * share
    route = rng.choices(ROUTES, weights=weights)[0]
    team = _pick(rng, TEAM_WEIGHTS)
    agents, users = TEAMS[team]
    scale = TOKEN_SCALE * rng.lognormvariate(0, 0.5)
    refused = route.provider in BAD_KEY
    failed = refused or rng.random() < route.error_rate
    record: dict[str, Any] = {
        "ts": t,
        "provider": route.provider,
        "model": route.model,
        "input_tokens": int(route.in_tokens * scale),
        "output_tokens": 0 if failed else int(route.out_tokens * scale),
        "cache_read_tokens": int(route.in_tokens * scale * 0.3) if route.provider == "anthropic" else 0,
        "latency_ms": round(route.latency_ms * rng.lognormvariate(0, 0.35), 1),
        "status": "error" if failed else "ok",
        "department": team,
        "agent": rng.choice(agents),
        "user": rng.choice(users),
        "task_type": rng.choice(TASKS),
        "endpoint": "/v1/chat/completions",
        "request_id": f"demo-{uuid.UUID(int=rng.getrandbits(128))}",
    }
    if failed:
        record["error_kind"] = "auth" if refused else rng.choice(("rate_limited", "server_error", "timeout"))
        if refused:  # refused before any work: nothing was billed
            record["input_tokens"] = 0
            record["latency_ms"] = round(rng.uniform(40, 120), 1)
    return record


def with_fallback(rng: random.Random, record: dict[str, Any]) -> dict[str, Any] | None:
    """The retry a failover client makes after a failed record, on the next provider."""
    target = FALLBACK.get(record["provider"])
    if record["status"] != "error" or target is None:
        return None
    model = "gpt-4o-mini" if target == "openai" else "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    return {
        **record,
        "ts": record["ts"] + record["latency_ms"] / 1000.0,
        "provider": target,
        "model": model,
        "status": "ok",
        "error_kind": None,
        "input_tokens": int(900 * TOKEN_SCALE),
        "cache_read_tokens": 0,
        "output_tokens": int(250 * TOKEN_SCALE),
        "is_fallback": True,
        "fallback_from": record["provider"],
        "request_id": record["request_id"] + "-fb",
    }


def busyness(t: float) -> float:
    """How busy the organisation is at t against its daily average: the ten working hours (UTC) at 1.8x,
    the other fourteen sharing the rest (the day still averages 1)."""
    hour_of_day = dt.datetime.fromtimestamp(t, dt.UTC).hour
    return 1.8 if 8 <= hour_of_day < 18 else (24 - 1.8 * 10) / 14


def backfill(
    rng: random.Random, now: float, migration_start: float, per_day: int = REQUESTS_PER_DAY
) -> Iterator[dict[str, Any]]:
    """BACKFILL_DAYS of history, busier in working hours, ending a minute before now."""
    start = now - BACKFILL_DAYS * DAY
    hours = int((now - 60 - start) // 3600)
    for h in range(hours):
        hour_start = start + h * 3600
        mean = per_day / 24 * busyness(hour_start)
        for _ in range(max(0, round(rng.gauss(mean, mean**0.5)))):
            rec = synthetic_usage(rng, hour_start + rng.random() * 3600, migration_start)
            yield rec
            fb = with_fallback(rng, rec)
            if fb is not None:
                yield fb


def _month_start(now: float) -> float:
    d = dt.datetime.fromtimestamp(now, dt.UTC)
    return dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC).timestamp()


def demo_config(fleet: Fleet, db_path: Path, budgets: list[tuple[str, str, float]], now: float) -> str:
    start = dt.date.fromtimestamp(now - MIGRATION_DAYS_IN * DAY)
    deadline = dt.date.fromtimestamp(now + MIGRATION_DAYS_LEFT * DAY)
    lines = [
        "# Generated by `llmpulse demo`: the simulated fleet on 127.0.0.1.",
        "[probe]",
        'interval = "5s"',
        'timeout = "3s"',
        'slow = "1s"',  # the latency bands' "slow" follows (config: one meaning of slow)
        "",
        "[storage]",
        f'path = "{db_path.as_posix()}"',
        "",
    ]
    for p in fleet.providers.values():
        lines += [f"[providers.{p.id}]", f'base_url = "{fleet.base_url(p.id)}"', ""]
    for scope, period, limit in budgets:
        lines += [
            "[[budgets]]",
            f'scope = "{scope}"',
            f'period = "{period}"',
            f"limit_usd = {limit:.2f}",
            "warn_at = [0.8, 1.0]",
            "",
        ]
    lines += [
        "[[migrations]]",
        'name = "gpt-4.1"',
        'from = ["gpt-4o"]',
        'to = "gpt-4.1"',
        f"start = {start.isoformat()}",
        f"deadline = {deadline.isoformat()}",
        'window = "24h"',
        "",
    ]
    return "\n".join(lines)


class Demo:
    """`with Demo() as demo:` starts the fleet, writes the config, backfills; `demo.context()` for the
    dashboard; `demo.live_traffic(stop)` feeds requests until stop."""

    def __init__(self, db_path: str | None = None, *, seed: int = 9, backfill_per_day: int = REQUESTS_PER_DAY):
        self.keep_db = db_path is not None
        self.dir = Path(tempfile.mkdtemp(prefix="llmpulse-demo-"))
        self.db_path = Path(db_path).expanduser() if db_path else self.dir / "demo.db"
        self.rng = random.Random(seed)
        self.per_day = backfill_per_day
        self.fleet = Fleet(fleet_providers())
        self.now = time.time()
        self.migration_start = self.now - MIGRATION_DAYS_IN * DAY
        self._ctx: Context | None = None

    def env(self) -> dict[str, str]:
        keys = (
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "GROQ_API_KEY",
            "TOGETHER_API_KEY",
            "DEEPSEEK_API_KEY",
            "MISTRAL_API_KEY",
        )
        return dict.fromkeys(keys, DEMO_KEY)

    def __enter__(self) -> Demo:
        self.fleet.start()
        try:
            config = self.dir / "llmpulse.toml"
            # Ingest first, with no budgets, then set the limits from what this month really cost.
            config.write_text(demo_config(self.fleet, self.db_path, [], self.now))
            self._ctx = load_context(config_path=str(config), db_path=str(self.db_path), environ=self.env())
            asyncio.run(self._ingest(list(backfill(self.rng, self.now, self.migration_start, self.per_day))))
            budgets = asyncio.run(self._budgets())
            config.write_text(demo_config(self.fleet, self.db_path, budgets, self.now))
            self._ctx = load_context(config_path=str(config), db_path=str(self.db_path), environ=self.env())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.fleet.stop()
        self.remove_files()

    def remove_files(self) -> None:
        """Remove the temporary config and database (a `--db` given by the user lives elsewhere and stays).
        Safe to call twice, and from the dashboard's last act before a forced exit after a hang-up."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def context(self) -> Context:
        assert self._ctx is not None, "use Demo as a context manager"
        return self._ctx

    async def _budgets(self) -> list[tuple[str, str, float]]:
        """Limits in line with what the history spends per day (the live traffic spends at the same rate).

        A limit is the larger of: this period's spend so far over the warning line it should sit just
        past, and the whole period's spend at this rate over 1.1 (projected about 10% over, so "runs out"
        has a date). Late in a period the first holds the budget near its line; early (the first of the
        month) the second keeps the limit at a month's scale instead of a few dollars, with a projection
        that says where it is heading."""
        from zoneinfo import ZoneInfo

        from llmpulse.core.store import Store
        from llmpulse.core.usage.queries import breakdown, period_end, period_start

        utc = ZoneInfo("UTC")
        history_start = self.now - BACKFILL_DAYS * DAY
        plans = (  # scope, group it is read by, key, period, the line it sits just past
            ("total", "provider", None, "month", 0.84),
            ("department:Engineering", "department", "Engineering", "month", 0.62),
            ("provider:anthropic", "provider", "anthropic", "month", 0.93),
            ("provider:openai", "provider", "openai", "week", 0.45),
        )
        store = await Store.open(self.db_path)
        try:
            budgets = []
            for scope, by, key, period, line in plans:
                start = period_start(self.now, period, utc)
                days = (period_end(start, period, utc) - start) / DAY

                async def spend(since: float, by: str = by, key: str | None = key) -> float:
                    rows = await breakdown(store, by, since, self.now, latency=False)
                    return sum(r.cost_usd or 0.0 for r in rows if key is None or r.key == key)

                so_far = await spend(start)
                per_day = await spend(history_start) / BACKFILL_DAYS
                budgets.append((scope, period, round(max(so_far / line, per_day * days / 1.1), -1)))
        finally:
            await store.close()
        return budgets

    async def _ingest(self, records: list[dict[str, Any]]) -> None:
        from llmpulse.core.store import Store
        from llmpulse.core.usage.recorder import Recorder, pricing_for

        store = await Store.open(self.db_path)
        try:
            async with Recorder(store, pricing_for(self.context()), batch_size=5000, flush_interval=60) as rec:
                for r in records:
                    rec.record(**r)
        finally:
            await store.close()

    async def live_traffic(self, stop: asyncio.Event) -> None:
        """Requests at the history's rate (REQUESTS_PER_DAY, busier in working hours), as the simulated
        applications would record them: the budgets move as fast as they did before the demo started."""
        from llmpulse.core.store import Store
        from llmpulse.core.usage.recorder import Recorder, pricing_for

        store = await Store.open(self.db_path)
        try:
            async with Recorder(store, pricing_for(self.context()), flush_interval=1.0) as rec:
                tick = 0.5
                while not stop.is_set():
                    # Poisson arrivals at the history's rate: exponential gaps, counted over one tick.
                    rate = self.per_day / DAY * busyness(time.time())
                    arrivals, t = 0, self.rng.expovariate(rate)
                    while t < tick:
                        arrivals, t = arrivals + 1, t + self.rng.expovariate(rate)
                    for _ in range(arrivals):
                        r = synthetic_usage(self.rng, time.time(), self.migration_start)
                        rec.record(**r)
                        fb = with_fallback(self.rng, r)
                        if fb is not None:
                            rec.record(**fb)
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=tick)
                    except TimeoutError:
                        pass
        finally:
            await store.close()

    async def run_headless(self, seconds: float) -> int:
        """Collector and traffic without a screen for `seconds`, then one summary (for scripts and CI)."""
        from llmpulse.core.collector import Collector
        from llmpulse.core.snapshot import build_snapshot
        from llmpulse.core.store import Store

        ctx = self.context()
        stop = asyncio.Event()
        store = await Store.open(self.db_path)
        try:
            collector = Collector(ctx, store, on_event=lambda line: print(line, flush=True))
            tasks = [asyncio.create_task(collector.run_forever(stop)), asyncio.create_task(self.live_traffic(stop))]
            await asyncio.sleep(seconds)
            stop.set()
            await asyncio.gather(*tasks)
            snap = await build_snapshot(store, ctx, time.time())
        finally:
            await store.close()
        h = snap.header
        print(
            f"demo: {h.providers_healthy}/{h.providers_total} providers healthy, "
            f"{counted(sum(h.alerts_by_severity.values()), 'open alert')}, {counted(len(snap.budgets), 'budget')}, "
            f"{counted(len(snap.migrations), 'migration')}, {counted(h.requests_period, 'request')} this month, "
            f"${h.cost_period:,.2f}"
        )
        return 0
