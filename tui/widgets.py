"""Small widgets the panels and screens share."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey


class PanelTable(DataTable[Any]):
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

    def fix_column_width(self, column_key: str, width: int) -> None:
        """Give a column a fixed width (its cells are cut to it) instead of growing to its widest cell.
        DataTable has no public call for a width after the column exists; these are the steps its own
        add_column takes."""
        column = self.columns[ColumnKey(column_key)]
        if not column.auto_width and column.width == width:
            return
        column.width, column.auto_width = width, False
        self._require_update_dimensions = True
        self._clear_caches()
        self.refresh()
