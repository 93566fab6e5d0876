"""Messages from the workers to the screen: data flows one way, worker -> message -> handler -> widgets."""

from __future__ import annotations

from textual.message import Message

from llmpulse.tui.backend import Snapshot


class SnapshotReady(Message):
    """A fresh Snapshot was built; handlers draw it unless the view is paused or a modal is open."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class SnapshotFailed(Message):
    """Building a Snapshot failed; the last good one stays on screen and the header says why."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error
