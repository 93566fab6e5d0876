"""POST /v1/records over a real socket: the import format, one validation path with `llmpulse import`,
an answer that says what was stored, what was already there and which lines were bad and why."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import httpx

from llmpulse.core.config import load_context
from llmpulse.core.server.app import Server, ServerState
from llmpulse.core.server.config import Listener
from llmpulse.core.store import Store
from tests.cli_helpers import run_cli

TOKEN = "records-token-0123456789"
LINES = [
    {"provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100, "request_id": "r1"},
    {"provider": "anthropic", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 10, "output_tokens": 5}},
    "this is not json",
    {"provider": "openai", "model": "gpt-4o", "input_tokens": 1, "endpoint": "a\u2028b", "request_id": "r2"},
    {"provider": "openai", "model": "gpt-4o", "input_tokens": -3},
    {"provider": "openai", "model": "gpt-4o", "input_tokens": 7, "colour": "blue"},
    # one slip from a catalog id: a typo, not a new provider (it would split openai's spend)
    {"provider": "opneai", "model": "gpt-4o", "input_tokens": 9, "request_id": "r3"},
    {"provider": "openai", "model": "gpt-4o", "input_tokens": 2},
]
BODY = "\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in LINES) + "\n\n"


async def _start(tmp_path: Path) -> tuple[Server, Store]:
    ctx = load_context(db_path=str(tmp_path / "r.db"), environ={})
    store = await Store.open(ctx.db_path)
    server = Server(ServerState(ctx, store, ctx.config.server), Listener("127.0.0.1", 0, TOKEN))
    return await server.start(), store


async def test_records_stored_once_bad_lines_named_like_import(tmp_path):
    server, store = await _start(tmp_path)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as c:
            first = (await c.post("/v1/records", content=BODY)).json()
            gz = await c.post("/v1/records", content=gzip.compress(BODY.encode()), headers={"Content-Encoding": "gzip"})
            again = gz.json()
            # a line that is not UTF-8 is that line's error, as in `import`; the lines around it are kept
            mixed = await c.post("/v1/records", content=b'{"provider": "openai", "model": "m1"}\n\xff\xfe{}\n')
            assert mixed.status_code == 200 and mixed.json()["stored"] == 1
            assert [b["line"] for b in mixed.json()["bad_lines"]] == [2]
            wrong = await c.post("/v1/records", content=BODY, headers={"Content-Type": "application/x-protobuf"})
            assert wrong.status_code == 415
    finally:
        await server.stop()
        await store.close()
    assert (first["stored"], first["already_there"], first["bad"]) == (4, 0, 4)
    assert (again["stored"], again["already_there"]) == (0, 4)  # sent twice, stored once
    # the same lines through `llmpulse import` say the same about the same line numbers
    (tmp_path / "calls.jsonl").write_text(BODY)  # (plus a raw U+2028 inside a string: one line, not two)
    cli = run_cli(tmp_path, "--db", str(tmp_path / "cli.db"), "import", "calls.jsonl")
    cli_bad = [line for line in cli.stderr.splitlines() if line.startswith("line ")]
    assert cli_bad == [f"line {b['line']}: {b['error']}" for b in first["bad_lines"]]
    assert [b["line"] for b in first["bad_lines"]] == [3, 5, 6, 7]
    assert "found 'opneai'; did you mean 'openai'?" in first["bad_lines"][3]["error"]
    assert "input_tokens: found -3" in first["bad_lines"][1]["error"]
    assert "colour: unknown field" in first["bad_lines"][2]["error"]
    with sqlite3.connect(tmp_path / "r.db") as db:
        got = db.execute(
            "SELECT provider, input_tokens, output_tokens FROM usage_records ORDER BY provider, input_tokens"
        ).fetchall()
    assert got == [("anthropic", 10, 5), ("openai", 0, 0), ("openai", 1, 0), ("openai", 2, 0), ("openai", 1000, 100)]


async def test_records_wait_while_the_collectors_round_flag_is_up(tmp_path):
    """A /v1/records request's transaction starts only once the collector's round is over (its flag, a
    real flock on <db>-round, lowered); then everything good is stored and answered."""
    import asyncio

    from llmpulse.core.round_flag import RoundFlag

    server, store = await _start(tmp_path)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as c:
            with RoundFlag(tmp_path / "r.db"):
                posting = asyncio.create_task(c.post("/v1/records", content=BODY))
                await asyncio.sleep(0.08)
                assert not posting.done() and stored(tmp_path) == 0
            answer = (await asyncio.wait_for(posting, 5)).json()
    finally:
        await server.stop()
        await store.close()
    assert answer["stored"] == stored(tmp_path) == 4


def stored(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "r.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM usage_calls").fetchone()[0])
