"""`llmpulse import`'s judging: JSON Lines judged, priced and summed a batch at a time, in a worker
process for a big file (the command's own process stores one batch while the worker judges the next:
two cores), in the command's process otherwise. The storing process sums a worker's batch into its
roll-up groups (BatchSums, RollupSums.add_many) and spreads them over their dimensions on its database
thread, which evens the CPU of the two; judged in the command's process, a batch is summed as judged.

A line is judged by exactly the rules of JsonLines (repeats of a line without request_id, an id seen
with other content) and of the Recorder (an attribution validated once, the calls of a known
attribution priced by its remembered rates, anything less plain — ISO times, raw usage objects, spaced
text — by record_from_mapping's careful path), written out in one loop over a batch: per line this is
a tenth of a microsecond per call saved a dozen times over. tests/test_usage_storage checks that the
import stores what judging each line on its own and storing it with ingest() stores.

A batch leaves as plain values (rows, roll-up sums, new attributions, bad lines): what a pipe
carries between processes cheaply, and what ingest_rows stores in one transaction.
"""

from __future__ import annotations

import gc
import io
import json
import operator
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice, repeat
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from llmpulse.core.redact import register_secrets
from llmpulse.core.usage.pricing import Pricing, linear_cost
from llmpulse.core.usage.recorder import SeenAttribution, judged_carefully
from llmpulse.core.usage.records import (
    _HASH_BITS,
    ATTR_FIELDS,
    FAST_KEYS,
    MAX_LATENCY_MS,
    MAX_TEXT,
    MAX_TOKENS,
    MAX_TS,
    TOKEN_FIELDS,
    RecordError,
    _request_id_key,
    attribution_key,
    content_hash,
    decode_line,
    read_lines,
)
from llmpulse.core.usage.rollup import (
    MINUTE_KEEP_S,
    RollupKeys,
    RollupSums,
    SummedBatch,
)

if TYPE_CHECKING:
    from llmpulse.core.usage.rollup_columns import ColumnSums

CHUNK_LINES = 4096  # lines judged between two looks at the event loop (in-process) or the pipe
# The worker's first batch is this part of a full one: the storing process idles until it comes (a full
# 200,000-line batch kept it waiting ~2 s), while a batch touches most of the roll-up rows of its time
# range however small it is (so every batch small would multiply the upserts).
FIRST_BATCH_PART = 16
ERRORS_PER_BATCH = 1000  # a batch goes out (and its bad lines are printed) once this many lines were bad
READ_BUFFER = 1 << 20
_BOM = b"\xef\xbb\xbf"
_TIME_TYPES = {int, float, type(None)}
_ID_TYPES = {str, type(None)}
_LINE_ENDS = {"", "\n", "\r\n"}  # what may follow a plain line's JSON value
_VALUE, _END = operator.itemgetter(0), operator.itemgetter(1)  # of what JSONDecoder.scan_once returns


@dataclass
class JudgedBatch:
    """Judged lines, ready for ingest_rows: rows (CALL_COLUMNS order, attrs a placeholder of
    `attributions`), their roll-up sums, the attributions first used in this batch, the bad lines."""

    rows: list[tuple[Any, ...]]
    rollups: SummedBatch  # empty from the worker: BatchSums sums them where they are stored
    attributions: dict[int, tuple[Any, ...]]
    errors: list[tuple[int, str]] = field(default_factory=list)
    # the rows' request ids as stored, when the storing process had them ready (ShapeTags.known_forms)
    request_ids: list[Any] | None = None


class LineJudge:
    """Judges numbered lines (records.read_lines) into batches; holds what must be remembered across
    the whole input: the attributions validated, the request ids and repeated contents seen."""

    def __init__(self, pricing: Pricing, now: float, known_providers: Collection[str] = (), *, summing: bool = True):
        self.pricing = pricing
        self.now = now  # a line without ts is stamped the import's start
        self.oldest_minute = now - MINUTE_KEEP_S
        self.known_providers = frozenset(known_providers)
        self.keys = RollupKeys()
        self._seen: dict[tuple[Any, ...], SeenAttribution] = {}  # attribution fields as written -> validated
        self._by_attrs: dict[tuple[Any, ...], SeenAttribution] = {}  # stored form -> the same
        self._repeats: dict[str, int] = {}  # content hash -> lines with it so far
        self._ids: dict[str, int] = {}  # request_id -> its first line: number << 64 | hash of the text
        self._rows: list[tuple[Any, ...]] = []
        # False in the worker: the storing process sums each batch's rows (BatchSums), it has the CPU to spare
        self.summing = summing
        self._sums = RollupSums(self.oldest_minute, self.keys)
        self._new: dict[int, tuple[Any, ...]] = {}
        self._errors: list[tuple[int, str]] = []
        # json.loads' own C scanner (the same decoder settings), without the three Python calls around
        # it per line: 0.4 µs a line. One per judge: it keeps a memo while it scans.
        self._scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

    @property
    def waiting(self) -> int:
        return len(self._rows)

    def take(self) -> JudgedBatch:
        """What was judged since the last take."""
        batch = JudgedBatch(self._rows, self._sums, self._new, self._errors)
        self._rows, self._new, self._errors = [], {}, []
        self._sums = RollupSums(self.oldest_minute, self.keys)
        return batch

    def batches(
        self,
        lines: Iterable[tuple[int, bytes | RecordError]],
        batch_size: int,
        first_size: int | None = None,
        unread: Callable[[], float] | None = None,
    ) -> Iterator[JudgedBatch | None]:
        """A JudgedBatch of at most `batch_size` rows (one transaction each) whenever one is full — the
        first one already at `first_size` rows, when given — and the rest at the end; None after each
        chunk of lines judged in between (a moment for the event loop, in the command's own process).

        `unread`, when given, says what share of the input is still to be read: near its end a batch is
        half of the lines estimated to be left, down to half a full batch, so the storing process, which
        stores the last batch after the judging is over, is left with a smaller one. (Not smaller still:
        a batch in random time order touches most roll-up rows of its range however few calls it has,
        and the storing process, behind by then, would spend longer on more batches than it saves.)"""
        it = iter(lines)
        size = batch_size if first_size is None else min(first_size, batch_size)
        read = 0
        while chunk := list(islice(it, min(CHUNK_LINES, size - len(self._rows)))):
            read += len(chunk)
            self.feed(chunk)  # a line makes at most one row: the batch never passes its size
            # bad lines are reported as they come, not held until a batch fills (a file of only bad lines)
            full = len(self._rows) >= size or len(self._errors) >= ERRORS_PER_BATCH
            if full and self._rows:
                size = batch_size
                left = 1.0 if unread is None else unread()
                if left < 1.0:
                    lines_left = read * left / (1.0 - left)
                    size = min(batch_size, max(batch_size // 2, int(lines_left / 2)))
            yield self.take() if full else None
        yield self.take()

    def _careful(
        self, data: dict[str, Any], key: tuple[Any, ...] | None, source_hash: str | None
    ) -> tuple[tuple[Any, ...], SeenAttribution]:
        """As Recorder._careful: the line's every field judged, its attribution remembered."""
        row, seen = judged_carefully(
            data, self.now, self.pricing, self.known_providers, source_hash, self._by_attrs, self._seen_first
        )
        if key is not None:
            self._seen[key] = seen  # next time: numbers only
        return row, seen

    def _seen_first(self, attrs: tuple[Any, ...], rates: tuple[Any, ...] | None) -> SeenAttribution:
        """A new attribution, under a placeholder its batch carries to the storing process."""
        ref = -(len(self._by_attrs) + 1)
        self._new[ref] = attrs
        return SeenAttribution(attrs, ref, rates, self.keys)

    def _feed_plain(self, lines: list[tuple[int, bytes | RecordError]]) -> bool:
        """A chunk whose every line is plain — JSON objects of known fields, numbers of the right types
        within their bounds, string request ids as they will be stored — judged column by column: each
        field read from every line and checked in one pass in C (map, all, set), then one short loop for
        what depends on the lines before (ids and contents seen, attributions remembered). The same rows
        as _feed_lines gives (tests/test_usage_storage checks both against the one-by-one path). False,
        having changed nothing: a line is not plain; the chunk goes line by line."""
        n = len(lines)
        if not n:
            return True
        numbers, texts = zip(*lines, strict=True)
        try:  # a LineTooLong, a byte that is not UTF-8, a line that is not JSON (or blank): not plain
            strings = list(map(bytes.decode, texts))
            parsed = list(map(self._scan, strings, repeat(0)))
        except (ValueError, TypeError, RecursionError):
            return False
        # A value that does not start at the line's first character (a blank line, leading space, a BOM)
        # stops the scan, which ends the list early; a line with more after its value than its end of
        # line is not plain either. Either way json.loads, line by line, says what is wrong.
        if len(parsed) != n:
            return False
        if not set(map(operator.getitem, strings, map(slice, map(_END, parsed), repeat(None)))) <= _LINE_ENDS:
            return False
        datas = list(map(_VALUE, parsed))
        if set(map(type, datas)) != {dict}:
            return False
        fields = set().union(*datas)  # the fields any line has: one not given anywhere is not read
        if not fields <= FAST_KEYS:
            return False
        get = dict.get

        def column(name: str, default: Any = None) -> list[Any]:
            if name not in fields:
                return [default] * n
            return list(map(get, datas, repeat(name, n), repeat(default, n)))

        tin, tout, tcr, tcw = (column(name, 0) for name in TOKEN_FIELDS)
        ts, latency, rid = column("ts"), column("latency_ms"), column("request_id")
        ints = {int}
        if not (
            set(map(type, tin)) == ints
            and set(map(type, tout)) == ints
            and set(map(type, tcr)) == ints
            and set(map(type, tcw)) == ints
            and min(tout) >= 0
            and min(tcr) >= 0
            and min(tcw) >= 0
            and max(tin) <= MAX_TOKENS
            and max(tout) <= MAX_TOKENS
            and all(map(operator.ge, tin, map(operator.add, tcr, tcw)))
            and set(map(type, ts)) <= _TIME_TYPES
            and set(map(type, latency)) <= _TIME_TYPES
            and set(map(type, rid)) <= _ID_TYPES
        ):
            return False
        if None in ts:
            ts = [self.now if t is None else t for t in ts]
        present = [x for x in latency if x is not None] if None in latency else latency
        ids_given = [r for r in rid if r is not None] if None in rid else rid
        # NaN fails every comparison, so these say "in bounds" only of numbers that are
        if not (
            all(map(operator.le, repeat(0.0), ts))
            and all(map(operator.ge, repeat(MAX_TS), ts))
            and all(map(operator.le, repeat(0.0), present))
            and all(map(operator.ge, repeat(MAX_LATENCY_MS), present))
            and all(map(str.isascii, ids_given))
            and all(map(operator.eq, ids_given, map(str.strip, ids_given)))
            and (not ids_given or (min(map(len, ids_given)) > 0 and max(map(len, ids_given)) <= MAX_TEXT))
        ):
            return False
        try:  # the attribution fields exactly as written (Recorder.add), each looked up once
            keys = list(
                zip(*(map(get, datas, repeat(name, n)) if name in fields else repeat(None, n) for name in ATTR_FIELDS))
            )
            seens = list(map(self._seen.get, keys))
        except TypeError:  # an unhashable value: not plain
            return False
        ts = list(map(float, ts))
        # whole milliseconds, as fast_numbers and record_from_mapping keep them
        if present is not latency:
            latency = [None if x is None else float(round(x)) for x in latency]
        else:
            latency = list(map(float, map(round, latency)))
        # what marks an id seen: its line's number << 64 | the hash of its text (no BOM here: a BOM line
        # is not JSON), worked out in C
        hashes = map(operator.and_, map(hash, map(bytes.strip, texts)), repeat(_HASH_BITS))
        marks = list(map(operator.or_, map(operator.lshift, numbers, repeat(64)), hashes))
        rows, errors = self._rows, self._errors
        append = rows.append
        summed: list[tuple[Any, ...]] = []
        add = summed.append
        ids, repeats = self._ids, self._repeats
        mark_seen = ids.setdefault
        pricing, summing = self.pricing, self.summing
        for number, data, key, seen, r, mark, t, a, b, c, d, ms in zip(
            numbers, datas, keys, seens, rid, marks, ts, tin, tout, tcr, tcw, latency, strict=True
        ):
            first = mark
            source_hash: str | None = None
            if r is None:  # JsonLines: keyed by its content
                source = content_hash(data)
                repeat_ = repeats.get(source, 0)
                source_hash = f"{source}#{repeat_}" if repeat_ else source
            else:
                # one probe of the (big) dictionary of ids: this line marks the id, unless a line before did
                first = mark_seen(r, mark)
                if first != mark and (first ^ mark) & _HASH_BITS:
                    errors.append(
                        (
                            number,
                            f"request_id {r!r}: line {first >> 64} has the same id with different content; "
                            "expected one line per call (the first is kept)",
                        )
                    )
                    continue
            if seen is None:  # an attribution not seen before: every field judged
                try:
                    row, seen = self._careful(data, key, source_hash)
                except RecordError as exc:
                    errors.append((number, str(exc)))
                    if r is not None and first == mark:  # only a line kept marks its id
                        del ids[r]
                    continue
                append(row)
                t, _, a, b, c, d, ms, cost = row[1:9]
            else:
                rates = seen.rates
                cost = None if rates is None else linear_cost(rates, a, b, c, d)
                if cost is None:
                    cost = pricing.cost(seen.attrs[0], seen.attrs[1], a, b, c, d, t)
                append((None if r is not None else "h:" + source_hash, t, seen.ref, a, b, c, d, ms, cost, r, None))  # type: ignore[operator]
            if r is None:
                repeats[source] = repeat_ + 1
            if summing:  # not in the worker: a tuple a row it would build for nothing
                add((t, seen.what, seen.who, a, b, c, d, ms, cost))
        if summing:
            self._sums.add_many(summed)
        return True

    def feed(self, lines: list[tuple[int, bytes | RecordError]]) -> None:
        """Judge lines into the batch being built: a chunk of plain lines column by column (_feed_plain),
        any other chunk line by line."""
        if not self._feed_plain(lines):
            self._feed_lines(lines)

    def _feed_lines(self, lines: Iterable[tuple[int, bytes | RecordError]]) -> None:
        """Line by line. The common line — an attribution seen before, plainly typed numbers, a string
        request id — is handled inline: what JsonLines.record, Recorder.add and fast_numbers do for it,
        in that order, without their calls."""
        rows, errors = self._rows, self._errors
        append = rows.append
        summed: list[tuple[Any, ...]] = []
        add = summed.append
        seen_of = self._seen.get
        ids, repeats = self._ids, self._repeats
        now, pricing = self.now, self.pricing
        loads, fast_keys = json.loads, FAST_KEYS
        for number, line in lines:
            try:
                if not isinstance(line, bytes):
                    raise line  # LineTooLong
                try:
                    data = loads(line.decode())
                except (ValueError, RecursionError):  # not UTF-8, not JSON, a BOM, blank: decode_line says which
                    if not line.strip():
                        continue
                    data = decode_line(line)
                if type(data) is not dict:
                    raise RecordError(f"found {type(data).__name__}; expected a JSON object")
                g = data.get
                # JsonLines: a request id names one call; a line without one is keyed by its content
                v = g("request_id")
                rid = (v.strip() or None) if type(v) is str else _request_id_key(v)
                first = text_hash = repeat = 0
                source: str | None = None
                source_hash: str | None = None
                if rid is None:
                    source = content_hash(data)
                    repeat = repeats.get(source, 0)
                    source_hash = f"{source}#{repeat}" if repeat else source
                else:
                    text = line.strip()
                    text_hash = _HASH_BITS & hash(text[3:] if text.startswith(_BOM) else text)
                    first = ids.get(rid, 0)
                    if first and first & _HASH_BITS != text_hash:
                        raise RecordError(
                            f"request_id {rid!r}: line {first >> 64} has the same id with different content; "
                            "expected one line per call (the first is kept)"
                        )
                # Recorder.add: the attribution fields exactly as written
                key: tuple[Any, ...] | None = attribution_key(g)
                try:
                    seen = seen_of(key)  # type: ignore[arg-type]
                except TypeError:  # an unhashable value: the careful path says what is wrong
                    seen = key = None
                plain = False
                if seen is not None and data.keys() <= fast_keys:  # fast_numbers
                    tin = g("input_tokens", 0)
                    tout = g("output_tokens", 0)
                    tcr = g("cache_read_tokens", 0)
                    tcw = g("cache_write_tokens", 0)
                    ts = g("ts")
                    latency = g("latency_ms")
                    rid_field = g("request_id")
                    plain = (
                        type(tin) is int
                        and type(tout) is int
                        and type(tcr) is int
                        and type(tcw) is int
                        and tout >= 0
                        and tcr >= 0
                        and tcw >= 0
                        and tin >= tcr + tcw
                        and tin <= MAX_TOKENS
                        and tout <= MAX_TOKENS
                        and (ts is None or ((type(ts) is float or type(ts) is int) and 0 <= ts <= MAX_TS))
                        and (
                            latency is None
                            or ((type(latency) is float or type(latency) is int) and 0 <= latency <= MAX_LATENCY_MS)
                        )
                        and (
                            rid_field is None
                            or (
                                type(rid_field) is str
                                and 0 < len(rid_field) <= MAX_TEXT
                                and rid_field == rid
                                and rid_field.isascii()
                            )
                        )
                    )
                if plain:
                    assert seen is not None
                    ts = now if ts is None else float(ts)
                    if latency is not None:
                        latency = float(round(latency))  # whole milliseconds, as fast_numbers (records.MAX_LATENCY_MS)
                    rates = seen.rates
                    cost = None if rates is None else linear_cost(rates, tin, tout, tcr, tcw)
                    if cost is None:
                        cost = pricing.cost(seen.attrs[0], seen.attrs[1], tin, tout, tcr, tcw, ts)
                    dedupe = None if rid_field is not None or source_hash is None else "h:" + source_hash
                    append((dedupe, ts, seen.ref, tin, tout, tcr, tcw, latency, cost, rid_field, None))
                else:
                    row, seen = self._careful(data, key, source_hash)
                    append(row)
                    ts, _, tin, tout, tcr, tcw, latency, cost = row[1:9]
                if rid is None:
                    repeats[source] = repeat + 1  # type: ignore[index]
                elif not first:
                    ids[rid] = number << 64 | text_hash
            except RecordError as exc:
                errors.append((number, str(exc)))
                continue
            add((ts, seen.what, seen.who, tin, tout, tcr, tcw, latency, cost))
        if self.summing:
            self._sums.add_many(summed)


class BatchSums:
    """In the storing process: a worker's batch summed for its roll-ups, from its rows, with numpy
    (rollup_columns.ColumnSums: a batch is 200,000 calls; the worker, the busier of the two processes,
    does not sum). One RollupKeys for the whole import, as the Recorder has."""

    def __init__(self, oldest_minute: float) -> None:
        # numpy imported now, while the worker starts, not when its first batch is waited for (0.1 s)
        import llmpulse.core.usage.rollup_columns  # noqa: F401

        self.oldest_minute = oldest_minute
        self.keys = RollupKeys()
        self._groups: dict[int, tuple[int, int]] = {}  # attribution placeholder -> (what, who)

    def of(self, batch: JudgedBatch) -> ColumnSums:
        import numpy as np

        from llmpulse.core.usage.rollup_columns import ColumnSums

        groups = self._groups
        for ref, attrs in batch.attributions.items():
            groups[ref] = self.keys.of(attrs)
        # row[1:9] is (ts, attrs, input, output, cache read, cache write, latency, cost), as Recorder.add
        # reads it: each a column, read in C; None (no latency, price unknown) is NaN in a float column
        rows, get, n = batch.rows, operator.itemgetter, len(batch.rows)
        refs, where = np.unique(np.fromiter(map(get(2), rows), np.int64, n), return_inverse=True)
        parts = np.asarray([groups[ref] for ref in refs.tolist()], dtype=np.int64).reshape(-1, 2)
        return ColumnSums(
            self.keys,
            self.oldest_minute,
            np.fromiter(map(get(1), rows), np.float64, n),
            parts[where, 0],
            parts[where, 1],
            [np.fromiter(map(get(i), rows), np.int64, n) for i in range(3, 7)],
            np.array(list(map(get(7), rows)), dtype=np.float64),
            np.array(list(map(get(8), rows)), dtype=np.float64),
        )


# -- the worker process ---------------------------------------------------------------------------


@dataclass
class WorkerFailed:
    """Sent instead of a batch when the worker met something it did not expect (a bug)."""

    error: str


def judge_in_worker(out: Connection, settings: WorkerSettings) -> None:
    """The worker process: reads the file, sends a JudgedBatch every `batch_size` good lines, then None.
    Ctrl-C is the parent's to handle (it ends this process); a closed pipe ends it too."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # As in the storing process (cli import): the rows and the ids seen are millions of small acyclic
    # objects, and the cycle collector walking them again and again was a fifth of the worker's time.
    gc.disable()
    register_secrets(settings.secrets)  # a message cut after redaction never shows part of a loaded key
    judge = LineJudge(
        Pricing(settings.prices, settings.local_providers), settings.now, settings.known_providers, summing=False
    )
    try:
        with open(settings.path, "rb", buffering=READ_BUFFER) as stream:
            # The first batch small: the storing process waits for it with nothing else to do
            first = max(CHUNK_LINES, settings.batch_size // FIRST_BATCH_PART)
            size = os.fstat(stream.fileno()).st_size

            def unread() -> float:
                return max(0.0, 1.0 - stream.tell() / size) if size else 0.0

            for batch in judge.batches(read_lines(stream), settings.batch_size, first, unread):
                if batch is not None:
                    out.send_bytes(_dumps(batch))
        out.send_bytes(_dumps(None))
    except (BrokenPipeError, EOFError):
        return
    except BaseException as exc:
        try:
            out.send_bytes(_dumps(WorkerFailed(f"{type(exc).__name__}: {exc}")))
        except OSError:
            pass
    finally:
        out.close()


def _dumps(value: Any) -> bytes:
    """Pickled without its memo: a batch is a million small tuples, none shared or cyclic, and keeping
    each in the memo cost five times the pickling itself (0.58 vs 0.12 µs a row)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    pickler.dump(value)
    return buffer.getvalue()


@dataclass
class WorkerSettings:
    path: str
    now: float
    batch_size: int
    prices: Any  # PriceConfig
    local_providers: list[str]
    known_providers: list[str]
    secrets: list[str]


class Worker:
    """The worker as the parent sees it: `python -m llmpulse.core.usage.line_import FD`, its settings
    written to its standard input, its batches read from the pipe FD. A process of its own, not a
    multiprocessing one: that would import the caller's main module again in the child."""

    def __init__(self, settings: WorkerSettings):
        read_fd, write_fd = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llmpulse.core.usage.line_import", str(write_fd)],
                stdin=subprocess.PIPE,
                pass_fds=(write_fd,),
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.batches = Connection(read_fd, writable=False)
        assert self.process.stdin is not None
        with self.process.stdin as settings_in:
            pickle.dump(settings, settings_in)

    def receive(self) -> JudgedBatch | WorkerFailed | None:
        """The next batch (blocking; None: the end). EOFError: the worker ended without saying so."""
        got: JudgedBatch | WorkerFailed | None = pickle.loads(self.batches.recv_bytes())
        return got

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.batches.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _main() -> None:
    out = Connection(int(sys.argv[1]), readable=False)
    settings = pickle.load(sys.stdin.buffer)
    judge_in_worker(out, settings)


if __name__ == "__main__":
    # Through the module's own name: what it sends must unpickle as llmpulse's classes, not __main__'s.
    from llmpulse.core.usage.line_import import _main as main

    main()
