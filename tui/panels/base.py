"""What every dashboard panel shares: a numbered, bordered box around one table, built once and filled
from each Snapshot by row key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable

from llmpulse.tui.table_sync import Row, selected_key, sync_rows
from llmpulse.tui.widgets import PanelTable


@dataclass(frozen=True)
class View:
    """How the user is looking at the data right now: the clock reading, the `/` filter, the zone."""

    now: float
    filter: str = ""
    tz: tzinfo | None = None


class Panel(Vertical, can_focus=False):
    """A dashboard panel. Subclasses name their columns and turn a Snapshot into rows."""

    number: ClassVar[int] = 0
    title: ClassVar[str] = ""
    columns: ClassVar[Sequence[tuple[str, str]]] = ()  # (column key, header label)

    class Open(Message):
        """The user pressed enter on a row: show its detail screen."""

        def __init__(self, panel: Panel, key: str) -> None:
            super().__init__()
            self.panel = panel
            self.key = key

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="panel")
        self.border_title = f"{self.number} {self.title}"
        self.table = PanelTable(id=f"{id}-table" if id else None)
        for key, label in self.columns:
            self.table.add_column(label, key=key)

    # -- the two verbs ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield from self.build()

    def build(self) -> ComposeResult:
        """The panel's widgets: its table (columns were added at construction, before any snapshot)."""
        yield self.table

    def fill(self, snapshot: Any, view: View) -> bool:
        """Bring the table to this snapshot; returns True when anything on screen changed."""
        changed = sync_rows(self.table, self.rows(snapshot, view))
        subtitle = self.subtitle(snapshot, view)
        if subtitle != (self.border_subtitle or ""):
            self.border_subtitle = subtitle
            changed = True
        return changed

    # -- for subclasses -----------------------------------------------------------------------------
    def rows(self, snapshot: Any, view: View) -> list[Row]:
        raise NotImplementedError

    def subtitle(self, snapshot: Any, view: View) -> str:
        return ""

    # -- selection ----------------------------------------------------------------------------------
    @property
    def selected(self) -> str | None:
        """The row key under the cursor."""
        return selected_key(self.table)

    def focus_table(self) -> None:
        self.table.focus()
        self.scroll_visible(animate=False)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Open(self, event.row_key.value))
