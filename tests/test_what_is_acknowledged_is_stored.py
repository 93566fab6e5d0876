"""What is acknowledged is stored: one-shot runs finish their deliveries, clean stops checkpoint, an
emptied database is refused, `doctor` checks, a full disk is named. Real processes and files."""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest

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
