"""Panel 3: open alerts, worst first — severity, age, state (firing / acked / silenced / escalated),
subject and message."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from llmpulse.tui import format as fmt
from llmpulse.tui.panels.base import Panel, View
from llmpulse.tui.table_sync import Row


def alert_order(alert: Any) -> tuple:
    """Firing before handled, critical before info, newest first."""
    handled = alert.state != "firing"
    return (handled, fmt.SEVERITY_RANK.get(alert.severity, 9), -alert.first_seen, alert.id)


class AlertsPanel(Panel):
    number = 3
    title = "Alerts"
    columns = (
        ("severity", "Severity"),
        ("state", "State"),
        ("age", "Age"),
        ("subject", "Subject"),
        ("message", "Message"),
    )

    def rows(self, snapshot: Any, view: View) -> list[Row]:
        rows = []
        for a in sorted(snapshot.alerts, key=alert_order):
            state = fmt.alert_state_words(a.state, a.silenced_until, a.escalated, view.now)
            if not fmt.matches(view.filter, a.severity, a.subject, a.message, a.rule, state):
                continue
            rows.append(
                (
                    str(a.id),
                    (
                        fmt.severity_text(a.severity),
                        fmt.alert_state_text(a.state, a.silenced_until, a.escalated, view.now),
                        Text(fmt.age(view.now - a.first_seen), justify="right"),
                        Text(a.subject),
                        Text(a.message),
                    ),
                )
            )
        return rows

    def subtitle(self, snapshot: Any, view: View) -> str:
        firing = sum(1 for a in snapshot.alerts if a.state == "firing")
        return f"{firing} firing / {len(snapshot.alerts)} open" if snapshot.alerts else "all quiet"
