"""NO_COLOR: the dashboard turns monochrome and every state still reads, by glyph and word."""

import re

from tests.snapshot_apps.fixed import fixed_app

WINDOW_CHROME = {"#ff5f57", "#febc2e", "#28c840"}  # the screenshot frame's three buttons


def is_grey(hex_colour: str) -> bool:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return max(r, g, b) - min(r, g, b) <= 4


async def test_no_color_is_monochrome_and_states_are_words(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = fixed_app()
    assert app.no_color
    async with app.run_test(size=(120, 40)) as pilot:
        while not app.polls:
            await pilot.pause(0.01)
        await pilot.pause()
        svg = app.export_screenshot()
    colours = set(re.findall(r"#[0-9a-fA-F]{6}", svg)) - WINDOW_CHROME
    assert colours and all(is_grey(c) for c in colours), sorted(c for c in colours if not is_grey(c))
    text = svg.replace("&#160;", " ")
    for words in (
        "●&#160;healthy",
        "◐&#160;degraded",
        "✖&#160;failed",
        "○&#160;disabled",
        "OPEN",
        "‼&#160;critical",
        "▲&#160;warning",
        "firing&#160;escalated",
        "acked",
        "silenced&#160;30m",
        "▲&#160;at&#160;risk",
    ):
        assert words in svg or words.replace("&#160;", " ") in text, words
