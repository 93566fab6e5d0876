"""The one command a developer runs before a commit (.ci/check) runs the same machine checks as CI
(.ci/run), and the README's test command is the one both run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _checks(script: str) -> set[str]:
    text = (ROOT / ".ci" / script).read_text(encoding="utf-8")
    return {m.strip() for m in re.findall(r"(\.venv/bin/(?:ruff|mypy|lint-imports|python -m pytest)[^&\n]*)", text)}


def test_before_you_commit_runs_what_ci_runs() -> None:
    ci = _checks("run")
    assert {".venv/bin/mypy", ".venv/bin/lint-imports", ".venv/bin/ruff check .", ".venv/bin/python -m pytest"} <= ci
    local = {c.replace(' "$@"', "") for c in _checks("check")}
    assert local == ci


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.rstrip().endswith("&& .venv/bin/python -m pytest")
    assert "\n.ci/check\n" in readme  # the "Before you commit" command
