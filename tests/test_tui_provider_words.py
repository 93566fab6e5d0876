"""The Providers panel tells the same truth as the detail screen, JSON and `llmpulse status` (issue 18
§2, issue 13 §3/§6): the health bands are words, not only colours; an error rate over too few calls
says so instead of standing beside "● healthy" as if judged; the p95 says whose calls it is over; an
unconfigured provider says what it lacks. All of it fits at 80 columns without pushing Circuit off."""

from __future__ import annotations

import dataclasses

import pytest
from rich.segment import Segment

from llmpulse.tui.screens.help import help_plain
from llmpulse.tui.screens.provider import ProviderScreen
from tests.snapshot_apps.fixed import FixedBackend, fixed_app, fixed_snapshot
from tests.tui_helpers import settle, shown, wait_for

ANSI_RED = 1


def snapshot_with_words():
    """The fixed fleet, with OpenAI's rate over 3 probes (1 failed: unjudged), Anthropic's p95 from
    traffic and a half-open circuit (the widest circuit word), and Mistral an unconfigured local one."""
    snap = fixed_snapshot()
    by_id = {h.provider_id: h for h in snap.providers}
    by_id["openai"] = dataclasses.replace(
        by_id["openai"],
        samples=3,
        errors=1,
        error_rate=1 / 3,
        success_rate=2 / 3,
        error_band=None,
        error_rate_judged=False,
        samples_needed=5,
    )
    by_id["anthropic"] = dataclasses.replace(by_id["anthropic"], latency_source="traffic", circuit="half_open")
    return dataclasses.replace(snap, providers=[by_id[h.provider_id] for h in snap.providers])


def cell(app, pid: str, column: str) -> str:
    return app.dashboard.panels[1].table.get_cell(pid, column).plain


def lines(widget) -> list[str]:
    return [widget.render_line(y).text for y in range(widget.size.height)]


def segments_of(widget, word: str) -> list[Segment]:
    found = []
    for y in range(widget.size.height):
        found += [seg for seg in widget.render_line(y) if word in seg.text]
    return found


# What each row must say, narrow (80 columns) and wide (120): error rate with its band, p95 with its band
# and its source. The expected words come from the fixture's figures and bands, written out by hand.
NARROW = {
    "openai": ("1/3 n<5", "420ms good p"),
    "anthropic": ("3.0% good", " 2.9s good t"),
    "groq": ("40% crit", "—"),
    "deepseek": ("100% crit", "—"),
    "ollama": ("0.0% exc", " 35ms good p"),
}
WIDE = {
    "openai": ("33% (1/3) too few", "420ms good probes"),
    "anthropic": ("3.0% good", " 2.9s good traffic"),
    "groq": ("40% critical", "—"),
    "deepseek": ("100% critical", "—"),
    "ollama": ("0.0% excellent", " 35ms good probes"),
}


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
async def test_bands_counts_and_sources_are_words_and_circuit_stays_on_80_columns(monkeypatch, no_color):
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    app = fixed_app(backend=FixedBackend(snapshot_with_words()))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        panel = app.dashboard.panels[1]
        assert panel.narrow and "trend" not in panel.shown_columns  # the sparkline dropped first
        for pid, (errors, p95) in NARROW.items():
            assert (cell(app, pid, "errors"), cell(app, pid, "p95")) == (errors, p95), pid
        assert "%" not in cell(app, "openai", "errors")  # no bare rate beside "● healthy"
        # Every column, Circuit and the ones after it, is on screen whole, on every row.
        drawn = lines(panel.table)
        header = drawn[0]
        assert all(word in header for word in ("Provider", "Status", "p95", "Errors", "Circuit", "Room", "Last"))
        assert panel.region.right <= 80
        rows = {row.key.value: i + 1 for i, row in enumerate(panel.table.ordered_rows)}
        for pid, circuit in (("anthropic", "half-open"), ("deepseek", "OPEN"), ("groq", "OPEN"), ("openai", "closed")):
            assert circuit in drawn[rows[pid]], (pid, drawn[rows[pid]])
            assert cell(app, pid, "errors") in drawn[rows[pid]]
        # The legend for the short words is on the help screen.
        await pilot.press("question_mark")
        await pilot.pause()
        legend = " ".join(help_plain(app, 80).split())
        for words in (
            "conc concerning",
            "crit critical",
            "acc acceptable",
            "p probes",
            "t real traffic",
            "1/3 n<5: 1 of 3 calls failed, too few",
        ):
            assert words in legend, words
        if no_color:
            await pilot.press("escape", "4")
            await pilot.pause()
            # Importance without colour: a critical rate is bold reverse, an unjudged one never is.
            [seg, *_] = segments_of(panel.table, "100% crit")
            assert seg.style.bold and seg.style.reverse and not seg.style.dim
            [seg, *_] = segments_of(panel.table, "1/3 n<5")
            assert not seg.style.reverse and not seg.style.bold


async def test_wide_screens_spell_the_words_out_and_keep_the_trend():
    app = fixed_app(backend=FixedBackend(snapshot_with_words()))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        panel = app.dashboard.panels[1]
        assert not panel.narrow and "trend" in panel.shown_columns
        for pid, (errors, p95) in WIDE.items():
            assert (cell(app, pid, "errors"), cell(app, pid, "p95")) == (errors, p95), pid
        drawn = "\n".join(lines(panel.table))
        assert "33% (1/3) too few" in drawn and "half-open" in drawn and "Last" in drawn


async def test_the_form_follows_the_terminal_width_and_the_cursor_stays():
    app = fixed_app(backend=FixedBackend(snapshot_with_words()))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("1", "j", "j")
        selected = app.dashboard.panels[1].selected
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.pause()
        assert app.dashboard.panels[1].narrow and cell(app, "groq", "errors") == "40% crit"
        assert app.dashboard.panels[1].selected == selected
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        await pilot.pause()
        assert not app.dashboard.panels[1].narrow and cell(app, "groq", "errors") == "40% critical"


async def test_sixteen_colours_keep_the_band_colours(monkeypatch):
    monkeypatch.setenv("TERM", "linux")
    monkeypatch.delenv("COLORTERM", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    app = fixed_app(backend=FixedBackend(snapshot_with_words()))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("4")
        [seg, *_] = segments_of(app.dashboard.panels[1].table, "100% crit")
        assert seg.style.color is not None and seg.style.color.number == ANSI_RED, seg.style


async def test_an_unconfigured_local_provider_says_not_set_up_never_no_key():
    snap = fixed_snapshot()
    local = dataclasses.replace(
        snap.providers[-1],
        provider_id="localai",
        name="LocalAI",
        local=True,
        setup_gap="not set up",
        reason="not judged here: not set up (a local provider that needs no key, probed only when asked for: "
        "set LOCALAI_BASE_URL or add [providers.localai]; default http://127.0.0.1:8080)",
    )
    app = fixed_app(backend=FixedBackend(dataclasses.replace(snap, providers=[*snap.providers, local])))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        app.push_screen(ProviderScreen("localai"))
        # the screen is filled at the next poll
        assert await wait_for(pilot, lambda: "LocalAI" in shown(app, "#provider-summary"))
        text = shown(app, "#provider-summary")
        assert "· not set up" in text and "no key" not in text.replace("needs no key", "")
        assert "LOCALAI_BASE_URL" in text


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_a_stale_verdict_says_so_on_screen_at_any_width(size):
    snap = snapshot_with_words()
    providers = [dataclasses.replace(h, stale=True) if h.provider_id == "anthropic" else h for h in snap.providers]
    app = fixed_app(backend=FixedBackend(dataclasses.replace(snap, providers=providers)))
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        panel = app.dashboard.panels[1]
        rows = {row.key.value: i + 1 for i, row in enumerate(panel.table.ordered_rows)}
        drawn = lines(panel.table)[rows["anthropic"]]
        # Narrow, the name column would cut "(stale)" off: the status says it instead, whole.
        assert ("◐ degraded stale" if panel.narrow else "Anthropic (stale)") in drawn, drawn
        assert "stale" not in lines(panel.table)[rows["openai"]]
