"""Issue 13 §1/§2 at 80×24: a question or an error in a dialog is never cut at its box's edge (it wraps,
whole), and the help screen's long descriptions wrap under themselves, not under the keys — with `j`/`k`
still scrolling it."""

from __future__ import annotations

import pytest

from llmpulse.tui.screens.confirm import ConfirmScreen
from llmpulse.tui.screens.help import HelpScreen
from llmpulse.tui.screens.silence import SilenceScreen
from tests.snapshot_apps.fixed import fixed_app
from tests.tui_helpers import settle, wait_for

SIZES = [(80, 24), (120, 40)]


def drawn_words(widget) -> list[str]:
    """The words the widget draws, line after line (what a reader sees, wrapped or not)."""
    return " ".join(widget.render_line(y).text for y in range(widget.size.height)).split()


def fits(widget, screen_width: int) -> bool:
    return widget.region.x >= 0 and widget.region.right <= screen_width


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_disable_question_is_whole(size):
    app = fixed_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        await pilot.press("1", "j", "j", "j", "j", "e")  # the fifth row (Ollama): enabled, so "Disable"
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen)), app.screen
        await pilot.pause()
        label = app.screen.query_one("#confirm-question")
        question = app.screen.question
        assert len(question) > label.size.width, "the question must be longer than a line to test wrapping"
        assert drawn_words(label) == question.split(), drawn_words(label)
        assert fits(label, size[0])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_silence_error_is_whole(size):
    app = fixed_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        await pilot.press("3", "s")
        assert await wait_for(pilot, lambda: isinstance(app.screen, SilenceScreen)), app.screen
        await pilot.press(*"forever and ever", "enter")
        await pilot.pause()
        error = app.screen.query_one("#silence-error")
        expected = "'forever and ever' is not a duration; expected e.g. 500ms, 30s, 5m, 1h, 7d"
        assert drawn_words(error) == expected.split(), drawn_words(error)
        assert error.size.height >= 2 and fits(error, size[0])


async def test_help_wraps_descriptions_under_themselves_and_scrolls_at_80x24():
    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen)), app.screen
        await pilot.pause()
        text = app.screen.query_one("#help-text")
        lines = [text.render_line(y).text.rstrip() for y in range(text.size.height)]
        start = next(i for i, line in enumerate(lines) if "Reload config — " in line)
        column = lines[start].index("Reload config")
        # ctrl+r's description runs over three lines at 80 columns, each under its first.
        continued = lines[start + 1 : start + 3]
        assert all(line[:column].strip() == "" and line[column : column + 1].strip() for line in continued), lines[
            start : start + 3
        ]
        assert "the running config stays" in " ".join(lines[start : start + 3])
        assert max(len(line) for line in lines) <= 80
        box = app.screen.query_one("#help")
        await pilot.press("j", "j")
        assert await wait_for(pilot, lambda: box.scroll_y == 2), box.scroll_y
        await pilot.press("k")
        assert await wait_for(pilot, lambda: box.scroll_y == 1), box.scroll_y
