"""The recorder applications use to report their LLM calls:

    async with Recorder(store, pricing_for(ctx)) as rec:
        rec.record(provider="openai", model="gpt-4o", input_tokens=812, output_tokens=95, latency_ms=640)

`record()` is synchronous and cheap (validate, append); writes are batched and flushed on a timer, when
the batch is full, and on exit — a clean shutdown never loses a record.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core.clock import SYSTEM_CLOCK, Clock
from core.store import Store
from core.usage.pricing import Pricing
from core.usage.records import fast_row, record_from_mapping
from core.usage.rollup import IngestResult, ingest_rows


def pricing_for(ctx: Any) -> Pricing:
    """Pricing for a Context: its [prices] config, and its local providers free."""
    usage = ctx.config.usage
    return Pricing(usage.prices if usage is not None else None, [p.id for p in ctx.providers if p.local])


class Recorder:
    def __init__(self, store: Store, pricing: Pricing | None = None, *, clock: Clock = SYSTEM_CLOCK,
                 flush_interval: float = 1.0, batch_size: int = 1000):
        self.store = store
        self.pricing = pricing or Pricing()
        self.clock = clock
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.pending: list[tuple] = []          # priced rows in RECORD_COLUMNS order
        self.stored = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task | None = None
        self._flushes: set[asyncio.Task] = set()

    def record(self, **fields: Any) -> None:
        """Queue one record (RecordError if a field is wrong); it is written within flush_interval."""
        now = self.clock.now()
        row = fast_row(fields, now, self.pricing.cost)
        if row is None:
            rec = record_from_mapping(fields, now)
            row = (rec.dedupe_key(), rec.ts, rec.provider, rec.model, rec.input_tokens, rec.output_tokens,
                   rec.cache_read_tokens, rec.cache_write_tokens, rec.latency_ms, rec.status, rec.error_kind,
                   int(rec.is_fallback), rec.fallback_from, rec.department, rec.agent, rec.user, rec.task_type,
                   rec.category, rec.endpoint, rec.request_id,
                   self.pricing.cost(rec.provider, rec.model, rec.input_tokens, rec.output_tokens,
                                     rec.cache_read_tokens, rec.cache_write_tokens))
        self.pending.append(row)
        if len(self.pending) >= self.batch_size and not self._flushes:
            task = asyncio.get_running_loop().create_task(self.flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def flush(self) -> IngestResult | None:
        async with self._lock:
            batch, self.pending = self.pending, []
            if not batch:
                return None
            try:
                result = await ingest_rows(self.store, batch)
            except BaseException:
                self.pending[:0] = batch       # keep them for the next try (or the final flush)
                raise
            self.stored += result.stored
            return result

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:
                pass   # kept in pending; the next tick or the exit flush retries

    async def __aenter__(self) -> "Recorder":
        self._timer = asyncio.get_running_loop().create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await self.flush()
