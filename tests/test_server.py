"""The daemon's HTTP server over real sockets: the token, the public health check, body limits and gzip,
the route-module hook, the [server] config, and `llmpulse daemon --listen` as a real process."""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from llmpulse.core.config import load_context, parse_config
from llmpulse.core.server.app import STATE, Server, ServerState, read_body
from llmpulse.core.server.config import Listener, resolve_listener
from llmpulse.core.server.health import install as install_health
from llmpulse.core.store import Store
from llmpulse.core.validate import ConfigError
from tests.cli_helpers import run_cli, start_cli

TOKEN = "ingest-token-0123456789abcdef"


def _echo_size(app: web.Application, state: ServerState) -> None:
    """A route added the way another module adds one: install(app, state)."""

    async def size(request: web.Request) -> web.Response:
        body = await read_body(request)
        request.app[STATE].counters["echo"] += 1
        return web.json_response({"bytes": len(body)})

    app.router.add_post("/test/size", size)


async def _server(tmp_path: Path, toml: str = "", token: str | None = TOKEN) -> tuple[Server, Store]:
    (tmp_path / "llmpulse.toml").write_text(toml)
    ctx = load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "s.db"), environ={})
    store = await Store.open(ctx.db_path)
    server = Server(
        ServerState(ctx, store, ctx.config.server), Listener("127.0.0.1", 0, token), [install_health, _echo_size]
    )
    await server.start()
    return server, store


async def test_token_required_everywhere_but_healthz(tmp_path):
    server, store = await _server(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            health = await c.get("/healthz")
            assert health.status_code == 200 and health.json()["status"] == "ok"
            for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
                r = await c.post("/test/size", content=b"x", headers=headers)
                assert r.status_code == 401, headers
                assert TOKEN not in r.text and r.headers["WWW-Authenticate"].startswith("Bearer")
            r = await c.post("/test/size", content=b"abc", headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 200 and r.json() == {"bytes": 3}
            assert server.state.counters["echo"] == 1 and server.state.counters["requests_unauthorized"] == 3
    finally:
        await server.stop()
        await store.close()


async def test_gzip_body_inflated_and_size_capped_after_inflating(tmp_path):
    server, store = await _server(tmp_path, "[server]\nmax_body_mb = 1\n", token=None)
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            plain = os.urandom(300_000)
            r = await c.post("/test/size", content=gzip.compress(plain), headers={"Content-Encoding": "gzip"})
            assert r.status_code == 200 and r.json() == {"bytes": len(plain)}
            # 64 MiB of zeros is ~64 KiB gzipped: under the limit on the wire, refused once inflated past 1 MiB
            bomb = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)
            assert len(bomb) < 1024 * 1024
            r = await c.post("/test/size", content=bomb, headers={"Content-Encoding": "gzip"})
            assert r.status_code == 413
            r = await c.post("/test/size", content=os.urandom(1024 * 1024 + 1))
            assert r.status_code == 413
            r = await c.post("/test/size", content=b"not gzip at all", headers={"Content-Encoding": "gzip"})
            assert r.status_code == 400
    finally:
        await server.stop()
        await store.close()


def test_listen_and_token_rules():
    cfg = parse_config({"server": {"listen": "0.0.0.0:4318"}}, "t.toml")
    with pytest.raises(ConfigError, match=r"server.listen: found '0.0.0.0:4318' \(not loopback\) and no token"):
        resolve_listener(cfg.server, {}, "t.toml")
    assert resolve_listener(cfg.server, {}, "t.toml", listen="[::1]:0") == Listener("::1", 0, None)
    assert resolve_listener(cfg.server, {}, "t.toml", listen="localhost:9") == Listener("localhost", 9, None)
    cfg = parse_config({"server": {"listen": "0.0.0.0:4318", "token_env": "LLMPULSE_INGEST_TOKEN"}}, "t.toml")
    with pytest.raises(ConfigError, match="LLMPULSE_INGEST_TOKEN unset or empty"):
        resolve_listener(cfg.server, {"LLMPULSE_INGEST_TOKEN": ""}, "t.toml")
    assert resolve_listener(cfg.server, {"LLMPULSE_INGEST_TOKEN": TOKEN}, "t.toml").token == TOKEN
    for bad in ("4318", "host:port", "127.0.0.1:70000"):
        with pytest.raises(ConfigError, match="listen"):
            parse_config({"server": {"listen": bad}}, "t.toml")
    with pytest.raises(ConfigError, match="server.lisen"):
        parse_config({"server": {"lisen": "127.0.0.1:1"}}, "t.toml")


def test_daemon_refuses_open_port_without_token_in_one_line(tmp_path):
    r = run_cli(tmp_path, "--db", str(tmp_path / "d.db"), "daemon", "--listen", "0.0.0.0:0")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "not loopback" in r.stderr and "token_env" in r.stderr
    assert "Traceback" not in r.stderr


def start_serving_daemon(
    tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str, list[str]]:
    """A real `llmpulse daemon --listen 127.0.0.1:0` in the background: the process, the URL it says it
    serves on, and the stderr lines read so far. The caller stops it and kills it if still running."""
    proc = start_cli(tmp_path, "--db", str(tmp_path / "d.db"), "daemon", "--listen", "127.0.0.1:0", env=env)
    url, lines = None, []
    deadline = time.monotonic() + 30
    while url is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        m = re.search(r"serving on (http://\S+)", line)
        url = m.group(1) if m else None
    if url is None:
        proc.kill()
        raise AssertionError("".join(lines))
    return proc, url, lines


def test_daemon_serves_healthz_and_stops_on_sigterm(tmp_path):
    (tmp_path / "llmpulse.toml").write_text('[server]\ntoken_env = "LLMPULSE_INGEST_TOKEN"\n[probe]\ninterval = "1s"\n')
    proc, url, lines = start_serving_daemon(tmp_path, {"LLMPULSE_INGEST_TOKEN": TOKEN})
    try:
        # Generous limits: the server runs at nice 10 and a loaded CI machine can starve it for seconds
        # (this failed once at httpx's default 5 s); what is checked is the answer, not the speed.
        assert httpx.get(f"{url}/healthz", timeout=60).json()["status"] == "ok"
        assert httpx.post(f"{url}/v1/anything", timeout=60).status_code == 401  # token checked before routing
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "daemon stopped" in err and TOKEN not in "".join(lines) + err
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz")


def test_daemon_on_a_taken_port_says_so_in_one_line(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_cli(tmp_path, "--db", str(tmp_path / "d.db"), "daemon", "--listen", f"127.0.0.1:{port}")
    assert r.returncode == 2, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
    assert [line for line in r.stderr.splitlines() if "error" in line] == [r.stderr.strip().splitlines()[-1]]


def test_server_process_survives_sighup_and_its_death_is_logged(tmp_path):
    import psutil

    (tmp_path / "llmpulse.toml").write_text('[probe]\ninterval = "1h"\n')
    proc, url, lines = start_serving_daemon(tmp_path)
    try:
        # the server process (multiprocessing's spawn), not its resource tracker
        (child,) = [c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]
        child.send_signal(signal.SIGHUP)  # as a hangup to the whole process group would
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert httpx.get(f"{url}/healthz", timeout=60).json()["status"] == "ok"
        child.kill()  # the server dies: the daemon says so and keeps collecting
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "ended on its own" in line:
                break
        assert "ended on its own" in lines[-1], "".join(lines)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err


@pytest.mark.parametrize(
    ("config", "args", "env", "expected"),
    [
        ('[server]\nlisten = "0.0.0.0:4318"\n', (), {}, "not loopback"),
        ("", ("--listen", "0.0.0.0:0"), {}, "not loopback"),
        ("", ("--listen", "nowhere"), {}, "--listen"),
        ('[server]\nlisten = "127.0.0.1:0"\ntoken_env = "LLMPULSE_INGEST_TOKEN"\n', (), {}, "unset or empty"),
    ],
)
def test_daemon_once_checks_server_section_as_daemon_does(tmp_path, config, args, env, expected):
    """`daemon --once` runs no server, but a [server] section (or --listen) the daemon would refuse is the
    same one-line config error with it: cron's quick test must not pass what the service then refuses."""
    (tmp_path / "llmpulse.toml").write_text(config)
    results = [
        run_cli(tmp_path, "--db", str(tmp_path / "d.db"), "daemon", *extra, *args, env=env, timeout=120)
        for extra in ((), ("--once",))
    ]
    for r in results:
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and expected in r.stderr and "Traceback" not in r.stderr
    assert results[0].stderr == results[1].stderr
