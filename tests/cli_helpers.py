"""Running the real `llmpulse` command in a subprocess, isolated from the developer's own config/.env."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_BASE_URL", "_ADMIN_KEY"))
        and not k.startswith("LLMPULSE_")
        and k not in ("OLLAMA_HOST", "AZURE_OPENAI_ENDPOINT")
    }
    base.update(
        {"XDG_CONFIG_HOME": str(tmp_path / "xdg-config"), "XDG_DATA_HOME": str(tmp_path / "xdg-data"), "NO_COLOR": "1"}
    )
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
