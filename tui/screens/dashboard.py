"""The main screen: the header line, the `/` filter, the four panels and the footer of keys."""

from __future__ import annotations

from typing import Any

from rich.columns import Columns
from rich.console import Group
from rich.padding import Padding
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Input, Static

from llmpulse.tui.backend import Snapshot
from llmpulse.tui.header import HeaderLine
from llmpulse.tui.panels import PANELS, AlertsPanel, Panel, View
from llmpulse.tui.screens.base import LiveScreen

# The dashboard's own keys that act on the panels' rows (see DashboardScreen.check_action).
PANEL_ACTIONS = frozenset({"open_filter", "clear_filter", "sort", "reverse_sort", "toggle_enabled", "focus_panel"})
LAYOUT_ORDER = (3, 1, 2, 4)  # alerts first: what needs someone is on the first screen at 80×24


def welcome_text(variables: list[tuple[str, str]]) -> Group:
    """The first run, with no provider configured: how to try it without keys, what to set and where,
    the most useful first. The variables flow into as many columns as the width holds (two at 80), so the
    last lines — where the configuration is described, and that q quits — still fit 80×24."""
    intro = Text()
    intro.append("Welcome to llmpulse", style="bold")
    intro.append(" — no provider is configured yet, so there is nothing to watch.\n\n")
    intro.append("Try it first", style="bold")
    intro.append(" on a simulated fleet, with no keys and no network:\n  ")  # never split across lines
    intro.append("llmpulse demo", style="bold reverse")
    intro.append("\n\n")
    intro.append("To watch your own providers", style="bold")
    intro.append(", set their API keys in the environment or in a .env file here, then start llmpulse again")
    intro.append(" (llmpulse check probes them once):")
    width = max((len(var) for _, var in variables), default=0)
    entries = [Text.assemble((f"{var:<{width}}", "bold"), f"  {name}") for name, var in variables]
    outro = Text()
    outro.append("Base URLs, local models (Ollama), priorities, budgets, alerts and migrations: llmpulse.toml, in ")
    outro.append('README.md, section "Providers and probes"', style="bold")
    outro.append(" and the ones after it; .env.example lists every variable. q quits.")
    return Group(intro, Padding(Columns(entries, padding=(0, 3), column_first=True), (0, 0, 1, 2)), outro)


def is_first_run(snapshot: Snapshot) -> bool:
    """Nothing to watch and nothing to show: no provider configured here or judged by a collector that
    has its key (a viewer over SSH without the daemon's keys shows the daemon's verdicts), and no
    budget, migration, open alert or recorded call this month (usage needs no key). Only then does the
    welcome take the panels' place."""
    usage = getattr(snapshot, "usage", None)
    return (
        bool(snapshot.providers)
        and not any(h.watched or h.configured for h in snapshot.providers)
        and not snapshot.budgets
        and not snapshot.migrations
        and not snapshot.alerts
        and not (usage is not None and usage.requests_month)
    )


class FilterInput(Input):
    """The `/` filter: rows whose words contain the text stay; esc clears it."""

    BINDINGS = [
        Binding("escape", "clear", "Clear filter", id="filter.clear", tooltip="Clear the filter and close it"),
    ]

    def action_clear(self) -> None:
        self.value = ""
        self.screen.close_filter()  # type: ignore[attr-defined]


class DashboardScreen(LiveScreen):
    """Everything at a glance; `1`–`4` focus a panel, enter opens the row under the cursor."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (160, "-wide")]
    BINDINGS = [
        Binding("slash", "open_filter", "Filter", id="dashboard.filter", tooltip="Filter rows in every panel"),
        Binding("escape", "clear_filter", "Clear", show=False, id="dashboard.back", tooltip="Clear the filter"),
        Binding(
            "o",
            "sort",
            "Sort",
            show=False,  # in the help (and a click on a header sorts): the footer keeps room for help and quit
            id="dashboard.sort",
            tooltip="Sort the focused panel by its next column (a click on a column header sorts too)",
        ),
        Binding(
            "e",
            "toggle_enabled",
            "Enable/disable",
            show=False,
            id="dashboard.toggle",
            tooltip="Enable or disable the selected provider (asks first)",
        ),
        Binding(
            "S",
            "app.alert_stats",
            "Alert stats",
            show=False,
            id="dashboard.alertstats",
            tooltip="Alert statistics, last 30 days: by rule, severity and subject, time to ack/resolve, deliveries",
        ),
        Binding("O", "reverse_sort", "Reverse", show=False, id="dashboard.reverse", tooltip="Reverse the sort"),
        Binding(
            "1", "focus_panel(1)", "Providers", show=False, id="dashboard.panel1", tooltip="Focus the Providers panel"
        ),
        Binding(
            "2", "focus_panel(2)", "Costs", show=False, id="dashboard.panel2", tooltip="Focus the Cost vs budget panel"
        ),
        Binding("3", "focus_panel(3)", "Alerts", show=False, id="dashboard.panel3", tooltip="Focus the Alerts panel"),
        Binding(
            "4", "focus_panel(4)", "Migration", show=False, id="dashboard.panel4", tooltip="Focus the Migration panel"
        ),
    ]

    def __init__(self) -> None:
        super().__init__(id="dashboard")
        self.header_line = HeaderLine(id="header")
        self.filter_input = FilterInput(
            placeholder="filter: provider, alert, budget, migration… (esc clears)", id="filter"
        )
        self.welcome = Static(id="welcome")
        # Held, not queried: a snapshot can arrive while the screen is still mounting or already
        # closing, when a query for the container finds nothing.
        self.panels_box = VerticalScroll(id="panels", can_focus=False)
        self.panels: dict[int, Panel[Any]] = {cls.number: cls(id=f"panel{cls.number}") for cls in PANELS}

    def compose(self) -> ComposeResult:
        yield self.header_line
        yield self.filter_input
        yield self.welcome
        with self.panels_box:
            # Alerts on top, then providers; budgets and migration side by side when wide.
            for number in LAYOUT_ORDER:
                yield self.panels[number]
        yield Footer()

    def on_mount(self) -> None:
        self.filter_input.display = False
        self.welcome.display = False
        self.panels[1].table.focus()

    @property
    def welcoming(self) -> bool:
        """The first run's welcome is shown instead of the panels (no provider configured)."""
        return bool(self.welcome.display)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Filter, sort, focus and enable/disable act on the panels' rows: none on the welcome.
        return not (self.welcoming and action in PANEL_ACTIONS)

    @property
    def alerts_panel(self) -> AlertsPanel:
        return self.panels[3]  # type: ignore[return-value]

    def fill(self, snapshot: Snapshot, view: View) -> None:
        """Draw a snapshot: every panel updates its rows by key, inside one batch (one repaint)."""
        with self.app.batch_update():
            first_run = is_first_run(snapshot)
            if first_run != self.welcome.display:
                self.welcome.display = first_run
                self.panels_box.display = not first_run
                if first_run:
                    self.welcome.update(welcome_text(self.pulse.backend.key_variables()))
                # The footer lists only the keys that act on what is shown (check_action).
                self.app.refresh_bindings()
            for panel in self.panels.values():
                panel.fill(snapshot, view)

    def selected_alert_id(self) -> int | None:
        """The alert under the cursor, only while the Alerts panel has the focus: a key pressed in
        another panel must not act on an alert the user may not even see."""
        if self.focused_panel() is not self.alerts_panel:
            return None
        key = self.alerts_panel.selected
        return int(key) if key is not None else None

    def focused_panel(self) -> Panel[Any] | None:
        focused = self.focused
        return next((p for p in self.panels.values() if p.table is focused), None)

    # -- actions -----------------------------------------------------------------------------------
    def action_focus_panel(self, number: int) -> None:
        self.panels[number].focus_table()

    def action_sort(self) -> None:
        panel = self.focused_panel()
        if panel is not None:
            panel.next_sort()

    def action_reverse_sort(self) -> None:
        panel = self.focused_panel()
        if panel is not None:
            panel.reverse_sort()

    def action_toggle_enabled(self) -> None:
        providers = self.panels[1]
        health = self.app.latest and next(  # type: ignore[attr-defined]
            (h for h in self.app.latest.providers if h.provider_id == providers.selected),  # type: ignore[attr-defined]
            None,
        )
        if self.focused_panel() is not providers or health is None:
            self.notify("select a provider first (1)", severity="warning", markup=False)
            return
        self.app.ask_set_enabled(health.provider_id, health.name, not health.enabled)  # type: ignore[attr-defined]

    def action_open_filter(self) -> None:
        self.filter_input.display = True
        self.filter_input.focus()

    def close_filter(self) -> None:
        self.filter_input.display = False
        self.panels[1].table.focus()

    def action_clear_filter(self) -> None:
        if self.filter_input.value or self.filter_input.display:
            self.filter_input.value = ""
            self.close_filter()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value:
            self.filter_input.display = False
        # Keep the filter, go back to the rows it left.
        first = next((p for p in self.panels.values() if p.table.row_count), self.panels[1])
        first.table.focus()
