"""What every dashboard panel shares: a numbered, bordered box around one table, built once and filled
from each Snapshot by row key; a sort the user picks that survives every refresh; a "+N more" note when
rows run past the box; one flexible column that takes the width left and cuts its text with "…"; and a
narrow form (short words, its least important columns dropped) for a box narrower than it needs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, ClassVar, Generic, TypeVar

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from llmpulse.tui.backend import Snapshot
from llmpulse.tui.table_sync import Row, selected_key, sync_rows
from llmpulse.tui.widgets import PanelTable

CAPPED_WIDE_FROM = 110  # a table this wide gives capped columns their wide cap


@dataclass(frozen=True)
class View:
    """How the user is looking at the data right now: the clock reading, the `/` filter, the zone."""

    now: float
    filter: str = ""
    tz: tzinfo | None = None


# What one row of a panel stands for (an Alert, a ProviderHealth, ...).
ItemT = TypeVar("ItemT")


class Panel(Vertical, Generic[ItemT], can_focus=False):
    """A dashboard panel. Subclasses name their columns, list their items in the default order (worst
    first), say how each item sorts by each column, and turn an item into cells."""

    number: ClassVar[int] = 0
    title: ClassVar[str] = ""
    columns: ClassVar[Sequence[tuple[str, str]]] = ()  # (column key, header label)
    sort_by: ClassVar[dict[str, Callable[[Any], Any]]] = {}  # column key -> the value rows sort on
    flex_column: ClassVar[str | None] = None  # takes the width the others leave; its text is cut with "…"
    flex_max: ClassVar[int | None] = None  # ...but no more than this (a name needs no 100 columns)
    # Columns that grow to their widest cell only up to a cap (narrow box, wide box), cut with "…"
    # beyond it: one long subject must not take the flexible column's room on every row.
    capped_columns: ClassVar[dict[str, tuple[int, int]]] = {}
    # A box narrower than `narrow_below` columns is narrow: `wide_only` columns drop and cells may use
    # short words (see `self.narrow`), so the columns that matter stay on an 80-column screen.
    narrow_below: ClassVar[int] = 0
    wide_only: ClassVar[frozenset[str]] = frozenset()

    class Open(Message):
        """The user pressed enter on a row: show its detail screen."""

        def __init__(self, panel: Panel[Any], key: str) -> None:
            super().__init__()
            self.panel = panel
            self.key = key

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="panel")
        self.border_title = f"{self.number} {self.title}"
        self.table = PanelTable(id=f"{id}-table" if id else None)
        self.narrow = False
        self._keep_cursor_on: str | None = None
        self.shown_columns: list[str] = []
        self.add_columns()
        self.sort_column: str | None = None  # None: the panel's own order (worst first)
        self.sort_reverse = False
        self._subtitle = ""
        self._cells: dict[str, tuple[Any, Sequence[Any]]] = {}  # key -> (signature, cells) of the last fill
        self._last: tuple[Any, View] | None = None

    # -- the two verbs ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield from self.build()

    def build(self) -> ComposeResult:
        """The panel's widgets: its table (columns were added at construction, before any snapshot)."""
        yield self.table

    def fill(self, snapshot: Snapshot, view: View) -> bool:
        """Bring the table to this snapshot; returns True when anything on screen changed."""
        self._last = (snapshot, view)
        self.fit_narrow()
        changed = sync_rows(self.table, self.rows(snapshot, view))
        if self._keep_cursor_on is not None:
            key, self._keep_cursor_on = self._keep_cursor_on, None
            if key in {r.key.value for r in self.table.ordered_rows}:
                self.table.move_cursor(row=self.table.get_row_index(key), animate=False, scroll=self.table.has_focus)
        self.fit_flex_column()
        # New rows are measured when the table is next idle: fit again once they are.
        self.call_after_refresh(self.fit_flex_column)
        self._subtitle = self.subtitle(snapshot, view)
        self.call_after_refresh(self.show_subtitle)  # "+N more" needs the table's laid-out height
        return self.show_subtitle() or changed

    def rows(self, snapshot: Snapshot, view: View) -> list[Row]:
        items = self.items(snapshot, view)
        if self.sort_column is not None:
            value = self.sort_by[self.sort_column]
            known = [i for i in items if value(i) is not None]
            unknown = [i for i in items if value(i) is None]  # unknowns last whichever way
            items = sorted(known, key=value, reverse=self.sort_reverse) + unknown
        # A row whose item and on-screen times are what they were last time keeps its cell objects:
        # the table sees the same objects and skips them, so a refresh costs only what changed.
        rows: list[Row] = []
        last, self._cells = self._cells, {}
        for item in items:
            key = self.key(item)
            signature = self.signature(item, view)
            kept = last.get(key)
            cells = kept[1] if signature is not None and kept is not None and kept[0] == signature else None
            if cells is None:
                cells = self.cells(item, view)
                if len(self.shown_columns) != len(self.columns):
                    shown = set(self.shown_columns)
                    cells = tuple(c for (k, _), c in zip(self.columns, cells) if k in shown)
            self._cells[key] = (signature, cells)
            rows.append((key, cells))
        return rows

    # -- for subclasses -----------------------------------------------------------------------------
    def items(self, snapshot: Snapshot, view: View) -> list[ItemT]:
        """The snapshot's items this panel lists, filtered, in the default order."""
        raise NotImplementedError

    def key(self, item: ItemT) -> str:
        raise NotImplementedError

    def cells(self, item: ItemT, view: View) -> Sequence[Any]:
        raise NotImplementedError

    def signature(self, item: Any, view: View) -> Any:
        """What the item's cells depend on (the item and the times shown from `view.now`), compared to
        last refresh's to reuse its cells; None to build them every time."""
        return None

    def subtitle(self, snapshot: Snapshot, view: View) -> str:
        return ""

    # -- the border's note --------------------------------------------------------------------------
    def hidden_below(self) -> int:
        """Rows out of the box's sight, scrolled past or still below (0 before the first layout)."""
        visible = self.table.scrollable_content_region.height - self.table.header_height
        if visible <= 0:
            return 0
        return max(0, self.table.row_count - visible)  # above or below the box: both are out of sight

    def show_subtitle(self) -> bool:
        parts = [self._subtitle] if self._subtitle else []
        if self.sort_column is not None:
            label = dict(self.columns)[self.sort_column]
            parts.append(f"by {label} {'↓' if self.sort_reverse else '↑'}")
        more = self.hidden_below()
        if more:
            parts.append(f"+{more} more")
        text = " · ".join(parts)
        if text != (self.border_subtitle or ""):
            self.border_subtitle = text
            return True
        return False

    # -- sorting ------------------------------------------------------------------------------------
    def next_sort(self) -> None:
        """Default order → each sortable column on screen in turn → default order again."""
        keys = [k for k in self.shown_columns if k in self.sort_by]
        if not keys:
            return
        if self.sort_column is None:
            self.sort_column, self.sort_reverse = keys[0], False
        else:
            i = keys.index(self.sort_column) + 1 if self.sort_column in keys else len(keys)
            self.sort_column = keys[i] if i < len(keys) else None
            self.sort_reverse = False
        self.redraw()

    def reverse_sort(self) -> None:
        if self.sort_column is not None:
            self.sort_reverse = not self.sort_reverse
            self.redraw()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a column's header sorts by it; a second click reverses."""
        event.stop()
        key = event.column_key.value
        if key not in self.sort_by:
            return
        if self.sort_column == key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = key, False
        self.redraw()

    def redraw(self) -> None:
        if self._last is not None:
            self.fill(*self._last)

    # -- width --------------------------------------------------------------------------------------
    def on_resize(self, event: events.Resize) -> None:
        if self.fit_narrow():
            self.redraw()
        self.fit_flex_column()
        self.call_after_refresh(self.show_subtitle)

    def add_columns(self) -> None:
        shown = [(k, label) for k, label in self.columns if not (self.narrow and k in self.wide_only)]
        for key, label in shown:
            self.table.add_column(label, key=key)
        self.shown_columns = [k for k, _ in shown]

    def fit_narrow(self) -> bool:
        """Switch between the wide and the narrow form when the box's width crosses `narrow_below`;
        True when it switched (the columns were built again and every row must be)."""
        narrow = 0 < self.size.width < self.narrow_below
        if narrow == self.narrow:
            return False
        self.narrow = narrow
        self._keep_cursor_on = self.selected  # the rows are built again; the cursor stays on its row
        self.table.clear(columns=True)
        self.add_columns()
        self._cells = {}
        return True

    def fit_flex_column(self) -> None:
        if self.flex_column is None or not self.table.size.width:
            return
        for key, (narrow_cap, wide_cap) in self.capped_columns.items():
            column = self.table.columns.get(ColumnKey(key))
            if column is not None:
                cap = narrow_cap if self.table.size.width < CAPPED_WIDE_FROM else wide_cap
                self.table.fix_column_width(key, min(cap, column.content_width))
        others = sum(c.get_render_width(self.table) for c in self.table.ordered_columns if c.key != self.flex_column)
        # The table's width less the other columns, the cell padding and a vertical scrollbar's room.
        width = self.table.scrollable_content_region.width - others - 2 * self.table.cell_padding - 1
        if self.flex_max is not None:
            width = min(width, self.flex_max)
        self.table.fix_column_width(self.flex_column, max(8, width))

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
