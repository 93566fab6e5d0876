"""Panel 3: open alerts, most urgent first — firing ones by severity, then the ones someone handles
(acknowledged or silenced). Each row has the alert's number (the one `llmpulse alerts ack 12` takes),
severity, state, how long it has been open, subject and the message, cut with "…" to the width left."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text

from llmpulse.core.vocabulary import most_severe_first
from llmpulse.tui import format as fmt
from llmpulse.tui.backend import Alert, Snapshot
from llmpulse.tui.panels.base import Panel, View


def needs_someone(alert: Alert, now: float) -> bool:
    """Firing and neither acknowledged nor silenced."""
    return alert.state == "firing" and not (alert.silenced_until is not None and alert.silenced_until > now)


def urgency(alert: Alert, now: float) -> tuple[bool, int, float, int]:
    """Unhandled before handled, critical before info, newest first."""
    return (not needs_someone(alert, now), most_severe_first(alert.severity), -alert.first_seen, alert.id)


class AlertsPanel(Panel[Alert]):
    number = 3
    title = "Alerts"
    columns = (
        ("id", "#"),
        ("severity", "Severity"),
        ("state", "State"),
        ("age", "Age"),
        ("subject", "Subject"),
        ("message", "Message"),
    )
    sort_by = {
        "id": lambda a: a.id,
        "severity": lambda a: most_severe_first(a.severity),
        "state": lambda a: a.state,
        "age": lambda a: a.first_seen,
        "subject": lambda a: a.subject.lower(),
    }
    flex_column = "message"
    # "department:Engineering/month" must not halve every message at 80 columns; the message and the
    # alert's screen name the subject in full.
    capped_columns = {"subject": (14, 28), "state": (16, 32)}

    def items(self, snapshot: Snapshot, view: View) -> list[Alert]:
        # Without a filter nothing need be worded to be matched (hundreds of alerts, every second).
        shown = [
            a
            for a in snapshot.alerts
            if not view.filter
            or fmt.matches(
                view.filter,
                a.severity,
                a.subject,
                a.message,
                a.rule,
                fmt.alert_state_words(a.state, a.silenced_until, a.escalated, view.now),
            )
        ]
        return sorted(shown, key=lambda a: urgency(a, view.now))

    def signature(self, a: Alert, view: View) -> Any:
        return (
            a,
            fmt.coarse_age(view.now - a.first_seen),
            fmt.alert_state_words(a.state, a.silenced_until, a.escalated, view.now),
        )

    def key(self, a: Alert) -> str:
        return str(a.id)

    def cells(self, a: Alert, view: View) -> Sequence[Any]:
        return (
            Text(str(a.id), justify="right"),
            fmt.severity_text(a.severity),
            fmt.alert_state_text(a.state, a.silenced_until, a.escalated, view.now),
            Text(fmt.coarse_age(view.now - a.first_seen), justify="right"),
            Text(a.subject),
            Text(a.message),
        )

    def subtitle(self, snapshot: Snapshot, view: View) -> str:
        firing = sum(1 for a in snapshot.alerts if needs_someone(a, view.now))
        if not snapshot.alerts:
            return "all quiet"
        counts = f"{firing} firing / {len(snapshot.alerts)} open"
        if view.filter:  # the counts are of every open alert: say how many of them the rows are
            return f"{len(self.items(snapshot, view))} match · {counts}"
        return counts
