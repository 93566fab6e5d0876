"""Issue 13 §5: a demo that looks like a real fleet — budgets in the hundreds and thousands set from the
history's rate, live traffic at that same rate, a provider whose key is refused fails its traffic too,
and the temporary files go when the demo ends."""

from __future__ import annotations

import asyncio
import random
import time

from llmpulse.core.simulator.demo import BAD_KEY, DAY, REQUESTS_PER_DAY, Demo, backfill, busyness, with_fallback


def test_busyness_averages_to_one_over_a_day():
    day_start = 1_767_225_600.0  # a UTC midnight
    assert sum(busyness(day_start + h * 3600) for h in range(24)) / 24 == __import__("pytest").approx(1.0)


def test_a_refused_key_fails_every_request_and_falls_back():
    rng = random.Random(3)
    now = 1_767_225_600.0
    records = list(backfill(rng, now, now - 21 * DAY, per_day=600))
    refused = [r for r in records if r["provider"] in BAD_KEY]
    assert refused and all(r["status"] == "error" and r["error_kind"] == "auth" for r in refused)
    assert all(r["input_tokens"] == 0 for r in refused)  # turned away before any work: nothing billed
    fallbacks = [r for r in records if r.get("fallback_from") in BAD_KEY]
    assert len(fallbacks) == len(refused) and all(r["provider"] == "openai" for r in fallbacks)
    assert with_fallback(rng, dict(refused[0])) is not None


def test_budgets_are_set_from_the_rate_and_live_traffic_keeps_it(tmp_path):
    with Demo(str(tmp_path / "demo.db"), backfill_per_day=REQUESTS_PER_DAY) as demo:
        ctx = demo.context()
        limits = {b.scope: b.limit_usd for b in ctx.config.usage.budgets}
        assert limits and all(limit >= 100 for limit in limits.values()), limits
        assert limits["total"] >= 1000

        # Live traffic at the history's rate: sped up 2000x (per_day) for a 2 s sample, the count must
        # be what per_day and the hour's busyness say, within five standard deviations.
        from llmpulse.core.store import Store

        async def count() -> int:
            store = await Store.open(demo.db_path)
            try:
                return int((await store.fetchone("SELECT COUNT(*) FROM usage_calls"))[0])
            finally:
                await store.close()

        before = asyncio.run(count())
        demo.per_day = REQUESTS_PER_DAY * 2000

        async def run_for(seconds: float) -> float:
            stop = asyncio.Event()
            task = asyncio.create_task(demo.live_traffic(stop))
            started = time.monotonic()
            await asyncio.sleep(seconds)
            stop.set()
            await task
            return time.monotonic() - started

        elapsed = asyncio.run(run_for(2.0))
        calls = asyncio.run(count()) - before
        primary = demo.per_day / DAY * busyness(time.time()) * elapsed
        # each call may bring its fallback (DeepSeek's always): between primary and about 1.2x primary
        assert primary - 5 * primary**0.5 <= calls <= 1.25 * primary + 5 * primary**0.5, (calls, primary)
    assert not demo.dir.exists()


def test_the_demo_removes_its_temporary_database_after_a_hang_up(tmp_path):
    """`llmpulse demo` in a real pseudo-terminal; the terminal goes away (the SSH connection drops): the
    process exits and leaves no llmpulse-demo-* directory behind, whichever way it had to exit."""
    import os
    import pty
    import select
    import signal
    import sys

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TMPDIR"] = str(tmp)
        os.environ["TERM"] = "xterm-256color"
        os.execv(sys.executable, [sys.executable, "-m", "llmpulse.core.cli", "demo"])
    drawn, deadline = b"", time.monotonic() + 90
    while time.monotonic() < deadline and b"Providers" not in drawn:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                drawn += os.read(fd, 65536)
            except OSError:
                break
    assert b"Providers" in drawn, drawn[-500:]
    assert [p.name for p in tmp.iterdir() if p.name.startswith("llmpulse-demo-")]  # there while it runs
    os.close(fd)  # hung up
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not os.waitpid(pid, os.WNOHANG)[0]:
        time.sleep(0.05)
    else:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the demo did not exit after its terminal went away")
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("llmpulse-demo-")]
