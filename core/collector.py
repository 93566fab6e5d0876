"""The collector: probes, health, usage statistics, budgets, migrations, alert rules and notifications,
one round after another, in whichever process holds the collector lease for the database.

A round is a fixed pipeline; each step's failure is recorded (redacted) and the round goes on, so one
broken part never silences the others. The next round starts only when the previous one has finished
(a hanging provider costs one probe timeout, never a pile-up). Slower timers run billing reconciliation
and retention pruning. The daemon, the dashboard and `llmpulse demo` all run this same class.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmpulse.core.alerts.baseline import load_latency_baselines, record_latency_samples
from llmpulse.core.alerts.custom import custom_figures
from llmpulse.core.alerts.engine import AlertEngine, prune_alert_notices
from llmpulse.core.alerts.notify import Notifier
from llmpulse.core.alerts.rules import RuleInputs, covered_rules, evaluate_rules
from llmpulse.core.catalog import Provider
from llmpulse.core.clock import SYSTEM_CLOCK, Clock
from llmpulse.core.config import Context
from llmpulse.core.enablement import apply_enablement
from llmpulse.core.health import load_health, record_probe_results
from llmpulse.core.health_state import prune_probe_history, prune_probe_results, raw_keep, reclaim_space
from llmpulse.core.lease import COLLECTOR_LEASE, RENEW_EVERY, STANDBY_POLL, Lease, process_holder_id
from llmpulse.core.migration import migration_statuses
from llmpulse.core.probe import ProbeClients, ProbeResult, probe_all
from llmpulse.core.redact import redact
from llmpulse.core.round_flag import RoundFlag
from llmpulse.core.statuspage import StatusPages, load_incidents, record_readings, status_page_settings
from llmpulse.core.store import Store
from llmpulse.core.usage.budgets import budget_statuses
from llmpulse.core.usage.queries import RequestStats, provider_request_stats, prune_usage, unknown_price_models
from llmpulse.core.usage.reconcile import RECONCILE_INTERVAL_S, billable, poll_billing
from llmpulse.core.usage.traffic_window import CatchUp, TrafficWindow, write_published
from llmpulse.core.vocabulary import counted

log = logging.getLogger("llmpulse.collector")

PRUNE_EVERY_S = 3600.0
NOTICE_KEEP_S = 30 * 86400.0  # sent notices and finished deliveries (alerts and transitions stay)
DRAIN_S = 5.0  # on stop, how long deliveries in flight may still take
# The round flag goes up this long before a round, so an ingest batch already being written (a few ms)
# is done when the round starts; the ingest then writes nothing until the round ends.
ROUND_FLAG_LEAD_S = 0.02
# Between rounds the traffic window reads what was stored meanwhile this often (a quarter of the
# interval, between 50 ms and 1 s), so a round under heavy ingest reads only the last slice of it.
FEED_EVERY_MIN_S, FEED_EVERY_MAX_S = 0.05, 1.0
Event = Callable[[str], None]


@dataclass
class RoundReport:
    started_at: float
    duration_ms: float
    probes: list[ProbeResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    alert_events: list[str] = field(default_factory=list)


class Collector:
    def __init__(
        self,
        ctx: Context,
        store: Store,
        clock: Clock = SYSTEM_CLOCK,
        *,
        on_event: Event | None = None,
        notifier: Any = None,
    ):
        self.ctx = ctx
        self.store = store
        self.clock = clock
        self.on_event = on_event or (lambda line: log.info(line))
        self._own_notifier = notifier is None
        self.notifier = (
            notifier
            if notifier is not None
            else Notifier(ctx.config.alerts, store, clock, ctx.env, round_interval=ctx.config.probe.interval)
        )
        self.engine = AlertEngine(store, ctx.config.alerts, clock, self.notifier)
        self._pending: Context | None = None
        self.status_pages = StatusPages(status_page_settings(ctx.config))
        self.rounds = 0
        # Kept from round to round while run_forever runs (a single run_round builds its own).
        self.probe_clients: ProbeClients | None = None
        self._last_status: dict[str, str] = {}
        self._last_prune = 0.0
        self._last_billing = 0.0
        self._last_usage_pull = 0.0
        self._early_flag: RoundFlag | None = None  # raised by run_forever just before the next round
        # The health window's real traffic, read incrementally (core/usage/traffic_window.py).
        self.traffic = TrafficWindow(ctx.config.health.window)
        self.last_catch_up: CatchUp | None = None  # what the last round's catch-up read (tests, benchmarks)
        self._lead_fed = False  # the window was brought up to date in the flag's lead of the coming round
        self._unpublished: tuple[dict[str, RequestStats], float, float] | None = None  # this round's traffic

    # -- live reload ------------------------------------------------------------------------------
    def reload(self, ctx: Context) -> None:
        """Use `ctx` (a config loaded and checked by the caller) from the next round on: thresholds,
        budgets, rules, channels, providers and the interval. Alerts, their history and the circuit
        breakers live in the database, so nothing open is lost or re-announced."""
        self._pending = ctx

    async def _apply_reload(self) -> None:
        ctx, self._pending = self._pending, None
        if ctx is None:
            return
        self.ctx = ctx
        if self._own_notifier:
            # Deliveries already in flight finish on the old channels (bounded); new notices use the new ones.
            old = self.notifier
            self.notifier = Notifier(
                ctx.config.alerts, self.store, self.clock, ctx.env, round_interval=ctx.config.probe.interval
            )
            try:
                await asyncio.wait_for(old.drain(DRAIN_S), timeout=DRAIN_S + 1)
            except Exception as exc:
                self.on_event(redact(f"config reload: old channels did not drain: {type(exc).__name__}: {exc}") or "")
        self.engine = AlertEngine(self.store, ctx.config.alerts, self.clock, self.notifier)
        self.status_pages.settings = status_page_settings(ctx.config)
        self.on_event(
            f"config reloaded: {counted(sum(p.configured for p in ctx.providers), 'provider')} configured, "
            f"probing every {ctx.config.probe.interval:g}s"
        )

    # -- one round --------------------------------------------------------------------------------
    async def run_round(self) -> RoundReport:
        await self._apply_reload()
        # The round's flag is up while it runs: the ingest server holds back its batch writes (bounded),
        # so this round's writes never queue behind them (see core/round_flag.py). run_forever raises
        # it ROUND_FLAG_LEAD_S early, so a batch already being written is done before the round starts.
        flag, self._early_flag = self._early_flag or RoundFlag(self.store.path).__enter__(), None
        try:
            return await self._round()
        finally:
            flag.__exit__(None, None, None)

    def _lower_early_flag(self) -> None:
        """A flag raised for a round that will not run now (lease lost, stopping, an error)."""
        flag, self._early_flag = self._early_flag, None
        self._lead_fed = False
        if flag is not None:
            flag.__exit__(None, None, None)

    async def _round(self) -> RoundReport:
        cfg = self.ctx.config
        started = time.perf_counter()
        now = self.clock.now()
        report = RoundReport(started_at=now, duration_ms=0.0)

        async def step(name: str, work: Callable[[], Awaitable[Any]], default: Any = None) -> Any:
            try:
                return await work()
            except Exception as exc:  # one broken step must not stop the round
                line = redact(f"{name}: {type(exc).__name__}: {exc}")
                report.errors.append(line)
                self.on_event(f"error in {line}")
                return default

        providers = await step(
            "enablement", lambda: apply_enablement(self.store, self.ctx.providers), self.ctx.providers
        )
        # A disabled provider is judged by nobody: its open alerts are closed — not resolved as if it had
        # recovered (the `providers disable` command and the dashboard close them at once, with who did it).
        closed = await step("disabled providers", lambda: self.engine.close_disabled(self._disabled_by(providers)), [])
        results = await step("probe", lambda: probe_all(providers, cfg.probe, now=now, clients=self.probe_clients), [])
        # Only what this process can see is judged (issue 18): the rules neither open nor resolve
        # anything about a provider whose key or base URL it lacks, or that is disabled; its last verdict
        # stays as stored.
        visible = frozenset(p.id for p in providers if p.configured and p.enabled)
        report.probes = results
        await step("store probes", lambda: record_probe_results(self.store, results, cfg.health, now))
        self._status_events(results)
        # The providers' own status pages: a read started in the background (never awaited here) is
        # written by the round after it finished.
        readings = self.status_pages.take()
        if readings:
            await step("status pages", lambda: record_readings(self.store, readings))
        self.status_pages.start_if_due(providers, now)
        now = self.clock.now()
        stats = await step("request stats", lambda: self._traffic_stats(now))
        health = await step("health", lambda: load_health(self.store, providers, cfg.health, now, stats))
        budgets = await step("budgets", lambda: budget_statuses(self.store, cfg.usage, now))
        migrations = await step("migrations", lambda: migration_statuses(self.store, cfg, now, record=True))
        unknown = await step("unknown prices", lambda: unknown_price_models(self.store, now - 86400.0, now))
        await step("latency samples", lambda: record_latency_samples(self.store, health or [], cfg.alerts, now))
        baselines = await step(
            "latency baselines",
            lambda: load_latency_baselines(self.store, cfg.alerts, now, exclude_recent=cfg.health.window),
            {},
        )
        incidents = await step(
            "declared incidents", lambda: load_incidents(self.store, providers, self.status_pages.settings, now)
        )
        custom = await step(
            "custom rules",
            lambda: custom_figures(self.store, cfg.alerts.custom_rules, now, cfg.alerts.min_requests),
        )
        # A step that failed passes None: its rules are skipped and their open alerts left alone.
        inputs = RuleInputs(
            now=now,
            health=health,
            budgets=budgets,
            request_stats=stats,
            migrations=migrations,
            unknown_prices=unknown,
            # "configured but no key" is about the collector's own environment: said only by a process
            # that collects something (one that sees no provider at all only views).
            providers=providers if visible else None,
            latency_baselines=baselines or {},
            window_s=cfg.health.window,
            custom_figures=custom,
            incidents=list(incidents.values()) if incidents is not None else None,
            visible=visible,
        )
        conditions = await step("rules", lambda: asyncio.to_thread(evaluate_rules, inputs, cfg.alerts), [])
        covered = covered_rules(inputs, cfg.alerts) if conditions is not None else set()
        changes = await step("alerts", lambda: self.engine.process(conditions or [], covered), [])
        for change in (closed or []) + (changes or []):
            line = str(change)
            report.alert_events.append(line)
            self.on_event(line)
        await step("notifications", lambda: self.notifier.dispatch())
        await self._slow_timers(now, step)
        report.duration_ms = (time.perf_counter() - started) * 1000.0
        self.rounds += 1
        await step("collector status", lambda: self._write_status(report))
        return report

    async def _traffic_stats(self, now: float) -> dict[str, RequestStats]:
        """The window's traffic per provider at `now`, published for viewers (they read it, not the calls)."""
        if self.traffic.length_s != self.ctx.config.health.window:  # a config reload changed the window
            self.traffic.reset(self.ctx.config.health.window)
        window = self.traffic.length_s
        at = now
        if self._lead_fed and self.traffic.at is not None and not self.traffic.overflowed:
            # Brought up to date in the round flag's lead, milliseconds ago, while the ingest finished its
            # last batch: the figures are as of then (`at`), and that batch is the next round's.
            self.last_catch_up, at = CatchUp(read=0, expired=0, full_read=False), self.traffic.at
        else:
            self.last_catch_up = await self.traffic.catch_up(self.store, now)
        self._lead_fed = False
        # Past the calls it may hold (traffic_window.CALLS_MAX) the window keeps none: the roll-ups'
        # figures then, their p50/p95 marked as the estimates they are.
        stats = (
            await provider_request_stats(self.store, now - window, now)
            if self.traffic.overflowed
            else self.traffic.stats()
        )
        # Published with the round's status, in one commit (one write fewer while ingest runs): a viewer
        # sees the figures and the round they belong to together.
        self._unpublished = (stats, at, window)
        return stats

    async def _feed_traffic(self, *, lead: bool = False) -> None:
        """Between rounds: bring the window up to date, so the next round has little or nothing left to
        read (`lead`: in the round flag's lead, just before the round, which then uses it as it is). A
        failure here is the next round's to report (its own catch-up meets it again)."""
        if self.traffic.length_s != self.ctx.config.health.window:
            return
        try:
            await self.traffic.catch_up(self.store, self.clock.now())
        except Exception:
            return
        self._lead_fed = lead

    async def _wait_feeding(self, stop: asyncio.Event, lost: asyncio.Event, seconds: float, interval: float) -> None:
        """Wait `seconds` (or until stop/lost), feeding the traffic window on the way, the last time at the
        end: the round that follows reads only what was stored in the last moments."""
        deadline = time.monotonic() + seconds
        every = min(FEED_EVERY_MAX_S, max(FEED_EVERY_MIN_S, interval / 4))
        while not (stop.is_set() or lost.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await _wait_any(stop, lost, min(every, remaining))
            if not (stop.is_set() or lost.is_set()):
                await self._feed_traffic()

    def _disabled_by(self, providers: Sequence[Provider]) -> dict[str, str]:
        """Disabled provider id -> who disabled it and where, as alert history shows it."""
        in_config = {p.id: p.enabled for p in self.ctx.providers}
        return {
            p.id: f"config ({self.ctx.config.source})"
            if not in_config.get(p.id, True)
            else "an override (llmpulse providers disable or the dashboard)"
            for p in providers
            if not p.enabled
        }

    def _status_events(self, results: Sequence[ProbeResult]) -> None:
        for r in results:
            before = self._last_status.get(r.provider_id)
            if r.status != before and not (before is None and r.status == "unknown"):
                why = f" ({r.error_kind}: {r.error})" if r.error_kind and r.status != "unknown" else ""
                self.on_event(f"provider {r.provider_id} {before or 'new'} -> {r.status}{why}")
            self._last_status[r.provider_id] = r.status

    async def _slow_timers(self, now: float, step: Callable[..., Any]) -> None:
        cfg = self.ctx.config
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            # Raw probes for a short while (the window's expiry and the detail screen read them), their
            # per-minute summaries for the charts' history.
            await step("prune probes", lambda: prune_probe_results(self.store, now, raw_keep(cfg.health)))
            await step("prune probe history", lambda: prune_probe_history(self.store, now))
            await step("prune usage", lambda: prune_usage(self.store, now, cfg.storage.retention))
            await step("prune notices", lambda: prune_alert_notices(self.store, now, NOTICE_KEEP_S))
            await step("reclaim space", lambda: reclaim_space(self.store))
        if now - self._last_billing >= RECONCILE_INTERVAL_S:
            self._last_billing = now
            providers = await apply_enablement(self.store, self.ctx.providers)
            if billable(providers):
                await step("billing", lambda: poll_billing(self.store, providers, now))
        usage_api = cfg.usage.usage_api if cfg.usage is not None else None
        if usage_api is not None and now - self._last_usage_pull >= usage_api.interval:
            self._last_usage_pull = now
            # here, not at the top: pricing loads the price table, which commands like `check` never need
            from llmpulse.core.usage.recorder import pricing_for
            from llmpulse.core.usage.usage_api import pull_usage, pullable

            pulled = pullable(await apply_enablement(self.store, self.ctx.providers))
            if pulled:
                reports = await step(
                    "usage api", lambda: pull_usage(self.store, pulled, usage_api, pricing_for(self.ctx), now), []
                )
                for r in reports or []:
                    if r.error:
                        self.on_event(f"usage api {r.provider_id}: {r.error}")

    async def _write_holder(self) -> None:
        """Who collects now, before its first round: the only database write the lease causes."""
        await self.store.execute(
            "INSERT INTO collector_status (lease, holder, sees) VALUES (?, ?, ?) ON CONFLICT(lease) DO UPDATE SET "
            "holder = excluded.holder, sees = excluded.sees",
            (COLLECTOR_LEASE, self.lease_holder, json.dumps(self.visible_ids())),
        )

    async def _write_status(self, report: RoundReport) -> None:
        unpublished, self._unpublished = self._unpublished, None
        async with self.store.transaction() as conn:
            await conn.execute(
                "INSERT INTO collector_status (lease, holder, rounds, last_started_at, last_finished_at, "
                "last_duration_ms, last_errors, sees) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(lease) DO UPDATE SET "
                "holder = excluded.holder, rounds = excluded.rounds, last_started_at = excluded.last_started_at, "
                "last_finished_at = excluded.last_finished_at, last_duration_ms = excluded.last_duration_ms, "
                "last_errors = excluded.last_errors, sees = excluded.sees",
                (
                    COLLECTOR_LEASE,
                    self.lease_holder,
                    self.rounds,
                    report.started_at,
                    self.clock.now(),
                    report.duration_ms,
                    json.dumps(report.errors),
                    json.dumps(self.visible_ids()),
                ),
            )
            if unpublished is not None:
                await write_published(conn, *unpublished, COLLECTOR_LEASE)

    lease_holder = "local"
    # Why this process's own collection cannot run (a read-only or locked database), None when it can.
    failure: str | None = None

    def visible_ids(self) -> list[str]:
        """The providers this process can see (has the key or base URL of): the only ones it judges."""
        return sorted(p.id for p in self.ctx.providers if p.configured)

    # -- rounds forever, under the lease ----------------------------------------------------------
    async def run_forever(
        self,
        stop: asyncio.Event,
        *,
        on_round: Callable[[], None] | None = None,
        interval: float | None = None,
        lease_store: Store | None = None,
    ) -> None:
        """Collect while holding the lease; stand by (trying every second) while another process holds it.
        Returns when `stop` is set; the lease is released so a standby takes over at once."""
        own_store = lease_store is None
        lease_db = lease_store or await Store.open(self.store.path)
        # A holder id per collector, not per process: two dashboards in one process are two contenders.
        lease = Lease(lease_db, COLLECTOR_LEASE, holder=process_holder_id(), clock=SYSTEM_CLOCK)
        self.lease_holder = lease.holder
        fixed_interval = interval
        holding = False
        self.probe_clients = ProbeClients(self.ctx.config.probe)
        try:
            while not stop.is_set():
                lease.sees = len(self.visible_ids())  # read each time: a config reload may change it
                try:
                    holding = await self._one_turn(lease, stop, holding, fixed_interval, on_round)
                except Exception as exc:  # the collector never dies: say why, wait, try again
                    self._lower_early_flag()
                    if holding or lease.held:
                        # A process that cannot collect (a database refusing its writes) must not keep
                        # one that can from collecting: the lease goes until the next try.
                        holding = False
                        with contextlib.suppress(Exception):
                            await lease.release()
                    why = redact(f"cannot collect: {type(exc).__name__}: {exc}") or "cannot collect"
                    if why != self.failure:  # a read-only or locked database is said once, and shown
                        self.on_event(
                            redact(f"collector error (retrying in {STANDBY_POLL:g}s): {type(exc).__name__}: {exc}")
                            or ""
                        )
                    self.failure = why
                    await _wait(stop, STANDBY_POLL)
        finally:
            self._lower_early_flag()
            await self.status_pages.stop()
            try:
                # Deliveries in flight finish (bounded) and their outcomes are written, or they would be
                # sent again by whoever collects next.
                await asyncio.wait_for(self.notifier.drain(DRAIN_S), timeout=DRAIN_S + 1)
            except Exception:
                pass
            if holding or lease.held:
                try:
                    await lease.release()
                except Exception:  # the database may be gone at exit; the lease then simply expires
                    pass
            clients, self.probe_clients = self.probe_clients, None
            await clients.aclose()
            if own_store:
                await lease_db.close()

    async def _one_turn(
        self,
        lease: Lease,
        stop: asyncio.Event,
        holding: bool,
        fixed_interval: float | None,
        on_round: Callable[[], None] | None,
    ) -> bool:
        """Take (or keep) the lease and run one round, or stand by; return whether we hold the lease."""
        acquired = await lease.acquire()
        if not acquired:
            self.failure = None  # another process collects: this one stands by
            self._lower_early_flag()
            if holding:
                self.on_event("collector lease lost: standing by")
            await _wait(stop, STANDBY_POLL)
            return False
        # read each round: a config reload may change it
        interval = self.ctx.config.probe.interval if fixed_interval is None else fixed_interval
        if not holding:
            # Taking collection over is said in the database at once (and proves this process can write
            # there: one that cannot gives the lease back in run_forever, so it keeps nobody from it).
            await self._write_holder()
            self.on_event(f"collector lease taken by {lease.holder}: collecting every {interval:g}s")
        lost = asyncio.Event()
        keeper = asyncio.create_task(_keep_lease(lease, lost, stop))
        try:
            round_started = time.monotonic()
            await self.run_round()
            self.failure = None  # the round's writes went through: this process can collect
            if on_round is not None:
                on_round()
            interval = self.ctx.config.probe.interval if fixed_interval is None else fixed_interval
            next_round = round_started + interval
            if next_round - time.monotonic() > ROUND_FLAG_LEAD_S:
                await self._wait_feeding(stop, lost, next_round - time.monotonic() - ROUND_FLAG_LEAD_S, interval)
            if not (stop.is_set() or lost.is_set()):
                self._early_flag = RoundFlag(self.store.path).__enter__()
                # The ingest finishes the batch it is writing and then waits: what it wrote so far is
                # read now, in the flag's lead, and the round is left with that last batch at most.
                await self._feed_traffic(lead=True)
            remaining = next_round - time.monotonic()
            if remaining > 0:
                await _wait_any(stop, lost, remaining)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            if lost.is_set():
                # Handed over (one that sees more asked) or lost: the round is over, so the lease goes
                # now and the next holder starts without waiting for our claim to expire.
                await lease.release()
        return True


async def _keep_lease(lease: Lease, lost: asyncio.Event, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(RENEW_EVERY)
        if not await lease.renew():
            lost.set()
            return


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def _wait_any(a: asyncio.Event, b: asyncio.Event, seconds: float) -> None:
    waits = [asyncio.create_task(a.wait()), asyncio.create_task(b.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in waits:
            t.cancel()


async def probe_now(
    ctx: Context, store: Store, clock: Clock = SYSTEM_CLOCK, provider_ids: Sequence[str] | None = None
) -> list[ProbeResult]:
    """Probe now (all, or the named providers) and store the results; the next round judges them."""
    providers = await apply_enablement(store, ctx.providers)
    if provider_ids:
        providers = [p for p in providers if p.id in set(provider_ids)]
    now = clock.now()
    results = await probe_all(providers, ctx.config.probe, now=now)
    await record_probe_results(store, results, ctx.config.health, now)
    return results
