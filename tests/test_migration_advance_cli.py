"""`llmpulse migration advance` end to end: the real command in a subprocess on a real database file.
What it printed is checked, and the phase is read back from the file with sqlite3, not through llmpulse."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.cli_helpers import run_cli

CONFIG = """
[[migrations]]
name = "to-gpt-4.1"
from = ["gpt-4o"]
to = "gpt-4.1"
start = 2025-01-01
deadline = 2099-12-31
phases = [
  { name = "preparation", share = 0.0 },
  { name = "canary", share = 0.1 },
  { name = "everything", share = 1.0 },
]
"""


def _cli(tmp_path: Path, *args: str):
    (tmp_path / "llmpulse.toml").write_text(CONFIG, encoding="utf-8")
    return run_cli(tmp_path, "--config", str(tmp_path / "llmpulse.toml"), "--db", str(tmp_path / "m.db"), *args)


def _stored(tmp_path: Path) -> tuple[tuple[str, int], list[tuple[str | None, str, str]]]:
    conn = sqlite3.connect(tmp_path / "m.db")
    try:
        state = conn.execute("SELECT phase, phase_index FROM migration_state WHERE name = 'to-gpt-4.1'").fetchone()
        events = conn.execute(
            "SELECT from_phase, to_phase, cause FROM migration_events WHERE name = 'to-gpt-4.1' ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return state, events


def test_advance_moves_one_phase_on_and_records_who_and_why(tmp_path: Path) -> None:
    run = _cli(tmp_path, "migration", "advance", "to-gpt-4.1", "--by", "dana")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "to-gpt-4.1: preparation -> canary (by hand (dana))\n"
    assert run.stderr == ""
    state, events = _stored(tmp_path)
    assert state == ("canary", 1)
    assert events == [("preparation", "canary", "by hand (dana)")]

    # --to jumps to a named phase; --json prints the change
    run = _cli(tmp_path, "migration", "advance", "to-gpt-4.1", "--to", "everything", "--json")
    assert run.returncode == 0, run.stderr
    change = json.loads(run.stdout)
    assert (change["from_phase"], change["to_phase"], change["cause"]) == ("canary", "everything", "by hand")
    state, events = _stored(tmp_path)
    assert state == ("everything", 2)
    assert events[-1] == ("canary", "everything", "by hand")

    # and `migration NAME` reads the phase the file now holds
    shown = _cli(tmp_path, "migration", "to-gpt-4.1", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["phase"] == "everything"


def test_advance_refuses_past_the_last_phase_and_unknown_names_without_writing(tmp_path: Path) -> None:
    assert _cli(tmp_path, "migration", "advance", "to-gpt-4.1", "--to", "everything").returncode == 0
    before = _stored(tmp_path)

    past = _cli(tmp_path, "migration", "advance", "to-gpt-4.1")
    assert past.returncode == 1
    assert past.stderr == "llmpulse: error: migration 'to-gpt-4.1' is already in its final phase 'everything'\n"

    unknown = _cli(tmp_path, "migration", "advance", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr == "llmpulse: error: unknown migration 'nope'; known: to-gpt-4.1\n"

    no_phase = _cli(tmp_path, "migration", "advance", "to-gpt-4.1", "--to", "rollout")
    assert no_phase.returncode == 1
    assert "has no phase 'rollout'; phases: preparation, canary, everything" in no_phase.stderr
    assert "Traceback" not in past.stderr + unknown.stderr + no_phase.stderr
    assert _stored(tmp_path) == before  # nothing already stored changed
