"""Bounded memory and time whatever a peer sends: an endless error body, a gzip bomb, an endless webhook
reply. Real `llmpulse` processes against a hostile server on 127.0.0.1; their peak memory is read from
the kernel (ru_maxrss of the finished child)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

# What an llmpulse command costs without any hostile answer is well under this; reading a peer's
# answer whole (hundreds of MB here) goes far above it.
PEAK_LIMIT_KIB = 220 * 1024
BOMB_MIB = 400  # inflated size of the gzip bomb; the compressed body is ~400 KB


def _gzip_bomb() -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    return b"".join(deflate.compress(zeros) for _ in range(BOMB_MIB)) + deflate.flush()


class Hostile:
    """HTTP/1.1 on 127.0.0.1: /endless answers 500 with a body that never ends, /bomb answers 200 with a
    gzip bomb, anything else a small JSON 200."""

    def __init__(self) -> None:
        self.bomb = _gzip_bomb()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            length = 0
            for line in head.decode("latin-1").split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            await reader.readexactly(length)
            if "endless" in path:
                writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n")
                writer.write(b"content-length: 1073741824\r\n\r\n")
                chunk = b"x" * 65536
                while True:  # until the client hangs up
                    writer.write(chunk)
                    await writer.drain()
            elif "bomb" in path:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
                    + f"content-length: {len(self.bomb)}\r\n\r\n".encode()
                    + self.bomb
                )
            else:
                writer.write(
                    b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"data":[]}'
                )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    server = Hostile()
    server.thread.start()
    server.ready.wait(10)
    yield server
    server.loop.call_soon_threadsafe(server.loop.stop)


def run_measured(tmp_path: Path, *args: str, env: dict[str, str]) -> tuple[int, str, int, float]:
    """Run `llmpulse ARGS` as a child of a small Python that reports the child's peak RSS (KiB)."""
    code = (
        "import json, os, resource, subprocess, sys, time\n"
        "t = time.monotonic()\n"
        "p = subprocess.run([sys.executable, '-m', 'llmpulse.core.cli', *sys.argv[1:]], capture_output=True, text=True)\n"
        "print(json.dumps([p.returncode, p.stderr + p.stdout, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
        " time.monotonic() - t]))\n"
    )
    import json
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL", "_ADMIN_KEY"))}
    full_env.update(
        {"XDG_CONFIG_HOME": str(tmp_path / "xc"), "XDG_DATA_HOME": str(tmp_path / "xd"), "NO_COLOR": "1", **env}
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=full_env
    )
    code_, text, peak, elapsed = json.loads(out.stdout)
    return code_, text, peak, elapsed


@pytest.mark.parametrize("path", ["/endless/v1", "/bomb/v1"])
def test_check_reads_a_bounded_part_of_a_hostile_answer_within_its_deadline(tmp_path, hostile, path):
    (tmp_path / "llmpulse.toml").write_text(
        f'[probe]\ntimeout = "5s"\n[providers.openai]\nbase_url = "{hostile.url(path)}"\n'
    )
    code, text, peak_kib, elapsed = run_measured(
        tmp_path, "--db", str(tmp_path / "c.db"), "check", "--json", env={"OPENAI_API_KEY": "sk-test-0123456789abcdef"}
    )
    assert "Traceback" not in text, text
    assert '"openai"' in text and code != 0  # the provider is reported, as failed
    assert peak_kib < PEAK_LIMIT_KIB, f"peak RSS {peak_kib // 1024} MiB"
    assert elapsed < 5 + 10  # its 5 s deadline holds (plus start-up on a loaded machine)


def test_a_webhook_reply_that_never_ends_costs_a_bounded_read(tmp_path, hostile):
    (tmp_path / "llmpulse.toml").write_text(
        '[[budgets]]\nscope = "total"\nperiod = "month"\nlimit_usd = 0.01\n\n'
        '[[alerts.channels]]\nname = "hook"\ntype = "webhook"\nurl_env = "HOOK_URL"\nmin_severity = "info"\n'
        'retries = 0\ntimeout = "5s"\n'
    )
    db = str(tmp_path / "w.db")
    subprocess.run(
        [sys.executable, "-m", "llmpulse.core.cli", "--db", db, "record", "--provider", "openai", "--model",
         "gpt-4o", "--input-tokens", "9000000"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    started = time.monotonic()
    _, text, peak_kib, _ = run_measured(
        tmp_path, "--db", db, "daemon", "--once", env={"HOOK_URL": hostile.url("/endless")}
    )
    assert "Traceback" not in text, text
    assert peak_kib < PEAK_LIMIT_KIB, f"peak RSS {peak_kib // 1024} MiB"
    assert time.monotonic() - started < 60
    import sqlite3

    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT status, error FROM alert_deliveries").fetchall()
    assert rows and all(status == "failed" and "HTTP 500" in error for status, error in rows), rows
