"""Real third-party servers for tests: Debian's prometheus-alertmanager started on 127.0.0.1 with a temp
config and storage, and where promtool is. Tests skip with the reason when a binary is not installed
(CI installs both: see .ci/run)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ALERTMANAGER_NAMES = ("prometheus-alertmanager", "alertmanager")  # Debian's name, then upstream's
# A receiver that sends nothing: the tests read Alertmanager's own API, not its notifications.
ALERTMANAGER_CONFIG = """\
route:
  receiver: blackhole
  group_by: ['alertname']
  group_wait: 1h
receivers:
  - name: blackhole
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(*names: str, package: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"{names[0]} is not installed (Debian: apt-get install {package}); CI installs it")


@contextmanager
def running_alertmanager(workdir: Path) -> Iterator[str]:
    """An Alertmanager on a free port of 127.0.0.1, clustering off; yields its base URL."""
    exe = binary(*ALERTMANAGER_NAMES, package="prometheus-alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text(ALERTMANAGER_CONFIG)
    port = free_port()
    log = (workdir / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited: {(workdir / 'alertmanager.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("alertmanager did not become ready within 20 s")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
