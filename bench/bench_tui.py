"""Dashboard benchmark (issues 6 §6 and 14), with 1,000,000 usage records in the database, run twice:
with 13 providers, and with 200 providers and 500 open alerts; the collector runs in both.

Targets: idle CPU with a 1 s refresh under 3% of a core; resident memory under 120 MB; first paint under
1.5 s; from pressing `a` to the first frame showing "acked" under 100 ms (the key event delivered as the
terminal driver delivers it, the frame timed when the app hands it to the terminal; Pilot.press's own
figure is printed too, but it also waits until the whole process has been idle a while, collector and
snapshot thread included, so it is not what a user sees); no event-loop stall (the longest a timer
fired late while idle) over 100 ms. Each figure is printed with a baseline measured in the same
run on the same machine: a bare Textual app (one DataTable) for CPU, memory, first paint, a cell update
and stalls; a raw-records scan for the snapshot's queries; a plain insert for ingest.

    python bench/bench_tui.py [--records 1000000] [--idle 20] [--db PATH] [--rebuild] [--only small|large]
                              [--profile PREFIX]   # cProfile of each app's idle window, for pstats

The 1M-record database is built once (a minute or two) and reused from --db on later runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synthetic_usage import KEY, KEY_ENVS, ingest_records, usage_records  # noqa: E402 (after the path is set)

from llmpulse.core.catalog import CATALOG  # noqa: E402 (after the path is set)

# Every built-in provider, one fake each.
KINDS = [spec.id for spec in CATALOG]
MODELS = [
    "gpt-4o",
    "gpt-4.1",
    "gpt-4o-mini",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "deepseek-chat",
    "mistral-small-latest",
    "llama-3.3-70b-versatile",
]


# -- the database ------------------------------------------------------------------------------------
def build_db(path: Path, n: int) -> dict:
    from llmpulse.core.store import Store
    from llmpulse.core.usage.pricing import Pricing

    async def run() -> dict:
        store = await Store.open(path)
        pricing = Pricing(local_providers=["ollama", "localai"])
        calls = usage_records(n, providers=KINDS, models=MODELS, days=30, seed=1, id_prefix="b")
        ingest_s = await ingest_records(store, calls, pricing)
        # Baseline: the same rows, raw insert only (no pricing, no dedupe, no roll-ups)
        await store.execute("CREATE TABLE IF NOT EXISTS bench_raw AS SELECT * FROM usage_records WHERE 0")
        rows = await store.fetchall("SELECT * FROM usage_records LIMIT 200000")
        started = time.perf_counter()
        async with store.transaction() as conn:
            await conn.executemany(
                f"INSERT INTO bench_raw VALUES ({', '.join('?' for _ in rows[0])})", [tuple(r) for r in rows]
            )
        raw_s = (time.perf_counter() - started) * n / len(rows)
        await store.execute("DROP TABLE bench_raw")
        await store.close()
        return {"ingest_s": ingest_s, "raw_insert_s": raw_s}

    return asyncio.run(run())


async def count_records(path: Path) -> int:
    from llmpulse.core.store import Store

    store = await Store.open(path)
    try:
        return (await store.fetchone("SELECT COUNT(*) FROM usage_records"))[0]
    finally:
        await store.close()


async def query_times(ctx) -> dict:
    from zoneinfo import ZoneInfo

    from llmpulse.core.snapshot import build_snapshot
    from llmpulse.core.store import Store
    from llmpulse.core.usage.queries import period_start

    store = await Store.open(ctx.db_path)
    try:
        now = time.time()
        await build_snapshot(store, ctx, now)
        started = time.perf_counter()
        for _ in range(5):
            await build_snapshot(store, ctx, time.time())
        snap_ms = (time.perf_counter() - started) / 5 * 1000
        month = period_start(now, "month", ZoneInfo("UTC"))
        started = time.perf_counter()
        await store.fetchall(
            "SELECT provider, COUNT(*), SUM(cost_usd) FROM usage_records WHERE ts >= ? GROUP BY provider", (month,)
        )
        scan_ms = (time.perf_counter() - started) * 1000
    finally:
        await store.close()
    return {"snapshot_ms": snap_ms, "raw_scan_ms": scan_ms}


# -- one measured app, in a process of its own -------------------------------------------------------
async def longest_stall(seconds: float, tick: float = 0.01) -> float:
    """Sleep in `tick` steps for `seconds`; the most any step overshot is how long the event loop was
    blocked at worst (a frozen screen and deaf keys for that long), in ms."""
    worst = 0.0
    end = time.perf_counter() + seconds
    while (started := time.perf_counter()) < end:
        await asyncio.sleep(tick)
        worst = max(worst, time.perf_counter() - started - tick)
    return worst * 1000


def phase(kind: str, config: str, db: str, idle: float, profile: str | None = None) -> dict:
    """`profile`: write a cProfile of the idle window there (what the idle CPU is spent on)."""
    import cProfile

    import psutil
    from textual.app import App
    from textual.widgets import DataTable

    proc = psutil.Process()
    result: dict = {}

    if kind == "baseline":

        class Bare(App):
            def compose(self):
                yield DataTable()

            def on_mount(self):
                table = self.query_one(DataTable)
                table.add_columns("a", "b")
                table.add_row("1", "firing", key="1")
                self.set_interval(1.0, lambda: table.update_cell("1", table.ordered_columns[1].key, "tick"))

        app = Bare()
        ready = lambda: app.query_one(DataTable).row_count == 1  # noqa: E731

        async def act(pilot):
            """A key press that updates one cell: the same path without the core."""
            table = app.query_one(DataTable)
            app.bind("a", "ack_bare")
            app.action_ack_bare = lambda: table.update_cell("1", table.ordered_columns[1].key, "acked")
            times, frames = [], []
            for _ in range(5):
                table.update_cell("1", table.ordered_columns[1].key, "firing")
                await pilot.pause(0.2)
                frames.append(await key_to_frame(app, "a", lambda: table.get_cell_at((0, 1)) == "acked"))
                table.update_cell("1", table.ordered_columns[1].key, "firing")
                await pilot.pause(0.2)
                started = time.perf_counter()
                await pilot.press("a")
                while table.get_cell_at((0, 1)) != "acked":
                    await asyncio.sleep(0.0005)
                times.append((time.perf_counter() - started) * 1000)
            return median(times), median(frames)
    else:
        from llmpulse.core.config import load_context
        from llmpulse.tui.app import PulseApp
        from llmpulse.tui.core_backend import CoreBackend

        ctx = load_context(config_path=config, db_path=db, environ={**os.environ})
        backend = CoreBackend(ctx) if kind == "app" else SnapshotOnceBackend(ctx)
        app = PulseApp(backend, tz=UTC, actor="bench", refresh=1.0, collect=True, watch_terminal=False)
        ready = lambda: app.polls >= 1  # noqa: E731

        async def act(pilot):
            """Median of five acks, each from the key press to the row saying "acked"."""
            await pilot.press("3")
            table = app.dashboard.panels[3].table
            times: list[float] = []
            frames: list[float] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(table.ordered_rows) < 5:  # the first round's alerts
                await pilot.pause(0.1)

            def acked(key):  # type: ignore[no-untyped-def]
                return lambda: table.get_cell(key, "state").plain.startswith("acked")

            tried: set[str] = set()  # a snapshot served again may show an acked alert firing
            for attempt in range(10):
                await pilot.press("3")  # a/s/r act only with the Alerts panel focused
                firing = [
                    r.key.value
                    for r in table.ordered_rows
                    if r.key.value not in tried and table.get_cell(r.key.value, "state").plain.startswith("firing")
                ]
                if not firing:
                    break
                table.move_cursor(row=table.get_row_index(firing[0]))
                tried.add(firing[0])
                await pilot.pause(0.2)
                if attempt % 2:  # the two ways of measuring take turns over the firing alerts
                    frames.append(await key_to_frame(app, "a", acked(firing[0])))
                else:
                    started = time.perf_counter()
                    await pilot.press("a")
                    give_up = time.monotonic() + 5
                    while not acked(firing[0])():
                        if time.monotonic() > give_up:
                            raise SystemExit(f"alert {firing[0]} never showed acked: {app.last_error}")
                        await asyncio.sleep(0.0005)
                    times.append((time.perf_counter() - started) * 1000)
                await pilot.pause(0.2)
            return median(times), median(frames)

    async def run():
        started = time.perf_counter()
        async with app.run_test(size=(160, 50)) as pilot:
            while not ready():
                await pilot.pause(0.01)
            result["first_paint_s"] = time.perf_counter() - started
            await pilot.pause(1.0)
            profiler = cProfile.Profile() if profile else None
            cpu0, wall0 = proc.cpu_times(), time.perf_counter()
            reader = getattr(getattr(app, "backend", None), "_reader", None)
            builds0 = reader.builds if reader is not None else 0
            if profiler is not None:
                profiler.enable()
            stall = await longest_stall(idle)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile)
            cpu1, wall1 = proc.cpu_times(), time.perf_counter()
            reader = getattr(getattr(app, "backend", None), "_reader", None)
            # snapshots read in full while idle: each database commit (a round, a lease renewal) costs one
            result["idle_snapshot_builds"] = (reader.builds - builds0) if reader is not None else -1
            result["stall_ms"] = stall
            used = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
            result["idle_cpu_pct"] = used / (wall1 - wall0) * 100
            result["rss_mb"] = proc.memory_info().rss / 2**20
            if profile:
                profiler = cProfile.Profile()
                profiler.enable()
            result["act_ms"], result["frame_ms"] = await act(pilot)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile.replace(".prof", "-act.prof"))

    asyncio.run(run())
    return result


def snapshot_once_backend():  # type: ignore[no-untyped-def]
    """The real backend, but the core's snapshot is built once and served again every second (clock
    moved on): what the dashboard alone costs, apart from building snapshots (the core's part)."""
    import dataclasses

    from llmpulse.tui.core_backend import CoreBackend

    class SnapshotOnce(CoreBackend):
        built = None

        async def snapshot(self):  # type: ignore[no-untyped-def]
            if self.built is None:
                self.built = await super().snapshot()
            now = time.time()
            header = dataclasses.replace(self.built.header, refreshed_at=now)
            return dataclasses.replace(self.built, refreshed_at=now, header=header)

        def with_alerts(self, snapshot, alerts):  # type: ignore[no-untyped-def]
            self.built = super().with_alerts(snapshot, alerts)
            return self.built

    return SnapshotOnce


def SnapshotOnceBackend(ctx):  # type: ignore[no-untyped-def]
    return snapshot_once_backend()(ctx)


def run_phase(kind: str, config: str, db: str, idle: float, env: dict, profile: str | None = None) -> dict:
    command = [sys.executable, __file__, "--phase", kind, "--config", config, "--db", db, "--idle", str(idle)]
    if profile:
        command += ["--profile", profile]
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        timeout=idle + 180,
    )
    if out.returncode != 0:
        raise SystemExit(f"{kind} phase failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--idle", type=float, default=20.0)
    ap.add_argument("--db", default=str(Path(tempfile.gettempdir()) / "llmpulse-bench-1m.db"))
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--phase", choices=("app", "dashboard", "baseline"))
    ap.add_argument("--config")
    ap.add_argument("--only", choices=("small", "large"), help="run one of the two fleets")
    ap.add_argument("--profile", metavar="PREFIX", help="cProfile each app's idle window to PREFIX-<phase>.prof")
    args = ap.parse_args()
    if args.phase:
        import faulthandler

        faulthandler.dump_traceback_later(args.idle + 120, exit=True)  # a hang shows where, not just a timeout
        print(json.dumps(phase(args.phase, args.config, args.db, args.idle, args.profile)), flush=True)
        # The figures are out. A database thread some part of the app left open would keep the
        # interpreter from exiting (seen once: an aiosqlite worker after quit); it does not change them.
        os._exit(0)

    db = Path(args.db)
    if args.rebuild and db.exists():
        for p in db.parent.glob(db.name + "*"):
            p.unlink()
    built = None
    if not db.exists() or asyncio.run(count_records(db)) < args.records:
        for p in db.parent.glob(db.name + "*"):
            p.unlink()
        print(f"building {db} with {args.records:,} usage records ...", flush=True)
        built = build_db(db, args.records)

    from llmpulse.core.config import load_context

    queries = None
    results = []
    scenarios = {"small": [SMALL], "large": [LARGE]}.get(args.only or "", [SMALL, LARGE])
    for scenario in scenarios:
        profile = f"{args.profile}-{scenario.key}" if args.profile else None
        with scenario.fleet() as fleet, tempfile.TemporaryDirectory(prefix="llmpulse-bench-") as tmp:
            workdir = Path(tmp)  # the config; removed after the scenario (each run left one behind)
            config = workdir / "llmpulse.toml"
            config.write_text(scenario.config(fleet))
            env = {**os.environ, **scenario.environ(fleet)}
            ctx = load_context(config_path=str(config), db_path=str(db), environ=env)

            def fresh_alerts(scenario: Catalog13 | Fleet200 = scenario) -> None:
                """A reused database keeps the last run's (acknowledged) alerts: each phase starts with none
                open, then the scenario's own (the phase before acked the firing ones it timed)."""
                with sqlite3.connect(db) as conn:
                    for table in ("alert_deliveries", "alert_outbox", "alert_transitions", "alerts"):
                        conn.execute(f"DELETE FROM {table}")
                    scenario.open_alerts(conn)

            fresh_alerts()
            if queries is None:
                queries = asyncio.run(query_times(ctx))
                base = run_phase("baseline", str(config), str(db), args.idle, env)
            results.append(
                (
                    scenario,
                    "",
                    run_phase("app", str(config), str(db), args.idle, env, profile and profile + "-app.prof"),
                )
            )
            fresh_alerts()
            results.append(
                (
                    scenario,
                    " — the dashboard alone (the core's snapshot built once)",
                    run_phase(
                        "dashboard", str(config), str(db), args.idle, env, profile and profile + "-dashboard.prof"
                    ),
                )
            )

    records = asyncio.run(count_records(db))
    print(f"database: {records:,} usage records; fake providers on 127.0.0.1 answering in 50 ms")
    if built:
        print(
            f"ingest of {args.records:,} records with pricing and roll-ups: {built['ingest_s']:.1f} s "
            f"({args.records / built['ingest_s']:,.0f}/s); plain insert baseline {built['raw_insert_s']:.1f} s "
            f"(ratio {built['ingest_s'] / built['raw_insert_s']:.1f}x)"
        )
    print(
        f"snapshot (everything the dashboard shows, 13 providers): {queries['snapshot_ms']:.1f} ms; one "
        f"raw-records scan for this month's cost by provider: {queries['raw_scan_ms']:.1f} ms "
        f"(snapshot is {queries['raw_scan_ms'] / queries['snapshot_ms']:.1f}x faster than one scan)"
    )

    def line(name, value, unit, target, baseline, ok):
        if value != value:  # NaN: nothing to measure (a snapshot served again had no firing alert left)
            print(f"  {name}: n/a (no firing alert left to act on)")
            return
        print(
            f"  {name}: {value:.2f} {unit} (target < {target} {unit}) {'met' if ok else 'MISSED'}; "
            f"bare Textual app: {baseline:.2f} {unit}; ratio {value / baseline if baseline else float('inf'):.1f}x"
        )

    all_ok = True
    for scenario, part, live in results:
        print(f"{scenario.name}{part}:")
        if live.get("idle_snapshot_builds", -1) >= 0:
            print(f"  snapshots read in full over the {args.idle:g} s idle window: {live['idle_snapshot_builds']}")
        checks = [
            (
                "idle CPU, 1 s refresh, collector every 30 s",
                live["idle_cpu_pct"],
                "% of a core",
                3,
                base["idle_cpu_pct"],
                live["idle_cpu_pct"] < 3,
            ),
            ("resident memory", live["rss_mb"], "MB", 120, base["rss_mb"], live["rss_mb"] < 120),
            ("first paint", live["first_paint_s"], "s", 1.5, base["first_paint_s"], live["first_paint_s"] < 1.5),
            (
                "key a -> first frame showing acked",
                live["frame_ms"],
                "ms",
                100,
                base["frame_ms"],
                live["frame_ms"] < 100,
            ),
            # Pilot.press returns only once the whole process has been idle for a while (textual's
            # wait_for_idle): that waits out the collector and the snapshot thread too, so it is
            # printed for comparison with earlier runs, not judged.
            (
                "(Pilot.press a -> row says acked, incl. waiting for idle)",
                live["act_ms"],
                "ms",
                100,
                base["act_ms"],
                True,
            ),
            (
                "longest event-loop stall while idle",
                live["stall_ms"],
                "ms",
                100,
                base["stall_ms"],
                live["stall_ms"] < 100,
            ),
        ]
        for c in checks:
            line(*c)
        all_ok = all_ok and all(c[-1] for c in checks)
    return 0 if all_ok else 1


def median(values):  # type: ignore[no-untyped-def]
    return sorted(values)[len(values) // 2] if values else float("nan")


async def key_to_frame(app, key, shows):  # type: ignore[no-untyped-def]
    """Milliseconds from a key event reaching the app (as the terminal driver delivers it) to the first
    frame the app hands to its terminal after `shows()` became true — what the user sees. Headless,
    the frame is not written out, but it is composed and handed over (App._display) as it would be."""
    from textual import events

    handed: list[float] = []
    display = app._display

    def timed_display(screen, renderable):  # type: ignore[no-untyped-def]
        if renderable is not None:
            handed.append(time.perf_counter())
        return display(screen, renderable)

    app._display = timed_display
    try:
        started = time.perf_counter()
        app._driver.send_message(events.Key(key, key))
        give_up = time.monotonic() + 5
        while not shows():
            if time.monotonic() > give_up:
                raise SystemExit(f"key {key!r} never showed its effect")
            await asyncio.sleep(0.0005)
        changed = time.perf_counter()
        while not any(t >= changed for t in handed):
            if time.monotonic() > give_up:
                raise SystemExit(f"key {key!r}: no frame after its effect")
            await asyncio.sleep(0.0005)
        return (next(t for t in handed if t >= changed) - started) * 1000
    finally:
        app._display = display


# -- the two fleets ------------------------------------------------------------------------------------
def open_made_up_alerts(conn, count: int) -> None:
    """Open alerts as the engine stores them (rule, subject, severity, firing), on made-up subjects so
    the rules do not resolve them while the benchmark runs."""
    now = time.time()
    severities = ("critical", "warning", "warning", "info")
    conn.executemany(
        "INSERT INTO alerts (fingerprint, rule, subject, severity, message, state, first_seen, last_seen) "
        "VALUES (?, 'bench', ?, ?, ?, 'firing', ?, ?)",
        [
            (
                f"bench:s{i}",
                f"s{i}",
                severities[i % 4],
                f"bench alert {i}: something measured crossed its threshold",
                now - 60 * i,
                now,
            )
            for i in range(count)
        ],
    )


class Catalog13:
    """The 13 catalog kinds; five with a bad key (real critical alerts once a collector runs) and five
    made-up firing alerts, so the dashboard alone has alerts to ack too."""

    name = "13 providers (5 failing their key)"
    key = "small"
    bad = frozenset({"deepseek", "groq", "mistral", "xai", "together"})

    def fleet(self):
        from llmpulse.core.simulator.fleet import FakeProvider, Fleet

        return Fleet(
            [
                FakeProvider(
                    k,
                    kind=k,
                    key=KEY if k in KEY_ENVS else None,
                    delay=0.05,
                    behaviour="bad_key" if k in self.bad else "ok",
                )
                for k in KINDS
            ]
        )

    def config(self, fleet) -> str:
        lines = ["[probe]", 'interval = "30s"', "[[budgets]]", 'scope = "total"', "limit_usd = 50000"]
        for k in KINDS:
            lines += [f"[providers.{k}]", f'base_url = "{fleet.base_url(k)}"']
        return "\n".join(lines) + "\n"

    def environ(self, fleet) -> dict:
        return {**dict.fromkeys(KEY_ENVS.values(), KEY), "AZURE_OPENAI_ENDPOINT": fleet.base_url("azure")}

    def open_alerts(self, conn) -> None:
        # The bad keys raise their own once a collector runs; the dashboard alone (no collector) needs
        # firing alerts of its own to time the ack.
        open_made_up_alerts(conn, 5)


class Fleet200:
    """200 OpenAI-compatible providers (every tenth failing its key) and 500 open alerts."""

    name = "200 providers (20 failing their key), 500 open alerts"
    key = "large"
    providers = 200
    alerts = 500

    def fleet(self):
        from llmpulse.core.simulator.fleet import FakeProvider, Fleet

        return Fleet(
            [
                FakeProvider(f"p{i}", key=KEY, delay=0.05, behaviour="bad_key" if i % 10 == 0 else "ok")
                for i in range(self.providers)
            ]
        )

    def config(self, fleet) -> str:
        lines = ["[probe]", 'interval = "30s"', "[[budgets]]", 'scope = "total"', "limit_usd = 50000"]
        for i in range(self.providers):
            lines += [
                f"[providers.p{i}]",
                'kind = "openai-compatible"',
                f'base_url = "{fleet.base_url(f"p{i}")}"',
                'api_key_env = "BENCH_KEY"',
            ]
        return "\n".join(lines) + "\n"

    def environ(self, fleet) -> dict:
        return {"BENCH_KEY": KEY}

    def open_alerts(self, conn) -> None:
        open_made_up_alerts(conn, self.alerts)


SMALL, LARGE = Catalog13(), Fleet200()


if __name__ == "__main__":
    sys.exit(main())
