"""Tables are brought up to date by row key: rows are never rebuilt, the cursor stays on its row."""

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from llmpulse.tui.table_sync import selected_key, sync_rows


class TableApp(App):
    def compose(self) -> ComposeResult:
        table = DataTable(cursor_type="row")
        table.add_column("Name", key="name")
        table.add_column("Value", key="value")
        yield table


def keys(table: DataTable) -> list[str]:
    return [row.key.value for row in table.ordered_rows]


def values(table: DataTable) -> list[str]:
    return [table.get_cell(k, "value").plain for k in keys(table)]


async def test_update_add_remove_reorder_by_key():
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(DataTable)
        assert sync_rows(table, [("a", ("A", "1")), ("b", ("B", "2")), ("c", ("C", "3"))])
        assert keys(table) == ["a", "b", "c"]
        kept = table.get_cell("a", "name")

        # Same data: nothing changes, not even the cell objects.
        assert not sync_rows(table, [("a", ("A", "1")), ("b", ("B", "2")), ("c", ("C", "3"))])
        assert table.get_cell("a", "name") is kept

        # One cell changed, one row gone, one new, order changed.
        assert sync_rows(table, [("c", ("C", "30")), ("a", ("A", "1")), ("d", ("D", "4"))])
        assert keys(table) == ["c", "a", "d"]
        assert values(table) == ["30", "1", "4"]
        assert table.get_cell("a", "name") is kept, "an unchanged row must not be rebuilt"
        await pilot.pause()


async def test_cursor_follows_its_row_when_rows_move():
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(DataTable)
        sync_rows(table, [("a", ("A", "1")), ("b", ("B", "2")), ("c", ("C", "3"))])
        table.focus()
        await pilot.press("down", "down")
        assert selected_key(table) == "c"
        sync_rows(table, [("c", ("C", "3")), ("a", ("A", "1")), ("b", ("B", "2"))])
        assert selected_key(table) == "c"
        assert table.cursor_row == 0


async def test_cells_are_text_never_markup():
    app = TableApp()
    async with app.run_test():
        table = app.query_one(DataTable)
        sync_rows(table, [("x", ("[bold]not markup[/bold]", Text("t")))])
        assert table.get_cell("x", "name").plain == "[bold]not markup[/bold]"


async def test_style_change_counts_as_a_change():
    app = TableApp()
    async with app.run_test():
        table = app.query_one(DataTable)
        sync_rows(table, [("x", (Text("ok", style="green"), "1"))])
        assert sync_rows(table, [("x", (Text("ok", style="red"), "1"))])
        assert str(table.get_cell("x", "name").style) == "red"
