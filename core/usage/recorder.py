"""The recorder applications use to report their LLM calls:

    async with Recorder(store, pricing_for(ctx)) as rec:
        rec.record(provider="openai", model="gpt-4o", input_tokens=812, output_tokens=95, latency_ms=640)

`record()` is synchronous and cheap (validate, append); writes are batched and flushed on a timer, when
the batch is full, and on exit — a clean shutdown never loses a record. SIGTERM (systemd, Kubernetes,
`kill`) flushes before the process ends, when the application has not taken SIGTERM for itself. Only a
SIGKILL (or a power cut) loses calls: those recorded in the last `flush_interval` (1 s by default).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from llmpulse.core.clock import SYSTEM_CLOCK, Clock
from llmpulse.core.store import Store, StoreError
from llmpulse.core.usage.pricing import Pricing, linear_cost
from llmpulse.core.usage.records import (
    FAST_KEYS,
    attribution_key,
    attrs_of,
    fast_numbers,
    record_from_mapping,
    refuse_provider_typo,
)
from llmpulse.core.usage.rollup import (
    MINUTE_KEEP_S,
    AttrRefs,
    IngestResult,
    RollupKeys,
    RollupSums,
    ingest_rows,
    record_row,
)

log = logging.getLogger("llmpulse.recorder")
SIGTERM_FLUSH_S = 10.0  # how long a SIGTERM waits for the last flush (a busy database included)


def pricing_for(ctx: Any) -> Pricing:
    """Pricing for a Context: its [prices] config, and its local providers free."""
    usage = ctx.config.usage
    return Pricing(usage.prices if usage is not None else None, [p.id for p in ctx.providers if p.local])


class SeenAttribution:
    """One validated attribution (who and what) the recorder has seen: its stored form, its usage_attrs
    id (a placeholder until stored, see AttrRefs), the rates its calls are priced at, and its roll-up
    groups (RollupKeys)."""

    __slots__ = ("attrs", "rates", "ref", "what", "who")

    def __init__(self, attrs: tuple[Any, ...], ref: int, rates: tuple[Any, ...] | None, keys: RollupKeys):
        self.attrs = attrs
        self.ref = ref
        self.rates = rates
        self.what, self.who = keys.of(attrs)


def judged_carefully(
    fields: dict[str, Any],
    now: float,
    pricing: Pricing,
    known_providers: Collection[str],
    source_hash: str | None,
    by_attrs: dict[tuple[Any, ...], SeenAttribution],
    seen_first: Callable[[tuple[Any, ...], tuple[Any, ...] | None], SeenAttribution],
) -> tuple[tuple[Any, ...], SeenAttribution]:
    """A record whose attribution is not known by its fields as given: every field judged
    (record_from_mapping, RecordError if one is wrong), its attribution found among those seen in their
    stored form or made by `seen_first` (with the rates its calls are priced at) and kept in `by_attrs`;
    its usage_calls row. The Recorder's and the import's careful path."""
    rec = record_from_mapping(fields, now)
    refuse_provider_typo(rec.provider, known_providers)
    rec.source_hash = source_hash
    attrs = attrs_of(rec)
    seen = by_attrs.get(attrs)
    if seen is None:
        rates = None if pricing.prices.auto_update else pricing.rates(rec.provider, rec.model)
        seen = by_attrs[attrs] = seen_first(attrs, rates)
    return record_row(rec, pricing, seen.ref), seen


class Recorder:
    def __init__(
        self,
        store: Store,
        pricing: Pricing | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        flush_interval: float = 1.0,
        batch_size: int = 1000,
        before_batch: Callable[[], Awaitable[None]] | None = None,
        known_providers: Collection[str] = (),
    ):
        self.store = store
        # A provider id one slip from one of these ("opneai") is refused, not stored as a new provider.
        self.known_providers = frozenset(known_providers)
        self.pricing = pricing or Pricing()
        self.clock = clock
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.pending: list[tuple[Any, ...]] = []  # priced usage_calls rows (CALL_COLUMNS order)
        self._keys = RollupKeys()
        # The same rows' roll-up values (RollupSums.add_many), summed into `sums` when the batch is sealed
        self.summed: list[tuple[Any, ...]] = []
        self.sums = RollupSums(clock.now() - MINUTE_KEEP_S, self._keys)
        # Batches of `batch_size` rows (with their sums) waiting for the database, oldest first. Each is
        # one transaction: however fast records arrive, a flush holds the write lock for one batch at a
        # time, so another writer (the collector's round) waits behind a few milliseconds, not behind
        # everything that piled up while the previous flush ran (measured 0.4 s at 75k records/s).
        self._batches: deque[tuple[list[tuple[Any, ...]], RollupSums]] = deque()
        # Awaited before each batch's transaction: a bulk writer (the ingest server) holds back there
        # while the collector runs a round (see core/round_flag.py).
        self.before_batch = before_batch
        self.stored = 0
        self.duplicates = 0  # rows already stored (same request id or imported line)
        self.unknown_price = 0  # rows stored without a price
        self.refused = 0  # rows the database refused at flush (dropped one by one, the rest stored)
        self._seen: dict[tuple[Any, ...], SeenAttribution] = {}  # attribution fields as passed -> validated
        self._by_attrs: dict[tuple[Any, ...], SeenAttribution] = {}  # stored attribution -> the same
        self._refs = AttrRefs(store)
        self._unresolved: list[SeenAttribution] = []  # not yet stored: a placeholder ref
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[IngestResult | None]] = set()

    def record(self, **fields: Any) -> None:
        """Queue one record (RecordError if a field is wrong); it is written within flush_interval.

        The common case costs about two microseconds: an attribution seen before was validated then, so
        only the numbers are checked, the price is a multiply-add with the rates remembered for it, and the
        call's roll-up values wait with it for its batch to be summed (RollupSums.add_many)."""
        self.add(fields)

    def add(self, fields: dict[str, Any], source_hash: str | None = None) -> None:
        """record(), for fields already in a dict (a decoded JSON line: not copied, not changed).
        `source_hash`: an imported line's content hash, its dedupe key when it has no request_id."""
        # The attribution fields exactly as passed: the recorder remembers which of these it has validated,
        # so a repeat (most calls) skips straight to the numbers.
        key = attribution_key(fields.get)
        remembered: tuple[Any, ...] | None = key  # None: not to be remembered
        try:
            seen = self._seen.get(key)
        except TypeError:  # an unhashable value: the careful path says what is wrong
            remembered = seen = None
        nums = fast_numbers(fields, self.clock.now) if seen is not None and fields.keys() <= FAST_KEYS else None
        if nums is None or seen is None:
            row, seen = self._careful(fields, remembered, source_hash)
            ts, _, tin, tout, tcr, tcw, latency, cost = row[1:9]
        else:
            dedupe, ts, tin, tout, tcr, tcw, latency, rid = nums
            cost = None if seen.rates is None else linear_cost(seen.rates, tin, tout, tcr, tcw)
            if cost is None:
                cost = self.pricing.cost(seen.attrs[0], seen.attrs[1], tin, tout, tcr, tcw, ts)
            if source_hash is not None and rid is None:
                dedupe = "h:" + source_hash  # as UsageRecord.dedupe_key()
            row = (dedupe, ts, seen.ref, tin, tout, tcr, tcw, latency, cost, rid, None)
        self.pending.append(row)
        self.summed.append((ts, seen.what, seen.who, tin, tout, tcr, tcw, latency, cost))
        if len(self.pending) >= self.batch_size:
            self._seal()
            if not any(not t.done() for t in self._flushes):  # a running flush takes the new batch too
                task = asyncio.get_running_loop().create_task(self.flush())
                self._flushes.add(task)
                task.add_done_callback(self._flushes.discard)

    @property
    def waiting(self) -> int:
        """Records recorded and not yet stored."""
        return len(self.pending) + sum(len(rows) for rows, _ in self._batches)

    def _seal(self) -> None:
        """The rows so far become a batch of their own (one transaction); new rows start the next."""
        if self.pending:
            self.sums.add_many(self.summed)
            self._batches.append((self.pending, self.sums))
            self.pending, self.summed = [], []
            self.sums = RollupSums(self.clock.now() - MINUTE_KEEP_S, self._keys)

    def _careful(
        self, fields: dict[str, Any], key: tuple[Any, ...] | None, source_hash: str | None
    ) -> tuple[tuple[Any, ...], SeenAttribution]:
        row, seen = judged_carefully(
            fields, self.clock.now(), self.pricing, self.known_providers, source_hash, self._by_attrs, self._seen_first
        )
        if key is not None:
            self._seen[key] = seen  # these attribution fields are good: next time, numbers only
        return row, seen

    def _seen_first(self, attrs: tuple[Any, ...], rates: tuple[Any, ...] | None) -> SeenAttribution:
        seen = SeenAttribution(attrs, self._refs.ref(attrs), rates, self._keys)
        if seen.ref < 0:
            self._unresolved.append(seen)
        return seen

    async def flush(self) -> IngestResult | None:
        """Store everything recorded so far, a batch (at most `batch_size` rows) per transaction; None
        when there was nothing. Records that arrive meanwhile are stored by the same flush."""
        async with self._lock:
            self._seal()
            if not self._batches:
                return None
            total = IngestResult(0, 0, 0)
            while self._batches:
                if self.before_batch is not None:
                    await self.before_batch()
                    self._seal()  # what arrived while it held back is stored in this flush too
                batch, sums = self._batches[0]
                try:
                    result = await ingest_rows(self.store, batch, self.clock.now(), sums, self._refs.placeholders)
                except (StoreError, sqlite3.OperationalError, asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                    raise  # the database, not the rows: the batch stays first in line for the next try (or the exit)
                except Exception:
                    # A row the database refuses (it passed record(): a bug, not the caller's data) must not
                    # take the batch, and every batch after it, down with it: store the rows one by one.
                    result = await self._store_one_by_one(batch)
                self._batches.popleft()
                self.stored += result.stored
                self.duplicates += result.duplicates
                self.unknown_price += result.unknown_price
                total = IngestResult(
                    total.stored + result.stored,
                    total.duplicates + result.duplicates,
                    total.unknown_price + result.unknown_price,
                )
                for seen in self._unresolved:
                    seen.ref = self._refs.ref(seen.attrs)
                self._unresolved = [seen for seen in self._unresolved if seen.ref < 0]
            return total

    async def _store_one_by_one(self, batch: list[tuple[Any, ...]]) -> IngestResult:
        stored = duplicates = unknown = 0
        for row in batch:
            try:
                one = await ingest_rows(self.store, [row], self.clock.now(), None, self._refs.placeholders)
            except (StoreError, sqlite3.OperationalError):
                raise
            except Exception as exc:
                self.refused += 1
                log.error("usage record refused by the database and dropped: %s: %s", type(exc).__name__, exc)
                continue
            stored, duplicates, unknown = stored + one.stored, duplicates + one.duplicates, unknown + one.unknown_price
        return IngestResult(stored, duplicates, unknown)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:
                pass  # kept in pending; the next tick or the exit flush retries

    async def __aenter__(self) -> Recorder:
        loop = asyncio.get_running_loop()
        self._timer = loop.create_task(self._tick())
        self._sigterm_installed = False
        # Flush on SIGTERM — only when nobody else handles it (the default would end the process with
        # the pending calls in memory); then end the process as SIGTERM would have.
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            try:
                loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)
                self._sigterm_installed = True
            except (NotImplementedError, RuntimeError, ValueError):  # not on this platform or loop
                pass
        return self

    def _on_sigterm(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_signal_handler(signal.SIGTERM)
        self._sigterm_installed = False
        task = loop.create_task(self._flush_then_terminate())
        self._flushes.add(task)

    async def _flush_then_terminate(self) -> None:
        try:
            await asyncio.wait_for(self.flush(), timeout=SIGTERM_FLUSH_S)
        except Exception as exc:
            log.error("SIGTERM: pending usage records could not be stored: %s: %s", type(exc).__name__, exc)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)  # the default action: end as SIGTERM would have

    async def __aexit__(self, *exc: object) -> None:
        if getattr(self, "_sigterm_installed", False):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            self._sigterm_installed = False
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await self.flush()
