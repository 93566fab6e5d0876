"""What every live screen shares: the header line at the top (numbers, PAUSED marker), and when the
screen becomes active again (a modal closed, a detail screen was left) it draws the newest snapshot that
arrived meanwhile."""

from __future__ import annotations

from typing import Any

from textual.screen import Screen

from llmpulse.tui.header import HeaderLine
from llmpulse.tui.panels.base import View


class LiveScreen(Screen[Any]):
    def fill_header(self, snapshot: Any | None, view: View, **state: Any) -> None:
        for header in self.query(HeaderLine):
            header.fill(snapshot, view, **state)

    def on_screen_resume(self) -> None:
        self.app.call_later(self.app.draw)  # type: ignore[attr-defined]
