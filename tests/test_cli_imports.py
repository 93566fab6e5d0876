"""Commands import what they use: the price table (genai-prices, pydantic) only when something is priced,
httpx only when something is sent. Checked in a fresh interpreter, where nothing was imported before."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import contextlib, io, sys
from llmpulse.core.cli import main

def run(*argv):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(["--config", "llmpulse.toml", "--db", "t.db", "--env-file", ".env", *argv])
        except SystemExit:
            pass
    print(" ".join(argv), "genai_prices" in sys.modules, "httpx" in sys.modules)

run("--help")
run("budgets")
run("alerts")
run("check")
run("record", "--provider", "openai", "--model", "gpt-4o-mini", "--input-tokens", "10", "--output-tokens", "5")
"""


def test_commands_that_do_not_price_or_send_import_neither(tmp_path):
    (tmp_path / "llmpulse.toml").write_text("")
    (tmp_path / ".env").write_text("")
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # check with nothing configured sends nothing; record prices the call (the table comes in then).
    assert lines == [
        "--help False False",
        "budgets False False",
        "alerts False False",
        "check False False",
        "record --provider openai --model gpt-4o-mini --input-tokens 10 --output-tokens 5 True False",
    ]
