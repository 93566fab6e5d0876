"""A migration in detail: from which models to which, phase by phase, the traffic share in requests and
tokens, the projection at the deadline, and the old model against the new on cost, latency and errors."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from llmpulse.tui import format as fmt
from llmpulse.tui.backend import MigrationStatus, Snapshot
from llmpulse.tui.header import HeaderLine
from llmpulse.tui.panels.base import View
from llmpulse.tui.screens.base import LiveScreen


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def migration_text(m: MigrationStatus, view: View) -> Text:
    t = Text()
    t.append(f"{m.name}  ", style="bold")
    t.append(f"{', '.join(m.from_models)} → {m.to_model}\n")
    t.append(f"{m.start} → deadline {m.deadline} ({fmt.days_left(m.days_left)} left)  risk ")
    t.append_text(fmt.risk_text(m.risk))
    t.append("\n\nPhases  ")
    for i, phase in enumerate(m.phases or []):
        style = "bold reverse" if i == m.phase_index else ("" if i < m.phase_index else "dim")
        t.append(f" {phase} ", style=style)
        t.append(" ")
    t.append("\n")
    targets = getattr(m, "phase_targets", None) or []
    if targets:
        t.append("\nPhase dates\n", style="bold")
        for target in targets:
            t.append(f"  {target.name:14}{fmt.pct(target.share):>6}  by {target.by}  ")
            t.append_text(phase_state_text(target.state, target.late_by_days))
            t.append("\n")
    t.append("\n")
    t.append(f"Share of requests {fmt.bar(m.share_requests, 20)} {fmt.pct(m.share_requests)}\n")
    t.append(f"Share of tokens   {fmt.bar(m.share_tokens, 20)} {fmt.pct(m.share_tokens)}\n")
    t.append(f"Projected at deadline {fmt.pct(m.projected_share_at_deadline)}\n\n")
    before, after = getattr(m, "before", None), getattr(m, "after", None)
    if before is not None or after is not None:
        t.append(f"{'':14}{'old':>12}{'new':>12}\n", style="bold")
        for label, name, show in (
            ("$ per 1k tok", "cost_per_1k_tokens", lambda v: f"${v:.4f}"),
            ("p95", "p95_ms", fmt.ms),
            ("error rate", "error_rate", lambda v: fmt.pct(v, 1)),
        ):
            vals = [_field(x, name) if x is not None else None for x in (before, after)]
            cells = [show(v) if v is not None else fmt.DASH for v in vals]
            t.append(f"{label:14}{cells[0]:>12}{cells[1]:>12}\n")
    history = getattr(m, "history", None) or []
    if history:
        t.append("\nHistory\n", style="bold")
        for h in history:
            at = _field(h, "at")
            t.append(
                f"  {fmt.stamp(at, view.tz) if isinstance(at, (int, float)) else at}  "
                f"{_field(h, 'from_phase') or '—'} → {_field(h, 'to_phase')}  {_field(h, 'cause') or ''}\n"
            )
    return t


PHASE_STATE_STYLES = {"reached": "green", "on track": "green", "at risk": "yellow", "late": "bold red"}


def phase_state_text(state: str, late_by_days: float | None) -> Text:
    """A phase against its own date, in words: reached, on track, at risk, late — and by how many days."""
    words = state
    if state == "reached":
        words = "reached in time" if late_by_days is None else f"reached {late_by_days:.1f} days late"
    elif state == "late" and late_by_days is not None:
        words = f"late by {late_by_days:.1f} days"
    return Text(words, style=PHASE_STATE_STYLES.get(state, ""))


class MigrationScreen(LiveScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="migrationscreen.back", tooltip="Back to the dashboard")]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.migration_name = name

    def compose(self) -> ComposeResult:
        yield HeaderLine()
        with VerticalScroll(id="migration"):
            yield Static(id="migration-text")
        yield Footer()

    def on_mount(self) -> None:
        self.pulse.draw()

    def fill(self, snapshot: Snapshot, view: View) -> None:
        m = next((m for m in snapshot.migrations if m.name == self.migration_name), None)
        body = migration_text(m, view) if m is not None else Text(f"{self.migration_name}: not configured")
        self.query_one("#migration-text", Static).update(fmt.for_terminal(body))
