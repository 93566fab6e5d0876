"""Never lost: a real `llmpulse daemon` taking OTLP exports from several senders at once gets SIGTERM
mid-stream. It stops accepting, writes what it accepted, and exits 0; every span it answered 200 for
is in the database."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import httpx

from tests.test_otlp import chat, export

SENDERS = 4
BATCH = 200


def test_sigterm_mid_stream_loses_nothing_acknowledged(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMPULSE_") and not k.endswith("_API_KEY")}
    env.update({"XDG_CONFIG_HOME": str(tmp_path / "x"), "XDG_DATA_HOME": str(tmp_path / "x")})
    # no timed flush: what is stored at the end was stored by the stop itself
    (tmp_path / "llmpulse.toml").write_text('[probe]\ninterval = "1h"\n[server]\nflush_interval = "1h"\n')
    db = tmp_path / "s.db"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "llmpulse.core.cli", "--db", str(db), "daemon", "--listen", "127.0.0.1:0"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged: set[str] = set()
    refused = 0

    async def sender(client: httpx.AsyncClient, n: int, url: str) -> None:
        nonlocal refused
        batch_no = 0
        while True:
            first = (n * 1_000_000 + batch_no * BATCH) * 2 + 1
            spans = [chat(first + 2 * i, 100, 10) for i in range(BATCH)]
            try:
                r = await client.post(
                    f"{url}/v1/traces",
                    content=export(spans).SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf"},
                )
            except httpx.TransportError:
                return  # the daemon is gone
            if r.status_code == 200:
                acknowledged.update(s.trace_id.hex() + s.span_id.hex() for s in spans)
            else:
                assert r.status_code == 503, r.text
                refused += 1
                await asyncio.sleep(0.01)
            batch_no += 1

    async def run(url: str) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            tasks = [asyncio.create_task(sender(client, n, url)) for n in range(SENDERS)]
            while len(acknowledged) < 3 * SENDERS * BATCH:
                await asyncio.sleep(0.01)
            daemon.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)

    try:
        url, seen = None, []
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = daemon.stderr.readline()
            seen.append(line)
            m = re.search(r"serving on (http://\S+)", line)
            url = m.group(1) if m else None
        assert url, "".join(seen)
        asyncio.run(run(url))
        _out, err = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err[-2000:]
    assert "server stopped" in err and "Traceback" not in err
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT request_id FROM usage_records")}
    assert acknowledged, "nothing was acknowledged"
    missing = acknowledged - stored
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged spans not stored"
