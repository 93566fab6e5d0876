"""The collector's lease lives in a file beside the database, not in it.

Renewed every 2 s as a database write, it moved SQLite's `PRAGMA data_version`, so every dashboard on
the database read its whole snapshot again every 2 s while nothing it shows had changed. Now an idle
system (a collector holding the lease between rounds) causes no snapshot re-read, while viewers still
say who collects and notice at once when it stops; one that sees more providers still takes collection
over, never running a round beside the holder's; a holder that dies is replaced once its claim expires.

Real parts: a SQLite file, Collectors probing the simulator's providers on 127.0.0.1, the lease file and
its flock, the SnapshotReader the dashboard uses.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import llmpulse.core.collector as collector_module
from llmpulse.core.clock import ManualClock
from llmpulse.core.collector import Collector
from llmpulse.core.config import load_context
from llmpulse.core.lease import DEFAULT_TTL, Lease, lease_path, read_lease, read_lease_file
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.snapshot import SnapshotReader
from llmpulse.core.store import Store

KEY = "sk-proj-LeaseBesideTheDb0123456789abcd"


def contexts(tmp_path, fleet: Fleet, interval: str = "30s"):
    lines = ["[probe]", f'interval = "{interval}"', 'timeout = "0.5s"']
    for pid in fleet.providers:
        lines += [f"[providers.{pid}]", f'base_url = "{fleet.base_url(pid)}"']
    (tmp_path / "llmpulse.toml").write_text("\n".join(lines) + "\n")
    common = {"config_path": str(tmp_path / "llmpulse.toml"), "db_path": str(tmp_path / "shared.db")}
    full = load_context(**common, environ={"OPENAI_API_KEY": KEY, "GROQ_API_KEY": KEY})
    partial = load_context(**common, environ={"OPENAI_API_KEY": KEY})
    return full, partial


async def test_lease_renewals_cause_no_snapshot_reread_and_viewers_still_see_the_collector(tmp_path, monkeypatch):
    monkeypatch.setattr(collector_module, "RENEW_EVERY", 0.05)  # forty renewals in the idle window below
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        ctx, _ = contexts(tmp_path, fleet)
        store = await Store.open(ctx.db_path)
        viewer = await Store.open_reader(ctx.db_path)
        try:
            collector = Collector(ctx, store, on_event=lambda _: None)
            stop = asyncio.Event()
            task = asyncio.create_task(collector.run_forever(stop))  # a round, then 30 s of holding on
            while collector.rounds < 1:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # the round's writes are all committed
            reader = SnapshotReader(viewer)
            first = await reader.read(ctx, time.time())
            assert first.collector.alive and first.collector.holder == collector.lease_holder
            (version,) = await viewer.fetchone("PRAGMA data_version")
            expires = (await read_lease(viewer)).expires_at
            for _ in range(20):
                await asyncio.sleep(0.1)
                snap = await reader.read(ctx, time.time())
                assert snap.collector.alive and snap.collector.holder == collector.lease_holder
            assert (await read_lease(viewer)).expires_at > expires + 1.0  # it did renew, many times
            assert (await viewer.fetchone("PRAGMA data_version"))[0] == version  # not in the database
            assert reader.builds == 1, "a lease renewal made the viewer read its snapshot again"
            assert collector.rounds == 1
            # The collector stops: the viewer says so at its next read, still without reading again.
            stop.set()
            await task
            snap = await reader.read(ctx, time.time())
            assert not snap.collector.alive and "no collector since" in snap.collector.summary
        finally:
            await viewer.close()
            await store.close()


async def test_one_that_sees_more_takes_over_without_a_round_beside_the_holders(tmp_path, monkeypatch):
    monkeypatch.setattr(collector_module, "RENEW_EVERY", 0.1)
    with Fleet([FakeProvider("openai", key=KEY), FakeProvider("groq", kind="groq", key=KEY)]) as fleet:
        full_ctx, partial_ctx = contexts(tmp_path, fleet, interval="200ms")
        stores = [await Store.open(full_ctx.db_path) for _ in range(3)]
        rounds: list[tuple[str, float, float]] = []

        def timed(name: str, c: Collector) -> None:
            plain = c.run_round

            async def run_round():  # type: ignore[no-untyped-def]
                started = time.monotonic()
                await asyncio.sleep(0.05)  # a round that takes a while: room for an overlap to show
                report = await plain()
                rounds.append((name, started, time.monotonic()))
                return report

            c.run_round = run_round  # type: ignore[method-assign]

        partial = Collector(partial_ctx, stores[0], on_event=lambda _: None)
        full = Collector(full_ctx, stores[1], on_event=lambda _: None)
        timed("partial", partial)
        timed("full", full)
        stops = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(partial.run_forever(stops[0]))]
        try:
            while partial.rounds < 2:
                await asyncio.sleep(0.02)
            tasks.append(asyncio.create_task(full.run_forever(stops[1])))
            deadline = time.monotonic() + 10
            while full.rounds < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert full.rounds >= 3, "the one that sees more must get collection"
            lease = await read_lease(stores[2])
            assert lease.holder == full.lease_holder and lease.sees == 2
            handed = partial.rounds
            await asyncio.sleep(0.6)
            assert partial.rounds == handed  # it stands by
        finally:
            for s in stops:
                s.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for s in stores:
                await s.close()
    spans = sorted((start, end, name) for name, start, end in rounds)
    for (_s1, e1, n1), (s2, _e2, n2) in itertools.pairwise(spans):
        assert s2 >= e1, f"{n1}'s round and {n2}'s overlapped"


async def test_a_holder_that_stops_renewing_is_replaced_once_its_claim_expires(tmp_path):
    store = await Store.open(tmp_path / "l.db")
    try:
        clock = ManualClock(1_800_000_000.0)
        dead = Lease(store, holder="dead", clock=clock)
        other = Lease(store, holder="other", clock=clock)
        assert await dead.acquire()
        assert not await other.acquire()
        clock.advance(DEFAULT_TTL - 0.5)
        assert not await other.acquire()  # not yet: it may only be slow
        clock.advance(1.0)
        assert await other.acquire()  # it stopped renewing (died, hung): replaced
        assert not await dead.renew()  # back from a hang, it finds out and stands by
        info = read_lease_file(lease_path(tmp_path / "l.db"))
        assert info is not None and info.holder == "other"
    finally:
        await store.close()
    # the database itself holds no lease
    import sqlite3

    with sqlite3.connect(tmp_path / "l.db") as db:
        assert db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
