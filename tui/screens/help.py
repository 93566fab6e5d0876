"""`?`: every key, read from the bindings themselves so the help can never drift from what the keys do.

Keys and descriptions are two columns: a description longer than the screen wraps under itself, not
under the keys, so the help reads at 80×24 as well as wide."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from llmpulse.tui import format as fmt
from llmpulse.tui.widgets import PanelTable

INTRO = (
    "llmpulse shows provider health, cost against budgets, alerts and migrations, live. "
    "Every state is a glyph and a word. Keys act on the row under the cursor."
)


def help_keys(app: App[Any]) -> list[tuple[str, Binding]]:
    """Every key the help lists, as it shows it, with its binding (the README's key table is checked
    against this)."""
    return [(_key(b, app), b) for _title, bindings in _sections(app) for b in bindings if isinstance(b, Binding)]


def _key(binding: Binding, app: App[Any]) -> str:
    if binding.key_display:
        return binding.key_display
    return " ".join(app.get_key_display(Binding(k.strip(), "")) for k in binding.key.split(","))


def _sections(app: App[Any]) -> list[tuple[str, list[BindingType]]]:
    from llmpulse.tui.screens.alert import AlertScreen
    from llmpulse.tui.screens.alert_stats import AlertStatsScreen
    from llmpulse.tui.screens.confirm import ConfirmScreen
    from llmpulse.tui.screens.costs import CostsScreen
    from llmpulse.tui.screens.dashboard import DashboardScreen, FilterInput
    from llmpulse.tui.screens.provider import ProviderScreen

    sections = [
        ("Everywhere", app.BINDINGS),
        ("Dashboard", DashboardScreen.BINDINGS),
        (
            "In a panel",
            PanelTable.BINDINGS
            + [Binding("enter", "open", "Details of the row", key_display="enter", id="table.open")],
        ),
        ("Filter", FilterInput.BINDINGS),
        ("Provider screen", ProviderScreen.BINDINGS),
        ("Costs screen", CostsScreen.BINDINGS),
        ("Alert screen", AlertScreen.BINDINGS),
        ("Alert statistics", AlertStatsScreen.BINDINGS),
        ("Help", HelpScreen.BINDINGS),
        ("A yes/no question", ConfirmScreen.BINDINGS),
    ]
    return sections


KEY_WIDTH = 10  # the widest key shown ("ctrl+r", "esc ?") with room to spare


def _keys_grid(rows: list[tuple[str, Text]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", min_width=KEY_WIDTH, no_wrap=True, style="bold")
    grid.add_column(ratio=1, overflow="fold")  # a long description wraps under its own first line
    for key, description in rows:
        grid.add_row(key, description)
    return grid


def help_text(app: App[Any]) -> Group:
    parts: list[RenderableType] = [Text(INTRO, style="italic")]
    for title, bindings in _sections(app):
        parts.append(Text(f"\n{title}", style="bold underline"))
        rows = []
        for b in bindings:
            if not isinstance(b, Binding):
                continue
            description = Text(b.description)
            if b.tooltip and b.tooltip != b.description:
                description.append(f" — {b.tooltip}", style="dim")
            rows.append((_key(b, app), description))
        parts.append(_keys_grid(rows))
    palette = "Command palette: costs, alert statistics, reload config, probe, enable/disable a provider, themes…"
    parts += [Text(), _keys_grid([("ctrl+p", Text(palette))])]
    parts.append(
        Text(
            "\nStates: ● healthy  ◐ degraded  ✖ failed  ? unknown  ○ disabled  "
            "· no key / no base URL / not set up (a local provider, probed only when asked for)\n"
            + fmt.BAND_LEGEND
            + "\nAlerts: ‼ critical  ▲ warning  ℹ info — firing / acked / silenced / escalated / resolved"
        )
    )
    return Group(*parts)


def help_plain(app: App[Any], width: int = 100) -> str:
    """The help as plain text, laid out `width` columns wide (what the screen shows, without styles)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(help_text(app))
    return console.export_text()


class HelpScreen(Screen[Any]):
    BINDINGS = [
        Binding("escape,question_mark", "app.pop_screen", "Back", id="help.back", tooltip="Close the help"),
        Binding("j,down", "scroll(1)", "Down", show=False, id="help.down", tooltip="Scroll the help down"),
        Binding("k,up", "scroll(-1)", "Up", show=False, id="help.up", tooltip="Scroll the help up"),
        Binding("g", "scroll_to(0)", "Top", show=False, id="help.top", tooltip="Top of the help"),
        Binding("G", "scroll_to(-1)", "End", show=False, id="help.end", tooltip="End of the help"),
    ]

    def action_scroll(self, lines: int) -> None:
        self.query_one("#help", VerticalScroll).scroll_relative(y=lines, animate=False)

    def action_scroll_to(self, where: int) -> None:
        help_box = self.query_one("#help", VerticalScroll)
        help_box.scroll_to(y=help_box.max_scroll_y if where < 0 else 0, animate=False)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_text(self.app), id="help-text")
        yield Footer()
