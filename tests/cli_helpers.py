"""Running the real `llmpulse` command in a subprocess, in the environment the autouse fixture isolated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    # os.environ is already isolated by the autouse fixture in conftest.py (HOME, XDG dirs, no LLMPULSE_*
    # or provider keys): the command inherits exactly that, plus what the test passes.
    return {**os.environ, "NO_COLOR": "1", **(env or {})}


def run_cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmpulse.core.cli", *args],
        cwd=tmp_path,
        env=cli_env(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The command running in the background (a daemon), stdout and stderr piped: the caller stops it
    (SIGTERM, then communicate) and kills it if it is still running."""
    return subprocess.Popen(
        [sys.executable, "-m", "llmpulse.core.cli", *args],
        cwd=tmp_path,
        env=cli_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
