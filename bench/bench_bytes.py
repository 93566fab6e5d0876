"""Bytes per stored usage record on varied data (issue 14).

Records as bench_import.py writes them (300 users in 8 departments through 40 agents, 8 models, a
request id on every record, times over 20 days) go in through the Recorder, as live traffic does; the
database file (after a checkpoint) is divided by the records stored. Also shown: where the bytes are
(SQLite's dbstat), and the same data with no attribution and no request ids as the low-cardinality
baseline.

Target: <= 120 B a record on the varied data.

    python bench/bench_bytes.py [--records 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench_import import write_lines

from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.recorder import Recorder


async def store_records(db: Path, lines: Path, plain: bool) -> int:
    store = await Store.open(db)
    async with Recorder(store, Pricing(local_providers=["ollama"]), batch_size=5000) as rec:
        with lines.open() as f:
            for line in f:
                data = json.loads(line)
                if plain:
                    for k in ("department", "agent", "user", "request_id"):
                        data.pop(k, None)
                rec.record(**data)
    stored = rec.stored
    await store.close()
    return stored


def size_of(db: Path) -> tuple[int, dict[str, int]]:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    try:
        parts = dict(conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall())
    except sqlite3.OperationalError:  # SQLite built without dbstat
        parts = {}
    conn.close()
    return db.stat().st_size, parts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    args = ap.parse_args()
    ok = True
    per_record: dict[bool, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(tmp) / "usage.jsonl"
        write_lines(lines, args.records)
        for label, plain in (("no attribution, no request ids", True), ("varied attribution + request ids", False)):
            db = Path(tmp) / f"{'plain' if plain else 'varied'}.db"
            stored = asyncio.run(store_records(db, lines, plain))
            total, parts = size_of(db)
            per = per_record[plain] = total / stored
            top = ", ".join(f"{name} {size / stored:.0f}" for name, size in list(parts.items())[:6])
            line = f"{label}: {stored:,} records, {total / 2**20:.1f} MiB = {per:.0f} B a record ({top})"
            if not plain:
                good = per <= 120
                ok &= good
                line += (
                    f"; {per / per_record[True]:.2f}x the same calls without attribution or ids measured above "
                    f"(target <= 120 B)  {'OK' if good else 'MISSED'}"
                )
            print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
