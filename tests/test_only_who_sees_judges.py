"""Only a process that can see a provider judges it (issue 18 §1).

The daemon (with the keys) finds OpenAI failing and opens its alerts. Then a dashboard without the
daemon's environment runs on the same database: it must not resolve, open or announce anything about
providers it cannot see, must not take collection over, and must show OpenAI as the daemon left it —
failed, with its age — not as "no key". When nothing collects, it says so."""

from __future__ import annotations

import asyncio
import time

from llmpulse.core.clock import ManualClock
from llmpulse.core.collector import Collector
from llmpulse.core.config import load_context
from llmpulse.core.lease import Lease, read_lease
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.snapshot import build_snapshot
from llmpulse.core.store import Store

KEY = "sk-proj-OnlyWhoSeesJudges0123456789ab"
T0 = 1_800_000_000.0


def _contexts(tmp_path, fleet: Fleet):
    lines = ["[probe]", 'interval = "30s"', 'timeout = "0.5s"']
    for pid in fleet.providers:
        lines += [f"[providers.{pid}]", f'base_url = "{fleet.base_url(pid)}"']
    (tmp_path / "llmpulse.toml").write_text("\n".join(lines) + "\n")
    common = {"config_path": str(tmp_path / "llmpulse.toml"), "db_path": str(tmp_path / "shared.db")}
    daemon = load_context(**common, environ={"OPENAI_API_KEY": KEY, "GROQ_API_KEY": KEY})
    viewer = load_context(**common, environ={})  # over SSH, without the daemon's environment
    return daemon, viewer


async def _outbox(store: Store) -> list[tuple[int, str]]:
    return [(r[0], r[1]) for r in await store.fetchall("SELECT alert_id, event FROM alert_outbox ORDER BY id")]


async def test_a_keyless_viewer_never_resolves_what_it_cannot_see(tmp_path):
    with Fleet(
        [FakeProvider("openai", key=KEY, behaviour="server_error"), FakeProvider("groq", kind="groq", key=KEY)]
    ) as fleet:
        daemon_ctx, viewer_ctx = _contexts(tmp_path, fleet)
        store = await Store.open(daemon_ctx.db_path)
        try:
            clock = ManualClock(T0)
            daemon = Collector(daemon_ctx, store, clock, on_event=lambda _: None)
            for _ in range(3):
                await daemon.run_round()
                clock.advance(30)
            opened = {a.fingerprint: a for a in await daemon.engine.open_alerts()}
            assert "provider_down:openai" in opened
            outbox_before = await _outbox(store)
            probes_before = (await store.fetchone("SELECT COUNT(*) FROM probe_results"))[0]

            # The daemon has stopped; a keyless dashboard runs rounds of its own on the same file.
            viewer = Collector(viewer_ctx, store, clock, on_event=lambda _: None)
            for _ in range(3):
                clock.advance(30)
                report = await viewer.run_round()
                assert not report.alert_events, report.alert_events
            still = {a.fingerprint: a for a in await viewer.engine.open_alerts()}
            assert opened.keys() <= still.keys()
            assert all(still[fp].state == opened[fp].state for fp in opened)
            new_notices = (await _outbox(store))[len(outbox_before) :]
            assert not [n for n in new_notices if n[1] == "resolved"], new_notices
            # Nothing it cannot see was written as "unknown" over the daemon's verdict.
            assert (await store.fetchone("SELECT COUNT(*) FROM probe_results"))[0] == probes_before

            snap = await build_snapshot(store, viewer_ctx, clock.now())
            openai = next(h for h in snap.providers if h.provider_id == "openai")
            assert openai.status == "failed" and not openai.configured
            assert openai.verdict_at is not None and clock.now() - openai.verdict_at >= 90  # its age is known
            assert openai.stale  # nobody has judged it for three rounds
            assert snap.header.providers_total == 2  # not "0/0 healthy"
        finally:
            await store.close()


async def test_collection_goes_back_to_the_daemon_and_nothing_collecting_is_said(tmp_path):
    with Fleet([FakeProvider("openai", key=KEY), FakeProvider("groq", kind="groq", key=KEY)]) as fleet:
        daemon_ctx, viewer_ctx = _contexts(tmp_path, fleet)
        store = await Store.open(daemon_ctx.db_path)
        lease_store = await Store.open(daemon_ctx.db_path)
        try:
            # The keyless dashboard collects while nobody else does (budgets need no key) ...
            viewer = Collector(viewer_ctx, store, on_event=lambda _: None)
            stop_viewer = asyncio.Event()
            vtask = asyncio.create_task(viewer.run_forever(stop_viewer, interval=0.2))
            while viewer.rounds < 1:
                await asyncio.sleep(0.05)
            assert (await read_lease(lease_store)).sees == 0
            # ... and the daemon, which sees both providers, takes collection back from it.
            daemon_store = await Store.open(daemon_ctx.db_path)
            daemon = Collector(daemon_ctx, daemon_store, on_event=lambda _: None)
            stop_daemon = asyncio.Event()
            dtask = asyncio.create_task(daemon.run_forever(stop_daemon, interval=0.2))
            while daemon.rounds < 2:
                await asyncio.sleep(0.05)
            lease = await read_lease(lease_store)
            assert lease.holder == daemon.lease_holder and lease.sees == 2
            rounds = viewer.rounds
            await asyncio.sleep(0.6)
            assert viewer.rounds <= rounds + 1  # it stood by (at most the round it was in)
            snap = await build_snapshot(store, viewer_ctx, time.time())
            assert snap.collector.alive and sorted(snap.collector.sees) == ["groq", "openai"]
            # Everyone stops: every viewer says nothing collects, and how old the data is.
            stop_daemon.set()
            stop_viewer.set()
            await asyncio.gather(dtask, vtask)
            await daemon_store.close()
            snap = await build_snapshot(store, viewer_ctx, time.time() + 240)
            assert not snap.collector.alive
            assert snap.collector.summary.startswith("no collector since ") and "data 4m" in snap.collector.summary
            assert all(h.stale for h in snap.providers if h.verdict_at is not None)
        finally:
            await lease_store.close()
            await store.close()


async def test_a_process_that_sees_more_takes_collection_over(tmp_path):
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        daemon_ctx, _ = _contexts(tmp_path, fleet)
        stores = [await Store.open(daemon_ctx.db_path) for _ in range(2)]
        try:
            partial = Lease(stores[0], holder="partial", sees=1)
            full = Lease(stores[1], holder="full", sees=2)
            assert await partial.acquire()
            # Sees more: asks for it — but never runs a round beside the holder's.
            assert not await full.acquire()
            assert (await read_lease(stores[0])).wants_holder == "full"
            assert not await partial.renew()  # the partial one finds out (mid-round: it releases after)
            assert not await full.acquire()  # still the partial one's until it released
            await partial.release()
            assert not await partial.acquire()  # the asker comes first
            assert await full.acquire()  # handed over
            assert (await read_lease(stores[0])).holder == "full"
            blind = Lease(stores[0], holder="blind", sees=0)
            assert not await blind.acquire()  # sees less than the holder: waits
            await full.release()
            assert await blind.acquire()  # nobody else collects: it may (it judges no provider)
        finally:
            for s in stores:
                await s.close()


async def test_the_snapshot_says_when_this_process_cannot_collect(tmp_path):
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        daemon_ctx, _ = _contexts(tmp_path, fleet)
        store = await Store.open(daemon_ctx.db_path)
        reader = await Store.open_reader(daemon_ctx.db_path)
        try:
            # A read-only connection stands in for any database that refuses this process's writes.
            collector = Collector(daemon_ctx, reader, on_event=lambda _: None)
            stop = asyncio.Event()
            task = asyncio.create_task(collector.run_forever(stop, interval=0.2, lease_store=reader))
            while collector.failure is None:
                await asyncio.sleep(0.05)
            snap = await build_snapshot(store, daemon_ctx, time.time(), own_failure=collector.failure)
            assert "this process cannot collect" in snap.collector.summary
            assert "readonly" in snap.collector.summary
            # and it keeps nobody else from collecting: it gave the lease back
            lease = await read_lease(store)
            assert lease is None or not lease.alive(time.time())
            assert collector.rounds == 0
            stop.set()
            await task
        finally:
            await reader.close()
            await store.close()
