"""Bring a DataTable to a wanted set of rows by row key: update changed cells, add new rows, remove gone
ones, and reorder only when the order changed. Rows are never rebuilt, so the cursor, scroll position and
column widths survive every refresh, and an unchanged table costs no repaint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from llmpulse.tui import format as fmt

Row = tuple[str, Sequence[Any]]  # (row key, one cell per column in column order)

# Per table, the cell sequence each row was last brought to. A panel hands back the very same sequence
# for a row that did not change, and such a row costs one identity check: no cell is converted, read
# back or compared (a refresh of 700 unchanged rows is then nearly free).
_shown: WeakKeyDictionary[DataTable[Any], dict[str, Sequence[Any]]] = WeakKeyDictionary()


def _same(a: Any, b: Any) -> bool:
    if a is b:  # a panel handed back last refresh's cell
        return True
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.style == b.style and a.spans == b.spans
    return bool(a == b)


def sync_rows(table: DataTable[Any], rows: Sequence[Row]) -> bool:
    """Make `table` show exactly `rows`, in that order. Returns True when anything changed."""
    shown = _shown.setdefault(table, {})
    wanted = dict(rows)
    columns = table.ordered_columns
    cursor_key = _cursor_key(table)
    changed = False

    for row_key in [rk for rk in table.rows if rk.value not in wanted]:
        table.remove_row(row_key)
        shown.pop(row_key.value or "", None)
        changed = True

    existing = {rk.value for rk in table.rows}
    for key, given in rows:
        if key in existing and shown.get(key) is given:
            continue
        shown[key] = given
        # Cells are Text so each is its own object (the reorder below ranks rows by cell identity) and
        # so data is never parsed as markup.
        cells = [_cell(c) for c in given]
        if key in existing:
            for column, value in zip(columns, cells):
                if not _same(table.get_cell(key, column.key), value):
                    # Re-measuring a column walks all its cells whenever a cell gets narrower, so a
                    # column is measured again only when the new cell is wider than it: columns grow,
                    # never shrink, and a ticking cell costs one cell's repaint.
                    wider = column.auto_width and value.cell_len > column.content_width
                    table.update_cell(key, column.key, value, update_width=wider)
                    changed = True
        else:
            table.add_row(*cells, key=key)
            changed = True

    order = [key for key, _ in rows]
    current = [row.key.value for row in table.ordered_rows]
    if current != order:
        _reorder(table, order)
        changed = True

    if cursor_key is not None and cursor_key in wanted:
        index = table.get_row_index(cursor_key)
        if index != table.cursor_row:
            # The cursor follows its row when the row moves (an acknowledged alert sorts lower); the
            # focused table scrolls to keep it in sight.
            table.move_cursor(row=index, animate=False, scroll=table.has_focus)
    return changed


def _cell(value: Any) -> Text:
    """Every cell a one-line Text that ends with "…" when its column is narrower than it."""
    text = value if isinstance(value, Text) else Text("" if value is None else str(value))
    text.no_wrap, text.overflow = True, "ellipsis"
    return fmt.for_terminal(text)


def _reorder(table: DataTable[Any], order: list[str]) -> None:
    """DataTable sorts by cell values; rank each row by the identity of its first cell."""
    first = table.ordered_columns[0].key
    rank = {id(table.get_cell(key, first)): i for i, key in enumerate(order)}
    table.sort(first, key=lambda cell: rank.get(id(cell), len(rank)))


def _cursor_key(table: DataTable[Any]) -> str | None:
    if table.row_count == 0:
        return None
    try:
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    except Exception:  # CellDoesNotExist while the cursor is off the end
        return None
    return row_key.value


def selected_key(table: DataTable[Any]) -> str | None:
    """The row key under the cursor, or None for an empty table."""
    return _cursor_key(table)


def key_of(row_key: RowKey) -> str | None:
    return row_key.value
