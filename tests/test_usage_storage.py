"""Issue 14's storage: roll-ups at the grains each dimension keeps (who called: per day only), figures
over any range still exact from roll-ups plus raw calls, and databases made by older versions migrated
in place without changing a figure."""

from __future__ import annotations

import gzip
import json
import math
import random
import sqlite3
from pathlib import Path

import pytest

from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.queries import breakdown, total
from llmpulse.core.usage.recorder import Recorder
from llmpulse.core.usage.records import record_from_mapping
from llmpulse.core.usage.rollup import ingest

FIXTURES = Path(__file__).parent / "fixtures"
TF = 1_795_000_000.0  # the fixture's "now" when it was made (its calls are in the 5 days before)
DIMS = ("total", "provider", "model", "provider_model", "department", "agent", "user", "task_type", "category")


def _raw_key(dim: str) -> str:
    """A dimension's key from the usage_records view, written here independently of the queries module."""
    if dim == "total":
        return "'*'"
    if dim == "provider_model":
        return "provider || '/' || model"
    if dim in ("provider", "model"):
        return dim
    return f"COALESCE({dim}, '(no {dim})')"


def expected_from_raw(conn: sqlite3.Connection, dim: str, since: float, until: float) -> dict[str, tuple]:
    """(requests, errors, cost, unknown price, tokens, p95 by nearest rank) per key, from the raw calls
    in [since, until] (a call stamped exactly `until` counts, as the queries count it)."""
    rows = conn.execute(
        f"SELECT {_raw_key(dim)}, status, cost_usd, input_tokens + output_tokens, latency_ms FROM usage_records "
        "WHERE ts >= ? AND ts <= ?",
        (since, until),
    ).fetchall()
    groups: dict[str, list] = {}
    for key, status, cost, tokens, latency in rows:
        g = groups.setdefault(key, [0, 0, 0.0, 0, 0, []])
        g[0] += 1
        g[1] += status == "error"
        if cost is None:
            g[3] += 1
        else:
            g[2] += cost
        g[4] += tokens
        if latency is not None:
            g[5].append(latency)
    out = {}
    for key, (n, errors, cost, unknown, tokens, latencies) in groups.items():
        latencies.sort()
        p95 = latencies[math.ceil(0.95 * len(latencies)) - 1] if latencies else None
        # an upgrade rounds each stored cost to the nano-dollar (migration 0199d): at most half of one a call
        out[key] = (n, errors, pytest.approx(cost, rel=1e-9, abs=n * 0.5e-9 + 1e-12), unknown, tokens, p95)
    return out


async def figures(store: Store, dim: str, since: float, until: float) -> dict[str, tuple]:
    return {
        g.key: (g.requests, g.errors, g.cost_usd, g.unknown_price_count, g.tokens, g.p95_ms)
        for g in await breakdown(store, dim if dim != "total" else "total", since, until)
    }


def as_kept(call: sqlite3.Row | tuple) -> tuple:
    """A usage_records row with its cost (index 21) as a whole number of nano-dollars: what an upgrade keeps
    of a cost stored before migration 0199d (it rounds to the nano-dollar)."""
    row = tuple(call)
    return (*row[:21], None if row[21] is None else math.floor(row[21] * 1e9 + 0.5), *row[22:])


def _load_fixture(path: Path) -> None:
    with gzip.open(FIXTURES / "usage_schema_0197.sql.gz", "rt") as f:
        script = f.read()
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.close()


RANGES = (
    (TF - 6 * 86400, TF),  # everything
    (TF - 3 * 86400 - 4321.5, TF - 1234.5),  # mid-minute, mid-hour, mid-day at both ends
    (TF - 7200.25, TF - 300.75),  # within a day
    (TF - 86400 - 3600.5, TF - 86400 + 1800.5),  # across a midnight? (within the fixture's last days)
)


async def test_a_database_made_by_schema_0197_keeps_every_figure_through_the_migration(tmp_path):
    """A database written by the version before issue 14's storage change (a dump made with that code,
    400 varied calls over 5 days with request ids) opens, migrates in place, and every breakdown gives
    the figures the raw calls give, computed here without the queries module."""
    db = tmp_path / "old.db"
    _load_fixture(db)
    before = sqlite3.connect(db)
    calls_before = before.execute("SELECT * FROM usage_records ORDER BY id").fetchall()
    days_before = before.execute("SELECT * FROM usage_rollups WHERE grain = 'd' ORDER BY dim, start, key").fetchall()
    expected = {(dim, r): expected_from_raw(before, dim, *r) for dim in DIMS for r in RANGES}
    assert before.execute("SELECT COUNT(*) FROM usage_rollups WHERE grain = 'h' AND dim = 'user'").fetchone()[0]
    before.close()

    store = await Store.open(db)
    try:
        applied = {r[0] for r in await store.fetchall("SELECT name FROM schema_migrations")}
        assert "0198_usage_rollup_grains" in applied
        for (dim, (since, until)), want in expected.items():
            assert await figures(store, dim, since, until) == want, (dim, since, until)
        # nothing stored is lost: every call with its request id, every day roll-up as it was
        assert [as_kept(r) for r in await store.fetchall("SELECT * FROM usage_records ORDER BY id")] == [
            as_kept(r) for r in calls_before
        ]
        days = await store.fetchall("SELECT * FROM usage_rollups WHERE grain = 'd' ORDER BY dim, start, key")
        assert [tuple(r) for r in days] == days_before
        # the hour and minute rows of users the raw calls give again are gone (the hour that began before
        # the oldest kept call stays: its calls before that may have been pruned)
        left = await store.fetchall(
            "SELECT start FROM usage_rollups WHERE grain IN ('h', 'm') AND dim = 'user' "
            "AND start >= (SELECT MIN(ts) FROM usage_calls)"
        )
        assert left == []
        # and new calls go on from there: a re-import of a stored call is a duplicate still
        first = next(c for c in calls_before if c[20] is not None)  # usage_records.request_id
        again = record_from_mapping(dict(zip(("ts", "provider", "model"), first[2:5], strict=True)), TF)
        again.request_id = first[20]
        result = await ingest(store, [again], Pricing())
        assert (result.stored, result.duplicates) == (0, 1)
    finally:
        await store.close()


def _records(n: int, start: float, span: float, seed: int):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append(
            record_from_mapping(
                {
                    "ts": start + rng.uniform(0, span),
                    "provider": rng.choice(["openai", "anthropic"]),
                    "model": rng.choice(["gpt-4o", "claude-haiku-4-5"]),
                    "input_tokens": rng.randint(1, 4000),
                    "output_tokens": rng.randint(0, 800),
                    "latency_ms": round(rng.uniform(30, 3000), 1),
                    "status": "error" if rng.random() < 0.1 else "ok",
                    "department": rng.choice(["eng", "ops", None]),
                    "agent": rng.choice(["a1", "a2", None]),
                    "user": rng.choice([f"u{k}" for k in range(9)] + [None]),
                    "request_id": f"id-{seed}-{i}",
                },
                start,
            )
        )
    return out


async def test_who_breakdowns_over_partial_days_are_exact(tmp_path):
    """department, agent and user are rolled up per day only: a range that starts or ends inside a day
    adds (or takes off) that day's raw calls. Ranges inside one day, across midnights, and a user seen
    only in a partial day all give what the raw calls give."""
    store = await Store.open(tmp_path / "who.db")
    day = 86400.0
    start = 1_790_000_000.0 - 1_790_000_000.0 % day  # a UTC midnight in the past
    try:
        await ingest(store, _records(1500, start, 3 * day, seed=1), Pricing())
        # one user whose only calls are late on the last day: no whole day holds them
        late = _records(5, start + 3 * day - 600, 300, seed=2)
        for r in late:
            r.user = "late-only"
        await ingest(store, late, Pricing())
        conn = sqlite3.connect(tmp_path / "who.db")
        for since, until in (
            (start + 3600.5, start + 7200.25),  # inside one day, near its start
            (start + day - 5000.5, start + day + 4000.5),  # across one midnight, little of each day
            (start + 20000.5, start + 2 * day + 70000.5),  # a whole day between two partial ones
            (start + day, start + 2 * day),  # whole days exactly
            (start + 2 * day + 80000.5, start + 3 * day + 3600),  # ends beyond the data
        ):
            for dim in ("department", "agent", "user"):
                assert await figures(store, dim, since, until) == expected_from_raw(conn, dim, since, until), (
                    dim,
                    since,
                )
        late_row = await total(store, start + 2 * day + 3600, start + 3 * day, "user", "late-only", latency=True)
        assert late_row.requests == 5 and late_row.p95_exact
        assert late_row.p95_ms == max(r.latency_ms for r in late)  # nearest rank of 5 calls: the slowest
        assert (await total(store, start, start + 3 * day, "user", "late-only")).requests == 5
        conn.close()
    finally:
        await store.close()


async def test_who_figures_past_retention_count_whole_days(tmp_path):
    """Once a partial day's raw calls are pruned, the figure cannot be cut to the second: the day's
    roll-up counts whole (never a part silently missing)."""
    store = await Store.open(tmp_path / "old.db")
    day = 86400.0
    start = 1_790_000_000.0 - 1_790_000_000.0 % day
    try:
        records = _records(600, start, 2 * day, seed=3)
        await ingest(store, records, Pricing())
        await store.execute("DELETE FROM usage_calls WHERE ts < ?", (start + day,))  # retention: day 2 kept
        since, until = start + 3600.5, start + day + 100.5
        got = (await total(store, since, until, "user", "u1")).requests
        whole_first_day = sum(1 for r in records if r.user == "u1" and start <= r.ts < start + day)
        kept_part = sum(1 for r in records if r.user == "u1" and start + day <= r.ts <= until)
        assert got == whole_first_day + kept_part
    finally:
        await store.close()


@pytest.mark.parametrize("worker", [False, True], ids=["in-process", "worker-process"])
async def test_import_stores_what_the_one_by_one_path_stores(tmp_path, monkeypatch, capsys, worker):
    """`llmpulse import` judges lines as the Recorder judges live calls (attributions validated once,
    priced by remembered rates: line_import), in a worker process for a big file, batches stored while
    the next is judged. Batches of 3 here, so lines cross batches: the calls, the roll-ups and the
    report are those of judging each line on its own (JsonLines.record) and storing the good ones with
    ingest()."""
    from llmpulse.core.cli import build_parser
    from llmpulse.core.cli import usage as usage_cli
    from llmpulse.core.usage.records import JsonLines, RecordError, read_lines

    monkeypatch.setattr(usage_cli, "IMPORT_BATCH", 3)
    monkeypatch.setattr(usage_cli, "WORKER_MIN_BYTES", 0 if worker else 1 << 60)
    base = {"ts": TF - 3600.5, "provider": "openai", "model": "gpt-4o", "input_tokens": 1200, "output_tokens": 80}
    rows = [
        {**base, "request_id": "a", "user": "u1"},
        {**base, "request_id": "a", "user": "u1"},  # the same call again: once
        {**base, "request_id": "a", "user": "u2"},  # same id, other content: refused with line 1 named
        {**base, "user": "u3"},
        {**base, "user": "u3"},  # identical lines without an id: two calls
        {**base, "request_id": 77, "latency_ms": 320},  # an integer id
        {**base, "request_id": "  spaced  ", "department": "ops"},
        {**base, "model": "", "request_id": "b"},  # bad: no model
        {**base, "ts": TF - 3 * 86400 - 10, "usage": {"prompt_tokens": 30, "completion_tokens": 4}},
        {**base, "cost_usd": 0.5, "request_id": "c", "agent": "bot"},
        {**base, "provider": "mystery", "model": "m-1", "request_id": "d"},
        # latency kept in whole ms, halves to even (unpriced: no cost sum whose float order could differ)
        {**base, "provider": "mystery", "model": "m-2", "request_id": "e", "latency_ms": 12.25},  # careful path
        {**base, "provider": "mystery", "model": "m-2", "request_id": "f", "latency_ms": 640.5},  # fast: 640
        {**base, "provider": "mystery", "model": "m-2", "request_id": "g", "latency_ms": 641.5},  # fast: 642
    ]
    text = "\ufeff" + "\n".join(json.dumps(r) for r in rows) + "\n{broken\n"
    (tmp_path / "in.jsonl").write_text(text, encoding="utf-8")
    (tmp_path / "llmpulse.toml").write_text("")
    args = build_parser().parse_args(
        [
            "--config",
            str(tmp_path / "llmpulse.toml"),
            "--db",
            str(tmp_path / "cli.db"),
            "import",
            str(tmp_path / "in.jsonl"),
        ]
    )
    assert await args.handler(args) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "line 3: request_id 'a': line 1 has the same id with different content; expected one line per call (the first is kept)",
        'line 8: model: missing; expected a model name like "gpt-4o"',
        "line 15: not JSON (Expecting property name enclosed in double quotes); expected one JSON object per line",
    ]
    assert out.strip() == "imported 11 records (1 already there, 3 bad lines skipped, 4 with unknown price)"

    # the reference: each line judged on its own, the good ones stored in one go
    lines, good = JsonLines(TF), []
    with (tmp_path / "in.jsonl").open("rb") as f:
        for number, line in read_lines(f):
            try:
                good.append(lines.record(line, number))
            except RecordError:
                pass
    reference = await Store.open(tmp_path / "ref.db")
    imported = await Store.open(tmp_path / "cli.db")
    try:
        await ingest(reference, good, Pricing(), TF)
        calls = (
            "SELECT dedupe_key, ts, provider, model, input_tokens, output_tokens, latency_ms, status, department, "
            "agent, user, request_id, cost_usd, reported_cost_usd FROM usage_records ORDER BY ts, request_id, user"
        )
        assert [tuple(r) for r in await imported.fetchall(calls)] == [tuple(r) for r in await reference.fetchall(calls)]
        rollups = "SELECT * FROM usage_rollups WHERE grain != 'm' ORDER BY grain, dim, start, key"
        assert [tuple(r) for r in await imported.fetchall(rollups)] == [
            tuple(r) for r in await reference.fetchall(rollups)
        ]
    finally:
        await imported.close()
        await reference.close()


async def test_a_remembered_partial_day_is_read_again_once_a_call_lands_in_it(tmp_path):
    """The raw sums of a past partial day are remembered between queries (a budget asks every second);
    a call stored later in those hours — by another connection, as an import or the daemon would — is in
    the next figure, whether it lands inside the range or in the part taken off."""
    day = 86400.0
    start = 1_790_000_000.0 - 1_790_000_000.0 % day
    since, until = start + 5 * 3600 + 0.5, start + 2 * day + 3 * 3600.5  # a partial day at each end
    store = await Store.open(tmp_path / "cache.db")
    other = await Store.open(tmp_path / "cache.db")
    try:
        await ingest(store, _records(800, start, 3 * day, seed=4), Pricing())
        conn = sqlite3.connect(tmp_path / "cache.db")

        async def check() -> None:
            for _ in range(2):  # the second time from what was remembered
                assert await figures(store, "user", since, until) == expected_from_raw(conn, "user", since, until)
                got = (await total(store, since, until, "user", "u2")).requests
                assert got == expected_from_raw(conn, "user", since, until)["u2"][0]

        await check()
        for ts in (start + 3600.25, start + 6 * 3600.25):  # in the part taken off, then inside the range
            late = _records(1, ts, 0.0, seed=5)[0]
            late.user, late.request_id = "u2", f"late-{ts}"
            await ingest(other, [late], Pricing())
            await check()
        conn.close()
    finally:
        await other.close()
        await store.close()


async def test_latency_is_stored_in_whole_milliseconds(tmp_path):
    """Sub-millisecond latency of an LLM call is noise: both ways in (the recorder's fast path for a
    known attribution, and the careful path) store it rounded half to even, which SQLite keeps as a small
    integer instead of an 8-byte float; readers still get a float."""
    given = [640.5, 641.5, 12.3, 12.7, 0.4, 86_399_999.6, 250]
    want = [640.0, 642.0, 12.0, 13.0, 0.0, 86_400_000.0, 250.0]
    store = await Store.open(tmp_path / "l.db")
    try:
        async with Recorder(store, Pricing()) as rec:
            for i, ms in enumerate(given):  # the first is the careful path, the rest the fast one
                rec.record(provider="openai", model="gpt-4o", ts=TF + i, latency_ms=ms, request_id=f"fast-{i}")
        careful = [
            record_from_mapping({"provider": "groq", "model": "m", "ts": TF, "latency_ms": ms}, TF) for ms in given
        ]
        await ingest(store, careful, Pricing())
        for provider in ("openai", "groq"):
            rows = await store.fetchall(
                "SELECT latency_ms FROM usage_records WHERE provider = ? ORDER BY id", (provider,)
            )
            got = [r[0] for r in rows]
            assert got == want and all(type(v) is float for v in got), provider
    finally:
        await store.close()


async def test_request_ids_stored_by_shape_keep_every_id_exactly_through_the_migration(tmp_path):
    """A database written before request ids were stored by shape (600 calls with ids of 20 shapes:
    UUIDs both cases, chatcmpl-, req_ + hex, msg_01, trace+span hex, failover @provider suffixes, odd hex
    lengths, leading zeros, non-ASCII, 191 characters...) migrates with every call, id and roll-up as it
    was; the ids read back byte for byte, now smaller, and storing them all again adds nothing."""
    db = tmp_path / "old.db"
    with gzip.open(FIXTURES / "usage_schema_0198.sql.gz", "rt") as f:
        script = f.read()
    conn = sqlite3.connect(db)
    conn.executescript(script)
    calls_before = conn.execute("SELECT * FROM usage_records ORDER BY id").fetchall()
    rollups_before = conn.execute("SELECT * FROM usage_rollups ORDER BY grain, dim, start, key").fetchall()
    text_bytes = conn.execute("SELECT SUM(length(CAST(request_id AS BLOB))) FROM usage_calls").fetchone()[0]
    conn.close()
    ids = [c[20] for c in calls_before if c[20] is not None]
    assert len(ids) > 400 and len(set(ids)) == len(ids)

    store = await Store.open(db)
    try:
        assert [as_kept(r) for r in await store.fetchall("SELECT * FROM usage_records ORDER BY id")] == [
            as_kept(r) for r in calls_before
        ]
        rollups = await store.fetchall("SELECT * FROM usage_rollups ORDER BY grain, dim, start, key")
        assert [tuple(r) for r in rollups] == rollups_before
        # usage_attrs is found by its key: the index over all its text is gone, every attribution kept
        indexes = {r[0] for r in await store.fetchall("SELECT name FROM sqlite_master WHERE tbl_name = 'usage_attrs'")}
        assert indexes == {"usage_attrs", "usage_attrs_key"}
        (stored_bytes,) = await store.fetchone("SELECT SUM(length(request_id)) FROM usage_calls")
        assert stored_bytes < 0.75 * text_bytes
        kinds = {
            r[0]: r[1] for r in await store.fetchall("SELECT typeof(request_id), COUNT(*) FROM usage_calls GROUP BY 1")
        }
        assert kinds["blob"] > kinds.get("text", 0)  # most ids have a shape; the rest stay text
        # Each id is found again by its text: storing every call again is all duplicates...
        again = [
            record_from_mapping({"ts": c[2], "provider": c[3], "model": c[4], "request_id": c[20]}, TF)
            for c in calls_before
            if c[20] is not None
        ]
        result = await ingest(store, again, Pricing())
        assert (result.stored, result.duplicates) == (0, len(again))
        # ...and an id of an existing shape but never seen (one digit changed) is a new call, read back as given
        fresh = next(r for r in again if r.request_id.startswith("req-"))
        fresh.request_id = fresh.request_id[:-1] + ("0" if fresh.request_id[-1] != "0" else "1")
        assert (await ingest(store, [fresh], Pricing())).stored == 1
        (back,) = await store.fetchone("SELECT request_id FROM usage_records ORDER BY id DESC LIMIT 1")
        assert back == fresh.request_id
    finally:
        await store.close()


async def test_attributions_whose_keys_collide_stay_apart(tmp_path, monkeypatch):
    """usage_attrs is found by a 64-bit digest of the attribution with its fields compared: even if every
    digest were the same, each attribution keeps its own row and every user's figures stay exact."""
    from llmpulse.core.usage import rollup

    monkeypatch.setattr(rollup, "attrs_key", lambda attrs: 7)
    rows = [
        {"ts": TF - 3600 + i, "provider": "openai", "model": "gpt-4o", "input_tokens": 10 + i, "user": f"u{i % 5}"}
        for i in range(50)
    ]
    store = await Store.open(tmp_path / "c.db")
    await ingest(store, [record_from_mapping(r, TF) for r in rows], Pricing())
    await store.close()
    store = await Store.open(tmp_path / "c.db")
    try:
        async with Recorder(store, Pricing()) as rec:  # another process: finds the rows by key and fields
            for r in rows[:10]:
                rec.record(**{**r, "ts": TF - 60})
        (n,) = await store.fetchone("SELECT COUNT(DISTINCT key) || '/' || COUNT(*) FROM usage_attrs")
        assert n == "1/5"
        got = {g.key: (g.requests, g.input_tokens) for g in await breakdown(store, "user", TF - 7200, TF)}
        for u in range(5):
            mine = [r for r in rows if r["user"] == f"u{u}"]
            mine += [r for r in rows[:10] if r["user"] == f"u{u}"]
            assert got[f"u{u}"] == (len(mine), sum(r["input_tokens"] for r in mine))
    finally:
        await store.close()


async def test_costs_are_kept_in_whole_nano_dollars_and_add_up(tmp_path):
    """A call's cost is stored as a whole number of nano-dollars (3-4 bytes instead of an 8-byte float):
    each call reads back as its price rounded to the nano-dollar, and totals from the raw calls and from
    the roll-ups are the sum of those."""
    from fractions import Fraction

    from llmpulse.core.usage.config import PriceConfig, PriceOverride

    # $0.0375 a million input tokens: 37.5 nano-dollars each, so half of the prices end in half a nano-dollar
    pricing = Pricing(PriceConfig(overrides={("acme", "m1"): PriceOverride(input=0.0375, output=0.3)}))
    rng = random.Random(9)
    calls = [(rng.randint(1, 50_000), rng.randint(0, 4000)) for _ in range(300)]
    store = await Store.open(tmp_path / "n.db")
    try:
        async with Recorder(store, pricing) as rec:
            for i, (tin, tout) in enumerate(calls):
                rec.record(provider="acme", model="m1", ts=TF - 7200 + i, input_tokens=tin, output_tokens=tout)
        # exact prices in nano-dollars, in rational arithmetic: each stored one is within half a nano-dollar
        exact = [Fraction(tin * 375, 10) + tout * 300 for tin, tout in calls]
        want = [r[0] for r in await store.fetchall("SELECT cost_nusd FROM usage_calls ORDER BY id")]
        assert all(n == int(n) and abs(n - e) <= Fraction(1, 2) for n, e in zip(want, exact, strict=True))
        assert sum(exact) / 10**9 > 0.1  # not a trivial sum
        viewed = [r[0] for r in await store.fetchall("SELECT cost_usd FROM usage_records ORDER BY id")]
        assert viewed == [n / 1e9 for n in want]
        whole = await total(store, TF - 7200, TF)  # from the roll-ups and the raw calls of the edges
        assert whole.cost_usd == pytest.approx(sum(want) / 1e9, rel=1e-12)
        (raw,) = await store.fetchone("SELECT TOTAL(cost_usd) FROM usage_records")
        assert raw == pytest.approx(sum(want) / 1e9, rel=1e-12)
    finally:
        await store.close()


async def test_every_value_of_a_call_is_stored_in_its_column_whichever_insert_takes_it(tmp_path):
    """A chunk of calls without dedupe keys or reported costs is inserted without those two columns
    (rollup._LEAN_COLUMNS); a chunk with one of them, with all. Either way each value reads back in its
    own column — the calls here cross three chunks: lean, full, and a lean one not whole."""
    from llmpulse.core.usage.rollup import CHUNK, ingest_rows

    attrs = ("openai", "gpt-4o", "ok", "", 0, "", "", "", "", "", "", "")
    rows = [
        (None, TF - 5000 + i, -1, 100 + i, i % 7, i % 3, 0, float(i % 900), round(i * 1e-6, 9), f"req-{i:06d}", None)
        for i in range(2 * CHUNK + 200)
    ]
    rows[CHUNK + 100] = ("h:abc", TF - 1, -1, 5, 1, 0, 0, None, None, None, None)  # no id: keyed by content
    rows[CHUNK + 300] = (*rows[CHUNK + 300][:10], 0.25)  # a cost the provider reported
    store = await Store.open(tmp_path / "lean.db")
    try:
        result = await ingest_rows(store, rows, TF, None, {-1: attrs})
        assert result.stored == len(rows)
        got = await store.fetchall(
            "SELECT dedupe_key, ts, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, latency_ms, "
            "cost_usd, request_id, reported_cost_usd, provider, model FROM usage_records ORDER BY id"
        )
        expected = [(*row[:2], *row[3:], "openai", "gpt-4o") for row in rows]
        assert [tuple(r) for r in got] == expected
    finally:
        await store.close()
