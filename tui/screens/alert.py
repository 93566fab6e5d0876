"""An alert in detail, with its history of transitions (who acknowledged, silenced, resolved, when)."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Footer, Static

from llmpulse.tui import format as fmt
from llmpulse.tui.backend import Alert, Snapshot
from llmpulse.tui.header import HeaderLine
from llmpulse.tui.panels.base import View
from llmpulse.tui.screens.base import LiveScreen
from llmpulse.tui.table_sync import sync_rows
from llmpulse.tui.widgets import PanelTable


def alert_text(a: Alert, view: View) -> Text:
    t = Text()
    t.append_text(fmt.severity_text(a.severity))
    t.append("  ")
    t.append_text(fmt.alert_state_text(a.state, a.silenced_until, a.escalated, view.now))
    t.append(f"  #{a.id}  {a.rule}  ", style="dim")
    t.append(f"{a.subject}\n", style="bold")
    t.append(f"{a.message}\n")
    t.append(
        f"first seen {fmt.stamp(a.first_seen, view.tz)} ({fmt.ago(a.first_seen, view.now)}), "
        f"last seen {fmt.ago(a.last_seen, view.now)}, {a.count}×\n",
        style="dim",
    )
    if a.acked_by:
        t.append(f"acknowledged by {a.acked_by} {fmt.ago(a.acked_at, view.now)}{': ' + a.note if a.note else ''}\n")
    if a.silenced_until and a.silenced_until > view.now:
        t.append(f"silenced until {fmt.stamp(a.silenced_until, view.tz)}\n")
    if a.resolved_at:
        t.append(f"resolved {fmt.ago(a.resolved_at, view.now)}\n", style="green")
    return t


class AlertScreen(LiveScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="alertscreen.back", tooltip="Back to the dashboard"),
    ]

    def __init__(self, alert_id: int) -> None:
        super().__init__()
        self.alert_id = alert_id
        self.alert: Alert | None = None
        self.history = PanelTable(id="alert-history")

    def compose(self) -> ComposeResult:
        yield HeaderLine()
        with Vertical(id="alert"):
            yield Static(id="alert-summary")
            yield Static("History", classes="section")
            yield self.history
        yield Footer()

    def on_mount(self) -> None:
        for key, label in (("at", "When"), ("transition", "Change"), ("actor", "By"), ("detail", "Detail")):
            self.history.add_column(label, key=key)
        self.pulse.draw()

    def selected_alert_id(self) -> int:
        return self.alert_id

    def fill(self, snapshot: Snapshot, view: View) -> None:
        self.load(view)

    def alert_changed(self, alert: Alert) -> None:
        if alert.id == self.alert_id:
            self.pulse.draw() if self.pulse.can_draw() else None

    @work(group="alert-detail", exclusive=True, exit_on_error=False)
    async def load(self, view: View) -> None:
        alert, transitions = await self.pulse.backend.alert_detail(self.alert_id)
        if alert is None:
            self.query_one("#alert-summary", Static).update(Text(f"Alert #{self.alert_id} not found"))
            return
        self.alert = alert
        self.query_one("#alert-summary", Static).update(fmt.for_terminal(alert_text(alert, view)))
        rows = []
        for i, tr in enumerate(transitions):
            rows.append(
                (
                    str(getattr(tr, "id", i)),
                    (
                        Text(fmt.stamp(tr.at, view.tz)),
                        Text(tr.change),
                        Text(tr.actor or ""),
                        Text(tr.detail or ""),
                    ),
                )
            )
        sync_rows(self.history, rows)
