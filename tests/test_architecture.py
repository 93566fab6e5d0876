"""The core is reachable without the TUI: importing every core module must not load textual."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import llmpulse.core

ROOT = Path(__file__).resolve().parents[1]


def core_modules() -> list[str]:
    # __main__ modules run the CLI on import; everything else must import without side effects
    return sorted(
        m.name
        for m in pkgutil.walk_packages(llmpulse.core.__path__, "llmpulse.core.")
        if not m.name.endswith("__main__")
    )


def test_core_modules_exist():
    names = core_modules()
    assert "llmpulse.core.config" in names and "llmpulse.core.store" in names


def test_core_never_imports_textual():
    code = (
        "import importlib, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.') or m.startswith('llmpulse.tui'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core imported: {out.stdout.strip()}"
