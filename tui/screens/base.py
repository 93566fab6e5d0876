"""What every live screen shares: the header line at the top (numbers, PAUSED marker), and when the
screen becomes active again (a modal closed, a detail screen was left) it draws the newest snapshot that
arrived meanwhile."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual.screen import Screen

from llmpulse.tui.backend import Snapshot
from llmpulse.tui.header import HeaderLine
from llmpulse.tui.panels.base import View

if TYPE_CHECKING:
    from llmpulse.tui.app import PulseApp


class LiveScreen(Screen[None]):
    @property
    def pulse(self) -> PulseApp:
        """The app, as the dashboard: its screens run only inside PulseApp and ask it to draw, for its
        time range and its backend."""
        return cast("PulseApp", self.app)

    def fill_header(self, snapshot: Snapshot | None, view: View, **state: Any) -> None:
        for header in self.query(HeaderLine):
            header.fill(snapshot, view, **state)

    def on_screen_resume(self) -> None:
        self.app.call_later(self.pulse.draw)
