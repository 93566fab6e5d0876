"""One bad value never poisons what is stored: every number is checked for type, finiteness and range on
every way in (import lines, raw usage objects, `record`, the Recorder's fast path, config, durations);
each import line is judged on its own, by its number; repeats follow one stated rule."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from llmpulse.core.clock import ManualClock
from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.recorder import Recorder
from llmpulse.core.usage.records import MAX_TOKENS, RecordError
from tests.cli_helpers import run_cli

T0 = 1_795_000_000.0


def good(i: int) -> dict:
    return {"ts": T0 + i, "provider": "openai", "model": "gpt-4o", "input_tokens": 100 + i, "output_tokens": i}


def stored(db) -> tuple[int, int]:
    with sqlite3.connect(db) as con:
        n, tokens = con.execute("SELECT COUNT(*), COALESCE(SUM(input_tokens), 0) FROM usage_records").fetchone()
    return n, tokens


def test_each_hostile_import_line_is_refused_with_its_number_and_the_good_lines_are_kept(tmp_path):
    db = tmp_path / "u.db"
    bad_lines = {
        3: json.dumps({**good(3), "input_tokens": int("9" * 400)}).encode(),  # huge int
        5: json.dumps({**good(5), "input_tokens": 1e300}).encode(),
        7: json.dumps({"provider": "openai", "model": "gpt-4o", "usage": {"prompt_tokens": 1e308}}).encode(),
        9: b'{"provider": "openai", "model": "gpt-4o", "user": "\\ud800"}',  # a lone surrogate
        11: b"[" * 100_000 + b"]" * 100_000,  # deep nesting
        13: b'{"provider": "openai", "model": "gpt-4o", "user": "caf\xe9"}',  # Latin-1, not UTF-8
        15: json.dumps({**good(15), "input_tokens": 9223372036854775807}).encode(),
        17: json.dumps({**good(17), "latency_ms": 1e300}).encode(),
        19: json.dumps({**good(19), "ts": 1e300}).encode(),
    }
    lines, good_tokens, good_count = [], 0, 0
    for n in range(1, 22):
        if n in bad_lines:
            lines.append(bad_lines[n])
        else:
            lines.append(json.dumps(good(n)).encode())
            good_tokens += 100 + n
            good_count += 1
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    r = run_cli(tmp_path, "--db", str(db), "import", str(tmp_path / "in.jsonl"))
    assert r.returncode == 1, r.stderr
    reported = sorted(int(line.split(":")[0].split()[1]) for line in r.stderr.splitlines() if line.startswith("line "))
    assert reported == sorted(bad_lines), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert stored(db) == (good_count, good_tokens)
    report = run_cli(tmp_path, "--db", str(db), "report", "--since", "30d", "--format", "json")
    assert report.returncode == 0, report.stderr


def test_record_refuses_a_token_count_no_call_can_have(tmp_path):
    db = tmp_path / "r.db"
    r = run_cli(
        tmp_path, "--db", str(db), "record", "--provider", "openai", "--model", "gpt-4o",
        "--input-tokens", "9223372036854775807",
    )  # fmt: skip
    assert r.returncode == 2 and f"from 0 to {MAX_TOKENS:,}" in r.stderr, r.stderr
    r = run_cli(tmp_path, "--db", str(db), "record", "--provider", "openai", "--model", "gpt-4o", "--latency-ms", "inf")
    assert r.returncode == 2 and "latency_ms" in r.stderr
    assert not db.exists() or stored(db) == (0, 0)


async def test_the_recorder_refuses_a_bad_call_at_record_and_stores_every_good_one(tmp_path):
    store = await Store.open(tmp_path / "rec.db")
    try:
        async with Recorder(store, Pricing(), clock=ManualClock(T0), batch_size=10**6) as rec:
            rec.record(provider="openai", model="gpt-4o", input_tokens=10, output_tokens=1)  # attribution now known
            for bad in ({"input_tokens": 2**63}, {"output_tokens": 10**12}, {"latency_ms": float("nan")}):
                with pytest.raises(RecordError):  # the fast path must not let it through either
                    rec.record(provider="openai", model="gpt-4o", **bad)
            for i in range(500):
                rec.record(provider="openai", model="gpt-4o", input_tokens=100, output_tokens=i, latency_ms=200.0)
        n, tokens = (await store.fetchone("SELECT COUNT(*), SUM(input_tokens) FROM usage_records"))[:2]
        assert (n, tokens) == (501, 10 + 500 * 100)
    finally:
        await store.close()


async def test_a_flush_the_database_refuses_for_one_row_stores_all_the_others(tmp_path):
    store = await Store.open(tmp_path / "flush.db")
    try:
        rec = Recorder(store, Pricing(), clock=ManualClock(T0), batch_size=10**6)
        for i in range(20):
            rec.record(provider="openai", model="gpt-4o", input_tokens=100, output_tokens=i)
        # A row no validation should ever let through (a bug elsewhere): SQLite cannot hold the number.
        row = list(rec.pending[7])
        row[3] = 2**70
        rec.pending[7] = tuple(row)
        await rec.flush()
        assert rec.refused == 1
        n, out = (await store.fetchone("SELECT COUNT(*), SUM(output_tokens) FROM usage_records"))[:2]
        assert (n, out) == (19, sum(range(20)) - 7)
        rec.record(provider="openai", model="gpt-4o", input_tokens=100, output_tokens=100)
        assert (await rec.flush()).stored == 1  # and the next flush is not poisoned
    finally:
        await store.close()


def test_import_of_an_endless_line_stops_with_its_number_in_bounded_memory(tmp_path):
    code = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run([sys.executable, '-m', 'llmpulse.core.cli', '--db', sys.argv[1], 'import', '/dev/zero'],"
        " capture_output=True, text=True, timeout=120)\n"
        "print(p.returncode)\nprint(p.stderr.strip())\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "z.db")], capture_output=True, text=True, timeout=150, cwd=tmp_path
    ).stdout.splitlines()
    code_, err, peak_kib = int(out[0]), "\n".join(out[1:-1]), int(out[-1])
    assert code_ == 1 and err.startswith("line 1: no line end"), err
    assert peak_kib < 250 * 1024, f"peak RSS {peak_kib} KiB"


def test_identical_lines_are_separate_calls_and_a_conflicting_request_id_is_reported(tmp_path):
    db = tmp_path / "d.db"
    same = json.dumps({"provider": "openai", "model": "gpt-4o", "input_tokens": 5})
    lines = [same] * 4 + [
        json.dumps({"provider": "openai", "model": "gpt-4o", "input_tokens": 7, "request_id": "req-1"}),
        json.dumps({"provider": "openai", "model": "gpt-4o", "input_tokens": 7, "request_id": "req-1"}),
        json.dumps({"provider": "openai", "model": "gpt-4o", "input_tokens": 9, "request_id": "req-1"}),
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    r = run_cli(tmp_path, "--db", str(db), "import", str(tmp_path / "d.jsonl"))
    assert r.returncode == 1
    assert "line 7: request_id 'req-1': line 5 has the same id with different content" in r.stderr, r.stderr
    assert "imported 5 records (1 already there, 1 bad line skipped" in r.stdout, r.stdout
    assert stored(db) == (5, 4 * 5 + 7)
    again = run_cli(tmp_path, "--db", str(db), "import", str(tmp_path / "d.jsonl"))
    assert "imported 0 records (6 already there" in again.stdout, again.stdout
    assert stored(db) == (5, 4 * 5 + 7)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[probe]\ninterval = nan\n", "probe.interval"),
        ("[probe]\ntimeout = inf\n", "probe.timeout"),
        ('[probe]\ninterval = "' + "9" * 400 + 's"\n', "probe.interval"),
    ],
)
def test_config_refuses_nan_infinite_and_endless_durations_naming_the_bounds(tmp_path, toml, expected):
    (tmp_path / "llmpulse.toml").write_text(toml)
    r = run_cli(tmp_path, "--db", str(tmp_path / "c.db"), "providers")
    assert r.returncode == 2, r.stderr
    assert expected in r.stderr and " to " in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_alerts_silence_refuses_a_duration_beyond_its_bounds(tmp_path):
    for text in ("99999999d", "9" * 400 + "s"):
        r = run_cli(tmp_path, "--db", str(tmp_path / "a.db"), "alerts", "silence", "1", "--for", text)
        assert r.returncode == 2 and "from 1s to 3650d" in r.stderr, r.stderr
