"""Small widgets the panels and screens share."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


class PanelTable(DataTable):
    """A row-cursor DataTable with vi keys: j/k move, g/G jump to the first/last row."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="table.down", tooltip="Move to the next row"),
        Binding("k", "cursor_up", "Up", show=False, id="table.up", tooltip="Move to the previous row"),
        Binding("g", "scroll_top", "First", show=False, id="table.first", tooltip="Jump to the first row"),
        Binding("G", "scroll_bottom", "Last", show=False, id="table.last", tooltip="Jump to the last row"),
    ]

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(
            id=id, classes=classes, cursor_type="row", zebra_stripes=False, cursor_foreground_priority="renderable"
        )
