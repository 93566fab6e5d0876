"""Asks how long to silence an alert: a typed duration (30m, 2h, 1d) or one of the usual choices."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from llmpulse.core.durations import DurationError, format_duration, parse_duration

CHOICES = ("15m", "1h", "4h", "1d")


class SilenceScreen(ModalScreen[float | None]):
    """Returns the silence length in seconds, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="silence.cancel", tooltip="Do not silence")]

    def __init__(self, alert_id: int) -> None:
        super().__init__()
        self.alert_id = alert_id

    def compose(self) -> ComposeResult:
        with Vertical(id="silence-box"):
            yield Label(f"Silence alert #{self.alert_id} for how long?", id="silence-title")
            yield Input(placeholder="e.g. 30m, 2h, 1d — enter to confirm", id="silence-input")
            yield OptionList(*(Option(c, id=c) for c in CHOICES), id="silence-choices")
            yield Label("", id="silence-error")

    def on_mount(self) -> None:
        self.query_one("#silence-input", Input).focus()

    @on(Input.Submitted, "#silence-input")
    def typed(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            seconds = parse_duration(event.value)
        except DurationError as exc:
            self.query_one("#silence-error", Label).update(str(exc))
            return
        if seconds <= 0:
            self.query_one("#silence-error", Label).update("a silence must last longer than 0s")
            return
        self.dismiss(seconds)

    @on(OptionList.OptionSelected, "#silence-choices")
    def picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(parse_duration(event.option.id or "1h"))

    def action_cancel(self) -> None:
        self.dismiss(None)


def describe(seconds: float) -> str:
    return format_duration(seconds)
