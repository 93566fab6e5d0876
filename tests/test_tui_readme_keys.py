"""The README's key table lists exactly the keys the help screen lists (the help reads the bindings)."""

from __future__ import annotations

import re
from pathlib import Path

from llmpulse.tui.screens.help import help_keys
from tests.snapshot_apps.fixed import fixed_app

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_keys() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Dashboard keys") :]
    section = section[: section.index("\n## ", 1)]
    keys: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_column = line.split("|")[1]
            keys.update(re.findall(r"`([^`]+)`", first_column))
    return keys


async def test_readme_key_table_matches_the_help_screen():
    app = fixed_app()
    async with app.run_test(size=(80, 24)):
        shown = {k for display, _ in help_keys(app) for k in display.split()} | {"ctrl+p"}
    documented = readme_keys()
    assert shown - documented == set(), f"in the help, not in the README: {sorted(shown - documented)}"
    assert documented - shown == set(), f"in the README, not in the help: {sorted(documented - shown)}"
