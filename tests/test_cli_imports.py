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


CHECK_ONLY = """
import contextlib, io, sys
from llmpulse.core.cli import main

with contextlib.redirect_stdout(io.StringIO()):
    main(["--config", "llmpulse.toml", "--db", "t.db", "--env-file", ".env", "check"])
print(sorted(m for m in sys.modules if m.startswith("llmpulse.core.cli.")))
"""


def test_check_loads_only_its_own_command_module(tmp_path):
    (tmp_path / "llmpulse.toml").write_text("")
    (tmp_path / ".env").write_text("")
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", CHECK_ONLY], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['llmpulse.core.cli.check', 'llmpulse.core.cli.common']"


def test_each_command_is_mapped_to_the_module_that_registers_it():
    """A command line naming a command builds only the module COMMAND_MODULES maps it to: the map must say
    exactly what each module registers, or that command would be missing from its own parser."""
    import argparse
    import importlib

    from llmpulse.core.cli import COMMAND_MODULES, build_parser

    for module, commands in COMMAND_MODULES.items():
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers(dest="command")
        importlib.import_module(module).register(sub)
        assert tuple(sub.choices) == commands, module
        for command in commands:  # and the command-only parser knows it, with its own options
            only = build_parser(command)
            actions = [a for a in only._actions if isinstance(a, argparse._SubParsersAction)]
            assert list(actions[0].choices) == list(commands)
    everything = build_parser(None)
    (all_sub,) = [a for a in everything._actions if isinstance(a, argparse._SubParsersAction)]
    assert sorted(all_sub.choices) == sorted(c for cs in COMMAND_MODULES.values() for c in cs)
