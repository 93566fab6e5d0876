"""`?`: every key, read from the bindings themselves so the help can never drift from what the keys do."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

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


def help_text(app: App[Any]) -> Text:
    text = Text(INTRO + "\n", style="italic")
    for title, bindings in _sections(app):
        text.append(f"\n{title}\n", style="bold underline")
        for b in bindings:
            if not isinstance(b, Binding):
                continue
            text.append(f"  {_key(b, app):>10}  ", style="bold")
            text.append(b.description)
            if b.tooltip and b.tooltip != b.description:
                text.append(f" — {b.tooltip}", style="dim")
            text.append("\n")
    text.append(
        "\n  ctrl+p      Command palette: costs, alert statistics, reload config, probe, enable/disable a provider, "
        "themes…\n"
    )
    text.append("\nStates: ● healthy  ◐ degraded  ✖ failed  ? unknown  ○ disabled  · no key\n")
    text.append("Alerts: ‼ critical  ▲ warning  ℹ info — firing / acked / silenced / escalated / resolved\n")
    return text


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
