"""`?`: every key, read from the bindings themselves so the help can never drift from what the keys do."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from llmpulse.tui.widgets import PanelTable

INTRO = (
    "llmpulse shows provider health, cost against budgets, alerts and migrations, live. "
    "Every state is a glyph and a word. Keys act on the row under the cursor."
)


def _key(binding: Binding, app: App[Any]) -> str:
    if binding.key_display:
        return binding.key_display
    return " ".join(app.get_key_display(Binding(k.strip(), "")) for k in binding.key.split(","))


def help_text(app: App[Any]) -> Text:
    from llmpulse.tui.screens.alert import AlertScreen
    from llmpulse.tui.screens.costs import CostsScreen
    from llmpulse.tui.screens.dashboard import DashboardScreen, FilterInput
    from llmpulse.tui.screens.provider import ProviderScreen

    sections = [
        ("Everywhere", app.BINDINGS),
        ("Dashboard", DashboardScreen.BINDINGS),
        ("In a panel", PanelTable.BINDINGS + [Binding("enter", "open", "Details of the row", id="table.open")]),
        ("Filter", FilterInput.BINDINGS),
        ("Provider screen", ProviderScreen.BINDINGS),
        ("Costs screen", CostsScreen.BINDINGS),
        ("Alert screen", AlertScreen.BINDINGS),
    ]
    text = Text(INTRO + "\n", style="italic")
    for title, bindings in sections:
        text.append(f"\n{title}\n", style="bold underline")
        for b in bindings:
            if not isinstance(b, Binding):
                continue
            text.append(f"  {_key(b, app):>10}  ", style="bold")
            text.append(b.description)
            if b.tooltip and b.tooltip != b.description:
                text.append(f" — {b.tooltip}", style="dim")
            text.append("\n")
    text.append("\n  ctrl+p      Command palette: costs, probe, enable/disable a provider, themes…\n")
    text.append("\nStates: ● healthy  ◐ degraded  ✖ failed  ? unknown  ○ disabled  · no key\n")
    text.append("Alerts: ‼ critical  ▲ warning  ℹ info — firing / acked / silenced / escalated / resolved\n")
    return text


class HelpScreen(Screen[Any]):
    BINDINGS = [Binding("escape,question_mark", "app.pop_screen", "Back", id="help.back", tooltip="Close the help")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_text(self.app), id="help-text")
        yield Footer()
