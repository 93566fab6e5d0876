"""The dashboard's per-second snapshot is read again only when the database or the minute changed
(issue 13's idle-CPU target): in between it is the last one aged to the second — who collects and how
old its data is, and verdicts that went stale — never a picture that stops moving. On a real file, a
read-only reader connection and a separate writer, as the dashboard has."""

from __future__ import annotations

import json

from llmpulse.core.catalog import CATALOG_BY_ID
from llmpulse.core.config import load_context
from llmpulse.core.health import record_probe_results
from llmpulse.core.probe import ProbeResult
from llmpulse.core.snapshot import SnapshotReader, stale_after
from llmpulse.core.store import Store

T = 1_800_000_000.0 - (1_800_000_000.0 % 60)  # the start of a minute


def _ctx(tmp_path):
    (tmp_path / "llmpulse.toml").write_text('[probe]\ninterval = "5s"\ntimeout = "2s"\n')
    env = {"OPENAI_API_KEY": "k", "GROQ_API_KEY": "k"}
    return load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "s.db"), environ=env)


def probe(pid: str, at: float) -> ProbeResult:
    return ProbeResult(pid, CATALOG_BY_ID[pid].name, at, "healthy", None, None, 100.0, 200)


async def test_unchanged_database_and_minute_reuse_the_snapshot_aged_to_the_second(tmp_path):
    ctx = _ctx(tmp_path)
    assert stale_after(ctx) == 17.0  # 3 rounds of 5 s and a 2 s timeout
    writer = await Store.open(ctx.db_path)
    reader = await Store.open_reader(ctx.db_path)
    try:
        await record_probe_results(writer, [probe("openai", T + 1), probe("groq", T + 8)], ctx.config.health, T + 8)
        await writer.execute(
            "INSERT INTO collector_status (lease, holder, rounds, last_started_at, last_finished_at, "
            "last_duration_ms, last_errors, sees) VALUES ('collector', 'elsewhere', 1, ?, ?, 5, '[]', ?)",
            (T + 8, T + 9, json.dumps(["openai", "groq"])),
        )
        snapshots = SnapshotReader(reader)
        first = await snapshots.read(ctx, T + 10)
        assert snapshots.builds == 1
        by_id = {h.provider_id: h for h in first.providers}
        assert not by_id["openai"].stale and "data 1s old" in first.collector.summary

        # 15 s later, same minute, nothing written: not read again, but aged — OpenAI's verdict (T+1) is
        # now older than 17 s and says so; Groq's (T+8) is not, and is the very same object as before.
        later = await snapshots.read(ctx, T + 25)
        assert snapshots.builds == 1
        aged = {h.provider_id: h for h in later.providers}
        assert aged["openai"].stale and "stale: last judged 24s ago" in (aged["openai"].reason or "")
        assert aged["groq"] is by_id["groq"] and not aged["groq"].stale
        assert "data 16s old" in later.collector.summary and later.refreshed_at == T + 25
        assert not by_id["openai"].stale, "the snapshot handed out before must not change under its reader"

        # A write by another connection: read again.
        await record_probe_results(writer, [probe("openai", T + 30)], ctx.config.health, T + 30)
        fresh = await snapshots.read(ctx, T + 31)
        assert snapshots.builds == 2
        assert not {h.provider_id: h for h in fresh.providers}["openai"].stale

        # The next minute: read again, although nothing was written.
        await snapshots.read(ctx, T + 61)
        assert snapshots.builds == 3
    finally:
        await reader.close()
        await writer.close()
