"""The collector: a round end to end on fake providers, the lease hand-over between processes' collectors,
and the daemon stopping cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time

from llmpulse.core.collector import Collector, probe_now
from llmpulse.core.config import load_context
from llmpulse.core.lease import read_lease
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.snapshot import build_snapshot
from llmpulse.core.store import Store
from tests.cli_helpers import run_cli, start_cli

KEY = "sk-proj-CollectorSecret0123456789abcd"


def make_ctx(tmp_path, fleet: Fleet, extra: str = ""):
    lines = ["[probe]", 'interval = "1s"', 'timeout = "0.5s"', 'slow = "2s"']
    for pid in fleet.providers:
        lines += [f"[providers.{pid}]", f'base_url = "{fleet.base_url(pid)}"']
    (tmp_path / "llmpulse.toml").write_text("\n".join(lines) + "\n" + extra)
    env = {"OPENAI_API_KEY": KEY, "GROQ_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY}
    return load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "c.db"), environ=env)


async def test_round_probes_judges_and_alerts_while_one_provider_hangs(tmp_path):
    with Fleet(
        [
            FakeProvider("openai", key=KEY),
            FakeProvider("groq", kind="groq", key=KEY, behaviour="hang"),
            FakeProvider("anthropic", kind="anthropic", key="sk-ant-some-other-key-000000"),
        ]
    ) as fleet:
        ctx = make_ctx(tmp_path, fleet)
        store = await Store.open(ctx.db_path)
        events: list[str] = []
        try:
            collector = Collector(ctx, store, on_event=events.append)
            # The hang never answers: the round can end only because the probe's own 0.5 s deadline cut
            # it (its result says so below). The 30 s guard only stops a regression from hanging the suite.
            report = await asyncio.wait_for(collector.run_round(), 30)
            assert report.errors == []
            by_id = {r.provider_id: r for r in report.probes}
            assert by_id["openai"].status == "healthy"
            assert by_id["groq"].error_kind == "timeout" and by_id["anthropic"].error_kind == "auth"
            assert any("provider groq new -> failed (timeout" in e for e in events)
            snap = await build_snapshot(store, ctx, time.time())
            assert (snap.header.providers_healthy, snap.header.providers_total) == (1, 3)
            rules = {a.rule for a in snap.alerts}
            assert snap.alerts and rules, "a failed provider must raise an alert"
            assert snap.collector.last_round_at is not None
            results = await probe_now(ctx, store, provider_ids=["openai"])
            assert [r.provider_id for r in results] == ["openai"]
        finally:
            await store.close()
        assert KEY.encode() not in (tmp_path / "c.db").read_bytes()


async def test_exactly_one_collector_and_hand_over(tmp_path):
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        ctx = make_ctx(tmp_path, fleet)
        stores = [await Store.open(ctx.db_path) for _ in range(3)]
        a = Collector(ctx, stores[0], on_event=lambda _: None)
        b = Collector(ctx, stores[1], on_event=lambda _: None)
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        ta = asyncio.create_task(a.run_forever(stop_a, interval=0.2))
        await asyncio.sleep(0.3)
        tb = asyncio.create_task(b.run_forever(stop_b, interval=0.2))
        try:
            await asyncio.sleep(1.2)
            assert a.rounds >= 3 and b.rounds == 0
            holder = (await read_lease(stores[2])).holder
            stop_a.set()
            await ta  # releases the lease on the way out
            deadline = time.monotonic() + 5
            while b.rounds == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert b.rounds >= 1, "the standby collector must take over within seconds"
            assert (await read_lease(stores[2])).holder not in (None, holder)
        finally:
            stop_a.set()
            stop_b.set()
            await asyncio.gather(ta, tb, return_exceptions=True)
            for s in stores:
                await s.close()


def test_daemon_logs_events_and_stops_on_sigterm(tmp_path):
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        make_ctx(tmp_path, fleet)
        proc = start_cli(tmp_path, "--db", str(tmp_path / "d.db"), "daemon", env={"OPENAI_API_KEY": KEY})
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if (tmp_path / "d.db").exists():
                    import sqlite3

                    try:
                        with sqlite3.connect(tmp_path / "d.db") as db:
                            if db.execute("SELECT COUNT(*) FROM probe_results").fetchone()[0] >= 2:
                                break
                    except sqlite3.OperationalError:
                        pass
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert "provider openai new -> healthy" in err and "SIGTERM" in err and "daemon stopped" in err
        assert "Traceback" not in err and KEY not in err
        import sqlite3

        with sqlite3.connect(tmp_path / "d.db") as db:
            assert db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0  # nothing in the database
        from llmpulse.core.lease import lease_path, read_lease_file

        lease = read_lease_file(lease_path(tmp_path / "d.db"))
        assert lease is None or not lease.holder  # released on the way out


def test_demo_headless_runs_every_part(tmp_path):
    # Budgets, migration and alerts come from the demo's setup and the collector's first round (it starts
    # at once); three seconds of the headless run show every part without waiting for the next round.
    r = run_cli(tmp_path, "demo", "--headless", "3", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = r.stdout.strip().splitlines()[-1]
    assert summary.startswith("demo: ") and "budgets" in summary and "1 migration" in summary
    assert "Traceback" not in r.stderr
