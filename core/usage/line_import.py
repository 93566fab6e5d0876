"""`llmpulse import`'s judging: JSON Lines judged, priced and summed a batch at a time, in a worker
process for a big file (the command's own process stores one batch while the worker judges the next:
two cores), in the command's process otherwise. The worker sums a batch's roll-up groups (RollupSums);
the storing process spreads them over their dimensions, on its database thread (the worker is the
busier of the two).

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

import bisect
import json
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from multiprocessing.connection import Connection
from typing import Any

from llmpulse.core.redact import register_secrets
from llmpulse.core.usage.pricing import Pricing, linear_cost
from llmpulse.core.usage.recorder import SeenAttribution
from llmpulse.core.usage.records import (
    _HASH_BITS,
    FAST_KEYS,
    MAX_LATENCY_MS,
    MAX_TEXT,
    MAX_TOKENS,
    MAX_TS,
    RecordError,
    _request_id_key,
    attrs_of,
    content_hash,
    decode_line,
    read_lines,
    record_from_mapping,
    refuse_provider_typo,
)
from llmpulse.core.usage.rollup import (
    _NO_LATENCY,
    LATENCY_BOUNDS_MS,
    MINUTE_KEEP_S,
    RollupKeys,
    RollupSums,
    record_row,
)

CHUNK_LINES = 4096  # lines judged between two looks at the event loop (in-process) or the pipe
READ_BUFFER = 1 << 20
_BOM = b"\xef\xbb\xbf"


@dataclass
class JudgedBatch:
    """Judged lines, ready for ingest_rows: rows (CALL_COLUMNS order, attrs a placeholder of
    `attributions`), their roll-up sums, the attributions first used in this batch, the bad lines."""

    rows: list[tuple[Any, ...]]
    rollups: RollupSums
    attributions: dict[int, tuple[Any, ...]]
    errors: list[tuple[int, str]] = field(default_factory=list)


class LineJudge:
    """Judges numbered lines (records.read_lines) into batches; holds what must be remembered across
    the whole input: the attributions validated, the request ids and repeated contents seen."""

    def __init__(self, pricing: Pricing, now: float, known_providers: Collection[str] = ()):
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
        self._sums = RollupSums(self.oldest_minute, self.keys)
        self._new: dict[int, tuple[Any, ...]] = {}
        self._errors: list[tuple[int, str]] = []

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
        self, lines: Iterable[tuple[int, bytes | RecordError]], batch_size: int
    ) -> Iterator[JudgedBatch | None]:
        """A JudgedBatch of at most `batch_size` rows (one transaction each) whenever one is full, and
        the rest at the end; None after each chunk of lines judged in between (a moment for the event
        loop, in the command's own process)."""
        it = iter(lines)
        while chunk := list(islice(it, min(CHUNK_LINES, batch_size - len(self._rows)))):
            self.feed(chunk)  # a line makes at most one row: the batch never passes batch_size
            yield self.take() if len(self._rows) >= batch_size else None
        yield self.take()

    def _careful(
        self, data: dict[str, Any], key: tuple[Any, ...] | None, source_hash: str | None
    ) -> tuple[tuple[Any, ...], SeenAttribution]:
        """Recorder._careful: the line's every field judged, its attribution remembered."""
        rec = record_from_mapping(data, self.now)
        refuse_provider_typo(rec.provider, self.known_providers)
        rec.source_hash = source_hash
        attrs = attrs_of(rec)
        seen = self._by_attrs.get(attrs)
        if seen is None:
            rates = None if self.pricing.prices.auto_update else self.pricing.rates(rec.provider, rec.model)
            ref = -(len(self._by_attrs) + 1)
            self._new[ref] = attrs
            seen = self._by_attrs[attrs] = SeenAttribution(attrs, ref, rates, self.keys)
        if key is not None:
            self._seen[key] = seen  # next time: numbers only
        return record_row(rec, self.pricing, seen.ref), seen

    def feed(self, lines: Iterable[tuple[int, bytes | RecordError]]) -> None:
        """Judge lines into the batch being built. The common line — an attribution seen before, plainly
        typed numbers, a string request id — is handled inline: what JsonLines.record, Recorder.add,
        fast_numbers and RollupSums.add do for it, in that order, without their calls."""
        rows, errors = self._rows, self._errors
        append = rows.append
        sums_what, sums_who = self._sums.what, self._sums.who
        what_get, who_get = sums_what.get, sums_who.get
        seen_of = self._seen.get
        ids, repeats = self._ids, self._repeats
        oldest, now, pricing = self.oldest_minute, self.now, self.pricing
        loads, fast_keys, bounds, bisect_left = json.loads, FAST_KEYS, LATENCY_BOUNDS_MS, bisect.bisect_left
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
                key: tuple[Any, ...] | None = (
                    g("provider"),
                    g("model"),
                    g("status"),
                    g("error_kind"),
                    g("is_fallback"),
                    g("fallback_from"),
                    g("department"),
                    g("agent"),
                    g("user"),
                    g("task_type"),
                    g("category"),
                    g("endpoint"),
                )
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
            # RollupSums.add, spelled out
            t = int(ts)
            gk = (t // 60 if ts >= oldest else t // 3600 * 60, seen.what)
            a = what_get(gk)
            if a is None:
                a = sums_what[gk] = [0, 0, 0, 0, 0, 0, 0.0, *_NO_LATENCY]
            gk = (t // 86400, seen.who)
            b = who_get(gk)
            if b is None:
                b = sums_who[gk] = [0, 0, 0, 0, 0, 0, 0.0, *_NO_LATENCY]
            a[0] += 1
            b[0] += 1
            a[2] += tin
            b[2] += tin
            a[3] += tout
            b[3] += tout
            if tcr:
                a[4] += tcr
                b[4] += tcr
            if tcw:
                a[5] += tcw
                b[5] += tcw
            if cost is None:
                a[1] += 1
                b[1] += 1
            else:
                a[6] += cost
                b[6] += cost
            if latency is not None:
                i = 7 + bisect_left(bounds, latency)
                a[i] += 1
                b[i] += 1


# -- the worker process ---------------------------------------------------------------------------


@dataclass
class WorkerFailed:
    """Sent instead of a batch when the worker met something it did not expect (a bug)."""

    error: str


def judge_in_worker(out: Connection, settings: WorkerSettings) -> None:
    """The worker process: reads the file, sends a JudgedBatch every `batch_size` good lines, then None.
    Ctrl-C is the parent's to handle (it ends this process); a closed pipe ends it too."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    register_secrets(settings.secrets)  # a message cut after redaction never shows part of a loaded key
    judge = LineJudge(Pricing(settings.prices, settings.local_providers), settings.now, settings.known_providers)
    try:
        with open(settings.path, "rb", buffering=READ_BUFFER) as stream:
            for batch in judge.batches(read_lines(stream), settings.batch_size):
                if batch is not None:
                    out.send(batch)
        out.send(None)
    except (BrokenPipeError, EOFError):
        return
    except BaseException as exc:
        try:
            out.send(WorkerFailed(f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
    finally:
        out.close()


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
        got: JudgedBatch | WorkerFailed | None = self.batches.recv()
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
