"""Ingest runs beside the collector without slowing it (issue 15 §5).

- A flush writes at most `batch_size` rows per transaction, however many piled up while the previous
  one ran: another writer waits behind one short batch, never behind everything that arrived.
- While the collector's round flag is raised (a real flock on <db>-round), the ingest starts no write:
  a second connection takes SQLite's write lock at once; once lowered, everything accepted is stored.
  A flag raised too long (a round stuck on a hanging provider) holds the ingest back for a bounded time.
- The health model's percentiles stay exact for a few calls and come from the histogram past
  HEALTH_EXACT_CALLS_MAX calls in the window (the collector asks every round; reading every call of
  a busy window grew the round with the traffic).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
import time
from pathlib import Path

import pytest

from llmpulse.core.clock import ManualClock
from llmpulse.core.round_flag import RoundFlag, RoundYield
from llmpulse.core.server.ingest import IngestQueue
from llmpulse.core.store import Store
from llmpulse.core.usage import queries
from llmpulse.core.usage import recorder as recorder_module
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.recorder import Recorder
from llmpulse.core.usage.rollup import LATENCY_BOUNDS_MS

T0 = 1_795_000_000.0


def calls(n: int, first: int = 0) -> list[dict[str, object]]:
    return [
        {"provider": "openai", "model": "gpt-4o", "input_tokens": 10 + i, "request_id": f"r{first + i}", "ts": T0 - 30}
        for i in range(n)
    ]


def stored(db: object) -> int:
    with sqlite3.connect(str(db)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM usage_calls").fetchone()[0])


async def test_a_flush_writes_at_most_batch_size_rows_per_transaction(tmp_path, monkeypatch):
    sizes: list[int] = []
    real = recorder_module.ingest_rows

    async def counted(store, rows, *args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(rows))
        return await real(store, rows, *args, **kwargs)

    monkeypatch.setattr(recorder_module, "ingest_rows", counted)
    store = await Store.open(tmp_path / "b.db")
    try:
        async with Recorder(store, Pricing(), clock=ManualClock(T0), flush_interval=3600, batch_size=100) as rec:
            # 1,050 records with no chance for a flush to run in between: they pile up
            for fields in calls(1050):
                rec.record(**fields)
            assert rec.waiting == 1050
            await rec.flush()
            assert rec.waiting == 0
        assert max(sizes) <= 100 and sum(sizes) == 1050 and len(sizes) == math.ceil(1050 / 100)
        assert stored(tmp_path / "b.db") == 1050
        assert (await queries.total(store, T0 - 60, T0)).requests == 1050  # the roll-ups add up too
    finally:
        await store.close()


async def test_ingest_holds_back_while_the_collectors_round_flag_is_raised(tmp_path):
    db = tmp_path / "f.db"
    store = await Store.open(db)
    queue = IngestQueue(store, Pricing(), 100_000, clock=ManualClock(T0), flush_interval=3600, batch_size=50)
    await queue.start()
    try:
        with RoundFlag(db):
            assert queue.put_many(calls(120)) == []
            flushing = asyncio.create_task(queue.recorder.flush())
            await asyncio.sleep(0.05)
            assert not flushing.done() and stored(db) == 0  # nothing written during the round
            # the round's own write finds the lock free: no waiting at all
            other = sqlite3.connect(str(db), timeout=0)
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO alert_latency_samples (provider_id, at, latency_ms) VALUES ('openai', 1, 2)")
            other.execute("COMMIT")
            other.close()
        await asyncio.wait_for(flushing, 5)
        assert stored(db) == 120
        assert queue.round_yield.held_back_s >= 0.05
    finally:
        await queue.close()
        await store.close()


async def test_a_flag_raised_too_long_holds_ingest_back_only_a_bounded_time(tmp_path):
    db = tmp_path / "l.db"
    # The bound is long enough that "no second wait" (well under it) is told apart from a second wait
    # even when a loaded machine stalls the event loop for tens of milliseconds.
    waiter = RoundYield(db, max_s=0.3)
    try:
        with RoundFlag(db):
            started = time.monotonic()
            await asyncio.wait_for(waiter.wait(), 10)
            assert 0.3 <= time.monotonic() - started < 3.0
            started = time.monotonic()
            await waiter.wait()  # the same raise: no second wait
            assert time.monotonic() - started < 0.15
        await waiter.wait()  # seen lowered: a later round is waited for again
        with RoundFlag(db):
            waiting = asyncio.create_task(waiter.wait())
            await asyncio.sleep(0.01)
            assert not waiting.done()
        await asyncio.wait_for(waiting, 10)
    finally:
        waiter.close()


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def bucket_of(ms: float) -> tuple[float, float]:
    lo = 0.0
    for hi in LATENCY_BOUNDS_MS:
        if ms <= hi:
            return lo, float(hi)
        lo = float(hi)
    return lo, math.inf


@pytest.mark.parametrize("n", [40, 90])
async def test_health_percentiles_exact_for_few_calls_estimated_past_the_limit(tmp_path, monkeypatch, n):
    monkeypatch.setattr(queries, "HEALTH_EXACT_CALLS_MAX", 50)
    now = T0
    latencies = [float(37 + (i * 7919) % 1400) for i in range(n)]
    store = await Store.open(tmp_path / "h.db")
    try:
        async with Recorder(store, Pricing(), clock=ManualClock(now)) as rec:
            for i, ms in enumerate(latencies):
                rec.record(provider="openai", model="gpt-4o", input_tokens=5, latency_ms=ms, ts=now - 100 - i)
        stats = (await queries.provider_request_stats(store, now - 900, now))["openai"]
        assert stats.requests == n
        true95, true50 = nearest_rank(latencies, 0.95), nearest_rank(latencies, 0.5)
        if n <= 50:
            assert stats.p95_exact and stats.p95_ms == true95 and stats.p50_ms == true50
        else:
            # an estimate inside the bucket the true figure lies in, and said to be one
            assert not stats.p95_exact
            lo, hi = bucket_of(true95)
            assert stats.p95_ms is not None and lo <= stats.p95_ms <= hi
            lo, hi = bucket_of(true50)
            assert stats.p50_ms is not None and lo <= stats.p50_ms <= hi
        # a report (no limit) stays exact however many calls
        (row,) = await queries.breakdown(store, "provider", now - 900, now)
        assert row.p95_exact and row.p95_ms == true95
    finally:
        await store.close()


async def test_the_collector_raises_its_flag_before_each_round_and_lowers_it_when_stopped(tmp_path, monkeypatch):
    """run_forever raises the flag ROUND_FLAG_LEAD_S before each round (a batch being written finishes
    before the round starts) and keeps it up through the round; between rounds and once stopped it is
    down, so the ingest writes."""
    from llmpulse.core import collector as collector_module
    from llmpulse.core.collector import Collector
    from llmpulse.core.simulator.fleet import FakeProvider, Fleet
    from tests.test_collector import KEY, make_ctx

    lead = 0.06  # longer than a round on the fake fleet, so a raise this long can only be the lead's
    monkeypatch.setattr(collector_module, "ROUND_FLAG_LEAD_S", lead)

    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        ctx = make_ctx(tmp_path, fleet)
        store = await Store.open(ctx.db_path)
        looker = RoundYield(ctx.db_path)
        # Each raise and lowering as it happens (not sampled: a loaded machine oversleeps a polling loop
        # and misses raises), with whether a writer looking at the flag file saw it raised.
        raises: list[tuple[float, bool]] = []
        ups: list[float] = []  # how long each raise lasted

        class WatchedFlag(RoundFlag):
            def __enter__(self) -> RoundFlag:
                flag = super().__enter__()
                raises.append((time.monotonic(), looker.raised()))
                return flag

            def __exit__(self, *exc: object) -> None:
                ups.append(time.monotonic() - raises[-1][0])
                super().__exit__(*exc)  # type: ignore[arg-type]

        monkeypatch.setattr(collector_module, "RoundFlag", WatchedFlag)
        stop = asyncio.Event()
        collector = Collector(ctx, store, on_event=lambda _: None)
        running = asyncio.create_task(collector.run_forever(stop, interval=0.3))
        try:
            deadline = time.monotonic() + 30
            while collector.rounds < 4 and time.monotonic() < deadline:
                assert len(raises) - len(ups) in (0, 1)  # never two raises at once
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.wait_for(running, 10)
            assert all(seen for _, seen in raises)  # every raise was visible to a writer
            # rounds 2 and 3 (the first has no lead; the 4th was still running) had their flag raised
            # ahead of them, for the lead and the round
            assert collector.rounds >= 4 and len([u for u in ups if u >= lead * 0.9]) >= 2
            assert len(ups) >= 3 and len(ups) == len(raises)  # down between rounds: each round its own raise
            assert not looker.raised()  # and down once stopped
        finally:
            stop.set()
            await asyncio.gather(running, return_exceptions=True)
            looker.close()
            await store.close()


@pytest.mark.parametrize("calls_before", [20, 80])
async def test_a_crowded_first_minute_is_left_out_of_the_health_window(tmp_path, monkeypatch, calls_before):
    """The health window is exact to the second unless its first, partial minute holds more calls than
    HEALTH_EXACT_CALLS_MAX: then that minute is left out (its calls before `since` would all be read
    every round to take them off)."""
    monkeypatch.setattr(queries, "HEALTH_EXACT_CALLS_MAX", 50)
    now = T0 - T0 % 60 + 30  # the window's start falls 30 s into a minute
    since = now - 900
    first_minute = since - since % 60
    stamps = [first_minute + 1 + i * 0.1 for i in range(calls_before)]  # all before `since`
    stamps += [since + 5, since + 20]  # inside the window, in its first minute
    stamps += [first_minute + 60 + 7, now - 10]  # later minutes
    store = await Store.open(tmp_path / "w.db")
    try:
        async with Recorder(store, Pricing(), clock=ManualClock(now)) as rec:
            for i, ts in enumerate(stamps):
                rec.record(provider="openai", model="gpt-4o", input_tokens=1, ts=ts, request_id=f"c{i}")
        stats = (await queries.provider_request_stats(store, since, now))["openai"]
        crowded = calls_before + 2 > 50
        start = first_minute + 60 if crowded else since
        assert stats.requests == sum(1 for ts in stamps if start <= ts <= now)
    finally:
        await store.close()


def import_args(tmp_path, lines: list[dict[str, object]]):  # type: ignore[no-untyped-def]
    from llmpulse.core.cli import build_parser

    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "llmpulse.toml").write_text("")
    return build_parser().parse_args(
        [
            "--config",
            str(tmp_path / "llmpulse.toml"),
            "--db",
            str(tmp_path / "i.db"),
            "import",
            str(tmp_path / "in.jsonl"),
        ]
    )


@pytest.mark.parametrize("worker", [False, True], ids=["in-process", "worker-process"])
async def test_import_holds_back_while_the_collectors_round_flag_is_raised(tmp_path, monkeypatch, worker):
    from llmpulse.core import round_flag
    from llmpulse.core.cli import usage as usage_cli

    monkeypatch.setattr(usage_cli, "IMPORT_BATCH", 100)
    monkeypatch.setattr(usage_cli, "WORKER_MIN_BYTES", 0 if worker else 1 << 60)
    # the round "hangs" for as long as this test holds the flag (a real round lowers it in milliseconds)
    monkeypatch.setattr(round_flag.RoundYield.__init__, "__kwdefaults__", {"max_s": 30.0, "poll_s": 0.001})
    db = tmp_path / "i.db"
    await (await Store.open(db)).close()  # the database exists before the flag is raised beside it
    args = import_args(tmp_path, calls(250))
    with RoundFlag(db):
        importing = asyncio.create_task(args.handler(args))
        await asyncio.sleep(1.0)
        assert not importing.done() and stored(db) == 0  # nothing written while the round runs
    assert await asyncio.wait_for(importing, 30) == 0
    assert stored(db) == 250


async def import_in_a_worker_until_something_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, asyncio.Task[int]]:
    """An import of 200,000 lines judged in its worker process, in batches of 500, running until its
    first batch is stored: (the database, the running command)."""
    from llmpulse.core.cli import usage as usage_cli

    monkeypatch.setattr(usage_cli, "IMPORT_BATCH", 500)
    monkeypatch.setattr(usage_cli, "WORKER_MIN_BYTES", 0)
    db = tmp_path / "i.db"
    args = import_args(tmp_path, calls(200_000))
    importing = asyncio.create_task(args.handler(args))
    for _ in range(3000):
        await asyncio.sleep(0.01)
        with contextlib.suppress(sqlite3.OperationalError):  # not yet made
            if stored(db) > 0:
                break
    return db, importing


def assert_whole_batches_rolled_up(db: Path) -> None:
    """What is stored is the file's first lines, each once, in whole batches of 500, and the roll-ups
    hold exactly those calls."""
    with sqlite3.connect(str(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n, tokens = conn.execute("SELECT COUNT(*), SUM(input_tokens) FROM usage_calls").fetchone()
        assert 0 < n < 200_000 and n % 500 == 0
        assert tokens == sum(10 + i for i in range(n))  # the first n lines, each once
        rolled = conn.execute(
            "SELECT SUM(requests), SUM(input_tokens) FROM usage_rollups WHERE grain = 'd' AND dim = 'total'"
        ).fetchone()
        assert tuple(rolled) == (n, tokens)


async def test_an_interrupted_import_leaves_whole_batches_and_no_worker(tmp_path, monkeypatch):
    """Ctrl-C (asyncio.run cancels the command) mid-import: what is stored is whole batches with
    their roll-ups, the database is sound, and the worker process is gone."""
    import psutil

    db, importing = await import_in_a_worker_until_something_is_stored(tmp_path, monkeypatch)
    importing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await importing
    assert not [p for p in psutil.Process().children(recursive=True) if "line_import" in " ".join(p.cmdline())]
    assert_whole_batches_rolled_up(db)


async def test_an_import_whose_worker_dies_says_so_and_keeps_what_it_stored(tmp_path, monkeypatch):
    import psutil

    from llmpulse.core.cli.common import CliError

    db, importing = await import_in_a_worker_until_something_is_stored(tmp_path, monkeypatch)
    (worker,) = [p for p in psutil.Process().children() if "line_import" in " ".join(p.cmdline())]
    worker.kill()
    with pytest.raises(CliError, match="the process judging the lines ended unexpectedly") as failed:
        await asyncio.wait_for(importing, 30)
    assert failed.value.exit_code == 1
    assert_whole_batches_rolled_up(db)
