"""What is acknowledged is stored: one-shot runs finish their deliveries, clean stops checkpoint, an
emptied database is refused, `doctor` checks, a full disk is named. Real processes and files."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.recorder import Recorder
from tests.cli_helpers import run_cli


class SlowHook(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that takes its time to answer, as real ones under load do."""

    bodies: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).bodies.append(json.loads(body))
        time.sleep(0.7)
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_hook() -> Iterator[tuple[str, list[dict]]]:
    class Hook(SlowHook):
        bodies: list[dict] = []

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", Hook.bodies
    finally:
        server.shutdown()
        server.server_close()


def test_daemon_once_finishes_its_deliveries_and_leaves_none_sending(tmp_path, slow_hook):
    url, bodies = slow_hook
    (tmp_path / "llmpulse.toml").write_text(
        '[[budgets]]\nscope = "total"\nperiod = "month"\nlimit_usd = 0.01\n\n'
        '[[alerts.channels]]\nname = "hook"\ntype = "webhook"\nurl_env = "HOOK_URL"\nmin_severity = "info"\n'
    )
    db = str(tmp_path / "once.db")
    env = {"HOOK_URL": url}
    r = run_cli(
        tmp_path, "--db", db, "record", "--provider", "openai", "--model", "gpt-4o", "--input-tokens", "9000000"
    )
    assert r.returncode == 0, r.stderr
    first = run_cli(tmp_path, "--db", db, "daemon", "--once", env=env)
    assert "Traceback" not in first.stderr
    with sqlite3.connect(db) as con:
        statuses = [row[0] for row in con.execute("SELECT status FROM alert_deliveries")]
    assert statuses and all(s == "sent" for s in statuses), statuses
    sent = len(bodies)
    assert sent == len(statuses)
    second = run_cli(tmp_path, "--db", db, "daemon", "--once", env=env)
    assert "Traceback" not in second.stderr
    assert len(bodies) == sent  # nothing sent again


def _record(tmp_path: Path, db: Path, n: int = 1, **env: str) -> subprocess.CompletedProcess[str]:
    lines = "".join(
        json.dumps({"provider": "openai", "model": "gpt-4o", "input_tokens": 10 + i, "request_id": f"r{i}"}) + "\n"
        for i in range(n)
    )
    return run_cli(tmp_path, "--db", str(db), "import", "-", stdin=lines, env=env or None)


async def test_a_clean_stop_checkpoints_so_the_database_file_alone_holds_every_acknowledged_row(tmp_path):
    db = tmp_path / "wal.db"
    await (await Store.open(db)).close()
    reader = sqlite3.connect(db)  # a dashboard has the database open: SQLite's own checkpoint-at-close is skipped
    reader.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    try:
        store = await Store.open(db)
        async with Recorder(store, Pricing()) as rec:
            for i in range(1001):
                rec.record(provider="openai", model="gpt-4o", input_tokens=i)
        await store.close()
        copy = tmp_path / "copy.db"
        shutil.copyfile(db, copy)  # the -wal file is lost (deleted, not backed up): only the main file
        with sqlite3.connect(copy) as con:
            assert con.execute("SELECT COUNT(*) FROM usage_calls").fetchone()[0] == 1001
    finally:
        reader.close()


def test_an_emptied_database_is_refused_not_silently_recreated(tmp_path):
    db = tmp_path / "gone.db"
    assert _record(tmp_path, db, 5).returncode == 0
    holder = sqlite3.connect(db)  # a running daemon or dashboard keeps the -wal and -shm files there
    holder.execute("SELECT COUNT(*) FROM usage_calls").fetchone()
    try:
        db.write_bytes(b"")  # truncated by a bad backup script, a full disk, a mistaken `> file`
        r = run_cli(tmp_path, "--db", str(db), "record", "--provider", "openai", "--model", "gpt-4o")
        assert r.returncode == 2, r.stderr
        assert "is empty (0 bytes)" in r.stderr and "refusing" in r.stderr, r.stderr
        assert db.stat().st_size == 0  # left as it was found, for whoever restores it
    finally:
        holder.close()


def test_doctor_reports_a_sound_database_and_a_corrupted_one(tmp_path):
    db = tmp_path / "doc.db"
    assert _record(tmp_path, db, 3000).returncode == 0
    ok = run_cli(tmp_path, "--db", str(db), "doctor")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "integrity: ok" in ok.stdout and "schema:    version" in ok.stdout
    as_json = json.loads(run_cli(tmp_path, "--db", str(db), "doctor", "--json").stdout)
    assert as_json["ok"] is True and as_json["integrity"] == ["ok"]
    page = 4096
    with open(db, "r+b") as f:  # scribble over the b-tree page headers of every page but the first
        size = f.seek(0, 2)
        assert size > 8 * page
        for offset in range(page, size, page):
            f.seek(offset)
            f.write(b"\xa5" * 12)
    bad = run_cli(tmp_path, "--db", str(db), "doctor")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "PROBLEM" in bad.stdout and "Traceback" not in bad.stderr


def test_a_recorder_flushes_what_it_holds_when_sigterm_arrives(tmp_path):
    db = tmp_path / "term.db"
    code = (
        "import asyncio, sys\n"
        "from llmpulse.core.store import Store\n"
        "from llmpulse.core.usage.pricing import Pricing\n"
        "from llmpulse.core.usage.recorder import Recorder\n"
        "async def main():\n"
        f"    store = await Store.open({str(db)!r})\n"
        "    async with Recorder(store, Pricing(), flush_interval=3600, batch_size=10**6) as rec:\n"
        "        for i in range(3000):\n"
        "            rec.record(provider='openai', model='gpt-4o', input_tokens=i, output_tokens=1)\n"
        "        print('recorded', flush=True)\n"
        "        await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "recorded"
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGTERM  # it still ends as SIGTERM ends a process
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*), SUM(input_tokens) FROM usage_calls").fetchone() == (3000, sum(range(3000)))


def test_the_readme_recorder_snippet_runs_as_written_and_exits(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    [snippet] = [b for b in blocks if "Recorder(" in b and "rec.record(" in b]
    (tmp_path / "snippet.py").write_text(snippet)
    db = tmp_path / "snip.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMPULSE_")}
    env.update({"LLMPULSE_DB": str(db), "XDG_CONFIG_HOME": str(tmp_path / "x"), "XDG_DATA_HOME": str(tmp_path / "y")})
    r = subprocess.run(
        [sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT department, input_tokens FROM usage_records").fetchall() == [("Support", 812)]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1.5 MiB tmpfs: a real file system that really fills up."""
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_full_disk_says_so_exits_non_zero_and_keeps_what_was_stored(tmp_path, small_disk):
    db = small_disk / "full.db"
    assert _record(tmp_path, db, 10).returncode == 0
    big = "".join(
        json.dumps({"provider": "openai", "model": f"m{i % 400}", "input_tokens": i, "user": f"user-{i}" * 5}) + "\n"
        for i in range(40_000)
    )
    r = run_cli(tmp_path, "--db", str(db), "import", "-", stdin=big)
    assert r.returncode != 0
    assert f"disk full: {db}" in r.stderr, r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM usage_records WHERE request_id LIKE 'r%'").fetchone()[0] == 10
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
