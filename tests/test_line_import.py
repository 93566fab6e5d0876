"""The import's judging (core/usage/line_import.py): a chunk of plain lines judged column by column gives
exactly what judging the same lines one by one gives — rows, prices, bad lines, roll-up sums — for
lines of every kind the plain path takes (no request id, repeated ids, ids with other content, no ts,
integer times, cached tokens, a model of unknown price, attributions new in the middle of a chunk), and
a chunk holding anything else goes line by line."""

from __future__ import annotations

import json
import random
from typing import Any

from llmpulse.core.usage import line_import
from llmpulse.core.usage.line_import import LineJudge
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.records import JsonLines, LineTooLong, RecordError, attrs_of
from llmpulse.core.usage.rollup import record_row

NOW = 1_795_000_000.0


def varied_lines(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        rec: dict[str, Any] = {
            "provider": rng.choice(["openai", "anthropic", "mystery"]),
            "model": rng.choice(["gpt-4o", "claude-sonnet-4-5", "m-1"]),
            "input_tokens": rng.randint(100, 5000),
            "output_tokens": rng.randint(0, 900),
        }
        if rng.random() < 0.3:
            rec["cache_read_tokens"] = rng.randint(0, 50)
        if rng.random() < 0.9:
            rec["ts"] = rng.choice([NOW - rng.random() * 5 * 86400, int(NOW - rng.randrange(86400))])
        if rng.random() < 0.8:
            rec["latency_ms"] = rng.choice([round(rng.uniform(10, 9000), 1), rng.randrange(40000)])
        if rng.random() < 0.7:
            rec["request_id"] = f"r-{rng.randrange(n)}"  # repeats: the same call again, or a conflict
        if rng.random() < 0.5:
            rec["user"] = f"u{rng.randrange(40)}"  # attributions keep appearing mid-chunk
        if rng.random() < 0.05:
            rec["status"], rec["error_kind"] = "error", "rate_limited"
        out.append(rec)
    return out


def judged(lines: list[tuple[int, Any]], by_lines_only: bool) -> tuple[Any, int]:
    judge = LineJudge(Pricing(), NOW)
    plain = 0
    for i in range(0, len(lines), 64):
        chunk = lines[i : i + 64]
        if by_lines_only:
            judge._feed_lines(chunk)
        else:
            took = judge._feed_plain(chunk)
            plain += took
            if not took:
                judge._feed_lines(chunk)
    batch = judge.take()
    return (batch.rows, batch.errors, batch.attributions, batch.rollups.what, batch.rollups.who), plain


def test_plain_chunks_judged_by_column_give_what_judging_line_by_line_gives():
    records = varied_lines(1500, seed=5)
    lines: list[tuple[int, Any]] = [(i + 1, (json.dumps(r) + "\n").encode()) for i, r in enumerate(records)]
    # a few chunks that are not plain: a broken line, a line too long, a negative count, a spaced id
    lines[100] = (101, b"{broken\n")
    lines[300] = (301, LineTooLong("longer than 1,048,576 bytes; expected one JSON object per line"))
    lines[700] = (701, json.dumps({**records[700], "output_tokens": -1}).encode())
    lines[900] = (901, json.dumps({**records[900], "request_id": " spaced "}).encode())
    by_column, plain = judged(lines, False)
    by_line, _ = judged(lines, True)
    assert plain >= 15  # most of the 24 chunks took the column path; the 4 with an odd line did not
    assert by_column == by_line
    rows, errors = by_column[0], by_column[1]
    # independently of the code: how many lines a correct judge keeps, and which it refuses
    first_text: dict[str, bytes] = {}
    conflicts, kept = [], 0
    for number, line in lines:
        if number in (101, 301, 701):
            continue
        data = json.loads(line)
        rid = data.get("request_id")
        rid = rid.strip() if rid is not None else None
        if rid is not None and first_text.setdefault(rid, line.strip()) != line.strip():
            conflicts.append(number)
            continue
        kept += 1
    assert len(rows) == kept
    assert sorted(n for n, _ in errors) == sorted([101, 301, 701, *conflicts])
    # and the rows are those of judging each line on its own, the one-by-one path every way in shares
    reference, refs = JsonLines(NOW), {}
    expected = []
    for number, line in lines:
        try:
            if isinstance(line, RecordError):
                raise line
            rec = reference.record(line, number)
        except RecordError:
            continue
        row = record_row(rec, Pricing(), refs.setdefault(attrs_of(rec), -(len(refs) + 1)))
        expected.append(row)
    assert rows == expected
    attributions = by_column[2]
    costs = {attributions[row[2]][:2]: row[8] for row in rows}
    assert costs[("mystery", "m-1")] is None  # unknown price: NULL, never 0
    assert costs[("openai", "gpt-4o")] > 0


def test_lines_json_loads_would_refuse_or_read_otherwise_leave_the_column_path():
    """The column path scans each line with json.loads' C scanner: a line that scanner reads a value
    from but json.loads would not take as it is (leading space, a BOM, more after the value, a blank
    line) must send its chunk line by line, where it is kept or refused exactly as json.loads says."""
    base = {"provider": "openai", "model": "gpt-4o", "input_tokens": 5, "output_tokens": 1, "ts": NOW}
    good = [(json.dumps({**base, "request_id": f"r-{i}"}) + "\n").encode() for i in range(20)]
    odd_lines = [
        b"  " + good[0],  # leading space: json.loads takes it
        b"\xef\xbb\xbf" + good[1],  # a BOM: json.loads refuses it, the import reads past it (decode_line)
        good[2].rstrip() + b" {}\n",  # more after the value: refused
        good[3].rstrip() + b" \t\n",  # trailing blanks: json.loads takes it
        b"\n",  # blank: skipped
        b"",  # the last line of a file without its end: blank
    ]
    for odd in odd_lines:
        lines: list[tuple[int, Any]] = [(i + 1, line) for i, line in enumerate(good)]
        lines[10] = (11, odd)
        judge = LineJudge(Pricing(), NOW)
        assert not judge._feed_plain(lines)
        assert judge.waiting == 0
        by_column, _ = judged(lines, False)
        by_line, _ = judged(lines, True)
        assert by_column == by_line
        rows, errors = by_line[0], by_line[1]
        try:  # what json.loads itself says of the odd line (a blank one is skipped, not an error)
            kept = isinstance(json.loads(odd.decode().removeprefix("\ufeff")), dict)
        except ValueError:
            kept = False
        blank = not odd.strip()
        assert len(rows) == 19 + kept
        assert [n for n, _ in errors] == ([] if kept or blank else [11])
    # Windows line ends and a last line without one are plain
    crlf = [(i + 1, line.rstrip() + (b"\r\n" if i < 19 else b"")) for i, line in enumerate(good)]
    judge = LineJudge(Pricing(), NOW)
    assert judge._feed_plain(crlf) and judge.waiting == 20


def test_a_line_that_is_not_an_object_or_has_an_unknown_field_sends_its_chunk_line_by_line():
    judge = LineJudge(Pricing(), NOW)
    good = json.dumps({"provider": "openai", "model": "gpt-4o", "input_tokens": 5, "ts": NOW}).encode()
    for odd in (b"[1, 2]", json.dumps({"provider": "openai", "model": "gpt-4o", "colour": "red"}).encode()):
        assert not judge._feed_plain([(1, good), (2, odd)])
        assert judge.waiting == 0  # nothing taken from a chunk it gave back
    assert judge._feed_plain([(1, good)]) and judge.waiting == 1


def test_the_worker_pickles_a_batch_without_its_memo_and_it_comes_back_equal():
    judge = LineJudge(Pricing(), NOW)
    judge.feed([(i + 1, (json.dumps(r) + "\n").encode()) for i, r in enumerate(varied_lines(300, seed=8))])
    batch = judge.take()
    import pickle

    back = pickle.loads(line_import._dumps(batch))
    assert back.rows == batch.rows and back.errors == batch.errors
    assert back.rollups.what == batch.rollups.what and back.rollups.who == batch.rollups.who


def test_bad_lines_leave_in_batches_of_their_own_not_held_until_rows_fill_one():
    judge = LineJudge(Pricing(), NOW)
    assert line_import.ERRORS_PER_BATCH <= line_import.CHUNK_LINES
    lines = [(i + 1, b"{broken\n") for i in range(3 * line_import.CHUNK_LINES)]
    sent = [b for b in judge.batches(lines, batch_size=10**9) if b is not None]
    assert [len(b.errors) for b in sent if b.errors] == [line_import.CHUNK_LINES] * 3  # one per chunk judged
    assert [n for b in sent for n, _ in b.errors] == list(range(1, len(lines) + 1))  # in line order, each once


def test_the_first_batch_can_be_smaller_and_every_line_leaves_once():
    """The worker sends a small first batch (the storing process has nothing to do until it comes), then
    full ones: each at most its size, every good line in exactly one, in line order."""
    records = varied_lines(700, seed=11)
    for rec in records:
        rec.pop("request_id", None)  # no conflicts: every line is kept
        rec["request_id"] = f"id-{len(str(rec))}-{id(rec)}"
    lines = [(i + 1, (json.dumps(r) + "\n").encode()) for i, r in enumerate(records)]
    judge = LineJudge(Pricing(), NOW)
    sent = [b for b in judge.batches(lines, batch_size=200, first_size=50) if b is not None]
    assert [len(b.rows) for b in sent] == [50, 200, 200, 200, 50]
    ids = [row[9] for b in sent for row in b.rows]
    assert ids == [r["request_id"] for r in records]


def test_batches_near_the_end_of_the_input_are_half_a_full_one():
    """Told what share of the input is unread, the judge makes its last batches smaller (the storing
    process stores the last one after the judging ended): half a full batch, never less but for the
    very last; every line in exactly one batch, in order."""
    total, full = 20 * line_import.CHUNK_LINES, 4 * line_import.CHUNK_LINES
    line = (json.dumps({"provider": "openai", "model": "gpt-4o", "input_tokens": 5, "ts": NOW}) + "\n").encode()
    consumed = 0

    def lines():
        nonlocal consumed
        for i in range(total):
            consumed = i + 1
            yield i + 1, line

    judge = LineJudge(Pricing(), NOW)
    sizes = [len(b.rows) for b in judge.batches(lines(), full, None, lambda: 1 - consumed / total) if b and b.rows]
    assert sum(sizes) == total
    assert sizes[0] == full
    assert full // 2 in sizes  # the batches shrank near the end
    assert all(size >= full // 2 for size in sizes[:-1]) and sizes[-1] <= full
    # without knowing what is left: full batches, and the rest
    judge = LineJudge(Pricing(), NOW)
    assert [len(b.rows) for b in judge.batches(lines(), full) if b and b.rows] == [full] * 5


def test_the_attribution_key_reads_every_attribution_field_in_its_order():
    """records.attribution_key (the Recorder's and the import's key, spelled out for speed) is the
    attribution fields in ATTR_FIELDS order, every one of them, and nothing else."""
    from llmpulse.core.usage.records import ATTR_FIELDS, attribution_key

    fields = {name: f"value of {name}" for name in ATTR_FIELDS} | {"input_tokens": 5, "ts": NOW}
    assert attribution_key(fields.get) == tuple(f"value of {name}" for name in ATTR_FIELDS)
    assert attribution_key({}.get) == (None,) * len(ATTR_FIELDS)
