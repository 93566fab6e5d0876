"""A developer's own settings never change a test's outcome (the autouse fixture in conftest.py).

The proof runs a pytest session in a subprocess whose environment looks like a developer's machine:
a home with ~/.config/llmpulse/llmpulse.toml and ~/.local/share/llmpulse, $LLMPULSE_CONFIG,
$LLMPULSE_DB and a provider key set. The config file is poison (not even TOML): read, it fails loudly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llmpulse.core.config import find_config_path, load_context

ROOT = Path(__file__).resolve().parents[1]
POISON = 'this is [not toml\n[probe]\ninterval = "poison"\n'


def _developer_machine(base: Path) -> dict[str, str]:
    home = base / "developer"
    config_dir = home / ".config" / "llmpulse"
    config_dir.mkdir(parents=True)
    (config_dir / "llmpulse.toml").write_text(POISON, encoding="utf-8")
    (home / ".local" / "share" / "llmpulse").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "HOME"))}
    env.update(
        {
            "HOME": str(home),
            "LLMPULSE_CONFIG": str(config_dir / "llmpulse.toml"),
            "LLMPULSE_DB": str(home / "developer.db"),
            "OPENAI_API_KEY": "sk-developer-000000000000000000",
        }
    )
    return env


def test_the_poison_would_be_read_without_the_fixture(tmp_path: Path) -> None:
    # Control: resolved against that environment, llmpulse really would pick the developer's file.
    env = _developer_machine(tmp_path)
    assert find_config_path(None, env) == Path(env["LLMPULSE_CONFIG"])


def test_inside_the_suite_nothing_of_the_developer_is_seen() -> None:
    # Run directly and by the test below under a developer's environment: either way only defaults.
    ctx = load_context()
    assert ctx.config.source == "defaults"
    assert not any(p.api_key for p in ctx.providers)
    assert Path(os.environ["HOME"]) in ctx.db_path.parents
    assert not any(k.startswith("LLMPULSE_") for k in os.environ)


def test_a_developers_home_and_variables_do_not_reach_a_test(tmp_path: Path) -> None:
    env = _developer_machine(tmp_path)
    inner = f"{Path(__file__).resolve()}::test_inside_the_suite_nothing_of_the_developer_is_seen"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", inner],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout
