"""Running the real `llmpulse` command in a subprocess, in the environment the autouse fixture isolated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    # os.environ is already isolated by the autouse fixture in conftest.py (HOME, XDG dirs, no LLMPULSE_*
    # or provider keys): the command inherits exactly that, plus what the test passes.
    base = {**os.environ, "NO_COLOR": "1"}
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "llmpulse.core.cli", *args],
        cwd=tmp_path,
        env=base,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
