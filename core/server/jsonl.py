"""`POST /v1/records`: the `llmpulse import` format (JSON Lines) over HTTP, for senders without OTel.

The body is read exactly as `llmpulse import` reads a file (records.read_lines and JsonLines: byte
lines, each judged on its own) and the good ones are stored in one transaction before the answer, so
the answer can say what happened:

    200 {"stored": 2, "already_there": 1, "unknown_price": 0,
         "bad_lines": [{"line": 4, "error": "input_tokens: found -3; expected a whole number >= 0"}]}

Bad lines never stop the good ones (as with `import`; a line that is not UTF-8 is that line's error,
with its number). Sending the
same lines again stores nothing twice (request_id, else the line's content). At most MAX_IN_FLIGHT
requests write at once; beyond that, 503 with Retry-After. Like the span queue's batches, a request's
transaction waits (bounded) while the collector runs a round.
"""

from __future__ import annotations

import io

from aiohttp import web

from llmpulse.core.server.app import STATE, ServerState, read_body
from llmpulse.core.server.ingest import RETRY_AFTER_S
from llmpulse.core.usage.recorder import pricing_for
from llmpulse.core.usage.records import JsonLines, RecordError, UsageRecord, read_lines
from llmpulse.core.usage.rollup import ingest

CONTENT_TYPES = ("application/x-ndjson", "application/jsonl", "application/json", "text/plain", "")
MAX_IN_FLIGHT = 4
MAX_BAD_LINES = 100  # bad lines listed in one answer; "bad" counts them all


async def post_records(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.content_type not in CONTENT_TYPES and request.headers.get("Content-Type"):
        return web.json_response(
            {"error": f"found {request.content_type!r}; expected application/x-ndjson (one JSON object a line)"},
            status=415,
        )
    if state.stopping or state.counters["records_in_flight"] >= MAX_IN_FLIGHT:
        state.counters["records_refused_busy"] += 1
        return web.json_response(
            {"error": "busy storing other requests; retry later"},
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    state.counters["records_in_flight"] += 1
    try:
        body = await read_body(request)
        now = state.clock.now()
        lines = JsonLines(now, [p.id for p in state.ctx.providers])
        good: list[UsageRecord] = []
        bad: list[dict[str, object]] = []
        bad_count = 0
        # Exactly as `llmpulse import` reads a file: byte lines split at \n, each judged on its own (a
        # line that is not UTF-8 or is too long is that line's error), repeats by JsonLines' rule.
        for number, line in read_lines(io.BytesIO(body)):
            try:
                if isinstance(line, RecordError):
                    raise line
                if not line.strip():
                    continue
                good.append(lines.record(line, number))
            except RecordError as exc:
                bad_count += 1
                if len(bad) < MAX_BAD_LINES:
                    bad.append({"line": number, "error": str(exc)})
        # One transaction (the answer says what it stored), started only once no collector round is
        # running (bounded, as the span queue's batches: core/round_flag.py).
        await state.queue().round_yield.wait()
        result = await ingest(state.store, good, pricing_for(state.ctx), now)
    finally:
        state.counters["records_in_flight"] -= 1
    state.counters["records_stored"] += result.stored
    state.counters["records_bad_lines"] += bad_count
    return web.json_response(
        {
            "stored": result.stored,
            "already_there": result.duplicates,
            "unknown_price": result.unknown_price,
            "bad": bad_count,
            "bad_lines": bad,
        }
    )


def install(app: web.Application, state: ServerState) -> None:
    app.router.add_post("/v1/records", post_records)
