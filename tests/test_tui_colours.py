"""Issue 13 §3: readable in every terminal. Under NO_COLOR the most important words are bold or reverse
video (never dim) and stand out from the background as much as ordinary text does; in 16 colours
(TERM=linux) critical is red, warning yellow, healthy green, in the terminal's own palette."""

from __future__ import annotations

from rich.segment import Segment

from tests.snapshot_apps.fixed import fixed_app
from tests.tui_helpers import settle

ANSI_RED, ANSI_GREEN, ANSI_YELLOW = 1, 2, 3


def segments_of(widget, word: str) -> list[Segment]:
    """The drawn segments (with their styles) whose text contains `word`, over the widget's lines."""
    found = []
    for y in range(widget.size.height):
        found += [seg for seg in widget.render_line(y) if word in seg.text]
    return found


# -- contrast, of the colours the terminal receives ---------------------------------------------------
def luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def drawn(app, widget, word: str) -> Segment:
    """The segment drawing `word` after the app's line filters (Monochrome under NO_COLOR), which the
    compositor applies to every line before it reaches the terminal."""
    for y in range(widget.size.height):
        segments = list(widget.render_line(y))
        for line_filter in app._filters:
            segments = line_filter.apply(segments, app.screen.styles.background)
        for seg in segments:
            if word in seg.text:
                return seg
    raise AssertionError(f"{word!r} is not drawn")


def seg_contrast(seg: Segment) -> float:
    return contrast(seg.style.color.triplet.hex, seg.style.bgcolor.triplet.hex)


async def test_no_color_draws_importance_bold_or_reverse_never_dim(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("4")  # focus on Migration: no cursor row drawn over the words checked
        alerts, providers = app.dashboard.panels[3].table, app.dashboard.panels[1].table
        checks = [
            (providers, "✖ failed for 12m", "reverse"),
            (providers, "OPEN", "reverse"),
            (providers, "100% critical", "reverse"),  # DeepSeek's critical error rate, band and word
            (providers, "◐ degraded", "bold"),
            (alerts, "‼ critical", "reverse"),
            (alerts, "firing", "bold"),
        ]
        for table, word, emphasis in checks:
            [seg, *_] = segments_of(table, word)
            assert seg.style.bold and not seg.style.dim, word
            if emphasis == "reverse":
                assert seg.style.reverse, word
        ordinary = seg_contrast(drawn(app, providers, "Anthropic"))
        assert ordinary > 7
        for table, word in (
            (providers, "✖ failed for 12m"),
            (providers, "OPEN"),
            (alerts, "‼ critical"),
            (alerts, "firing"),
        ):
            # was 1.4:1, dark grey on near-black; reverse video swaps the two, so the ratio is the same
            assert seg_contrast(drawn(app, table, word)) >= 7, word  # AAA contrast


async def test_sixteen_colours_map_critical_red_warning_yellow_healthy_green(monkeypatch):
    monkeypatch.setenv("TERM", "linux")
    monkeypatch.delenv("COLORTERM", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    app = fixed_app()
    assert app.console.color_system == "standard"
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("3")
        assert app.current_theme.ansi
        alerts, providers = app.dashboard.panels[3].table, app.dashboard.panels[1].table
        for table, word, colour in (
            (providers, "✖ failed", ANSI_RED),
            (providers, "OPEN", ANSI_RED),
            (providers, "◐ degraded", ANSI_YELLOW),
            (providers, "● healthy", ANSI_GREEN),
            (alerts, "‼ critical", ANSI_RED),
            (alerts, "▲ warning", ANSI_YELLOW),
        ):
            [seg, *_] = segments_of(table, word)
            assert seg.style.color is not None and seg.style.color.number == colour, (word, seg.style)
        # The focused panel's border is the theme's accent, ANSI green — not red, which means trouble.
        border_colour = app.dashboard.panels[3].styles.border_top[1]
        assert border_colour.ansi == ANSI_GREEN, border_colour


async def test_no_color_on_a_sixteen_colour_terminal_is_not_black_on_black(monkeypatch):
    """NO_COLOR over SSH on a console (TERM=linux): the monochrome filter cannot tell how light an ANSI
    palette colour is, so the 16-colour theme came out black on black. Text must still stand out."""
    monkeypatch.setenv("TERM", "linux")
    monkeypatch.delenv("COLORTERM", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("4")
        assert not app.current_theme.ansi
        alerts, providers = app.dashboard.panels[3].table, app.dashboard.panels[1].table
        assert seg_contrast(drawn(app, providers, "Anthropic")) > 7
        for table, word in ((providers, "OPEN"), (alerts, "‼ critical"), (alerts, "firing")):
            assert seg_contrast(drawn(app, table, word)) >= 7, word
