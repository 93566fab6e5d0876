"""The server's way into the database: a bounded queue in front of the usage Recorder.

Every record the server accepts goes through `Recorder.record()` — the same validation, pricing and
batched roll-up as an application's own calls — and is written within `flush_interval`. The queue is the
Recorder's pending batch: when it already holds `capacity` records (the database is slower than the
senders, or stuck), the server answers 503 with Retry-After instead of letting memory grow, and OTLP
exporters retry later. `close()` writes everything accepted: what was answered 200 is in the database.

Writes are batches of BATCH_RECORDS, one transaction each, and before each one the queue holds back
while the collector runs a round (core/round_flag.py): ingest at full speed leaves the rounds' writes
a free database.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from llmpulse.core.clock import SYSTEM_CLOCK, Clock
from llmpulse.core.round_flag import RoundYield
from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.recorder import Recorder
from llmpulse.core.usage.records import RecordError

CLOSE_TRIES = 3  # a final flush that meets a locked database tries again (each waits out the busy timeout)
RETRY_AFTER_S = 2  # what a full queue tells the sender: about one flush and a margin
# Records per transaction: a few milliseconds of the write lock each, so a collector round that starts
# meanwhile waits that long at most (the queue's capacity, not this, is what absorbs bursts).
BATCH_RECORDS = 500


class IngestQueue:
    def __init__(
        self,
        store: Store,
        pricing: Pricing,
        capacity: int,
        *,
        clock: Clock = SYSTEM_CLOCK,
        flush_interval: float = 0.5,
        batch_size: int = BATCH_RECORDS,
        known_providers: Collection[str] = (),
    ):
        self.capacity = capacity
        self.round_yield = RoundYield(store.path)
        self.recorder = Recorder(
            store,
            pricing,
            clock=clock,
            flush_interval=flush_interval,
            batch_size=batch_size,
            before_batch=self.round_yield.wait,
            known_providers=known_providers,
        )
        self.accepted = 0
        self.rejected = 0
        self.refused_full = 0  # requests answered 503 because the queue was full
        self._open = False

    @property
    def waiting(self) -> int:
        """Records accepted and not yet handed to the database."""
        return self.recorder.waiting

    def full(self, incoming: int = 1) -> bool:
        """True when `incoming` more records would not fit (a request is taken whole or not at all)."""
        return self.waiting > 0 and self.waiting + incoming > self.capacity

    def put_many(self, records: Iterable[Mapping[str, Any]]) -> list[tuple[int, str]]:
        """Validate and queue records (fields as `Recorder.record` takes them); returns the rejected ones
        as (index, reason). The caller checked `full()` first."""
        rejected = []
        record = self.recorder.record
        for i, fields in enumerate(records):
            try:
                record(**fields)
            except RecordError as exc:
                rejected.append((i, str(exc)))
                continue
            self.accepted += 1
        self.rejected += len(rejected)
        return rejected

    async def start(self) -> IngestQueue:
        await self.recorder.__aenter__()
        self._open = True
        return self

    async def close(self) -> None:
        """Write everything accepted (retried by the Recorder's exit flush)."""
        if not self._open:
            return
        self._open = False
        for attempt in range(CLOSE_TRIES):
            try:
                await self.recorder.__aexit__(None, None, None)
                self.round_yield.close()
                return
            except Exception:  # the database busy past its timeout: the batch is kept, try again
                if attempt == CLOSE_TRIES - 1:
                    raise
