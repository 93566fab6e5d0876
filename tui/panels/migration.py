"""Panel 4: model migrations — phase, a bar of the new model's traffic share, days to the deadline and
the risk of missing it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text

from llmpulse.tui import format as fmt
from llmpulse.tui.backend import MigrationStatus, Snapshot
from llmpulse.tui.panels.base import Panel, View


def phase_label(m: MigrationStatus) -> str:
    total = len(m.phases) if m.phases else 0
    return f"{m.phase_index + 1}/{total} {m.phase}" if total else str(m.phase)


class MigrationPanel(Panel[MigrationStatus]):
    number = 4
    title = "Migration"
    columns = (
        ("name", "Migration"),
        ("phase", "Phase"),
        ("share", "Traffic on new"),
        ("deadline", "Left"),
        ("risk", "Risk"),
    )

    sort_by = {
        "name": lambda m: m.name.lower(),
        "share": lambda m: m.share_requests,
        "deadline": lambda m: m.days_left,
    }

    def items(self, snapshot: Snapshot, view: View) -> list[MigrationStatus]:
        return [
            m
            for m in snapshot.migrations
            if fmt.matches(view.filter, m.name, m.to_model, m.phase, m.risk, *m.from_models)
        ]

    def key(self, m: MigrationStatus) -> str:
        return str(m.name)

    def cells(self, m: MigrationStatus, view: View) -> Sequence[Any]:
        return (
            Text(m.name),
            Text(phase_label(m)),
            Text.assemble((fmt.bar(m.share_requests, 10), "cyan"), f" {fmt.pct(m.share_requests):>4}"),
            Text(fmt.days_left(m.days_left), justify="right"),
            fmt.risk_text(m.risk),
        )

    def subtitle(self, snapshot: Snapshot, view: View) -> str:
        return "" if snapshot.migrations else "no migration configured"
