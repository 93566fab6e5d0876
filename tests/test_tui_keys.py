"""The dashboard's keys on fixed data: pause, help, filter, panel focus, refresh, range, quit."""

import asyncio

from textual.widgets import DataTable

from llmpulse.tui.screens.dashboard import DashboardScreen
from llmpulse.tui.screens.help import HelpScreen, help_plain
from llmpulse.tui.screens.silence import SilenceScreen
from tests.snapshot_apps.fixed import FixedBackend, fixed_app, fixed_snapshot
from tests.tui_helpers import settle, wait_for


def rows(app, number):
    table = app.dashboard.panels[number].table
    return [row.key.value for row in table.ordered_rows]


def header(app) -> str:
    return str(app.dashboard.header_line.render())


async def test_first_snapshot_fills_every_panel():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        # Trouble first: failed, degraded, then healthy by priority; disabled and keyless last.
        # Mistral has no key: not listed while others are configured.
        assert rows(app, 1) == ["deepseek", "groq", "anthropic", "ollama", "openai", "xai"]
        assert rows(app, 2) == ["total/month", "engineering/day"]
        assert rows(app, 3) == ["1", "3", "2", "4"]  # firing worst-first, then handled (acked, silenced)
        assert rows(app, 4) == ["gpt4-to-41"]
        text = header(app)
        assert "123.5k req" in text and "2/5 healthy" in text and "range 24h" in text
        assert "fallbacks" not in text  # the least important segment left out at 120 columns


async def test_pause_freezes_the_display_and_shows_a_marker():
    backend = FixedBackend()
    app = fixed_app(backend=backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("space")
        assert app.paused and "PAUSED" in header(app)
        # New data arrives: the screen must not change while paused.
        snap = fixed_snapshot()
        snap.providers = [p for p in snap.providers if p.provider_id != "groq"]
        backend.snap = snap
        app.refresh_now()
        await pilot.pause(0.1)
        assert "groq" in rows(app, 1)
        await pilot.press("space")
        assert await wait_for(pilot, lambda: "groq" not in rows(app, 1))
        assert not app.paused and "PAUSED" not in header(app)
        assert "groq" not in rows(app, 1)


async def test_polls_do_not_run_while_paused():
    backend = FixedBackend()
    app = fixed_app(backend=backend, refresh=0.5)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("space")
        built = backend.snapshots_built
        app.refresh_now()
        await pilot.pause(0.2)
        assert backend.snapshots_built == built


async def test_filter_keeps_matching_rows_in_every_panel_and_esc_clears():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("slash")
        assert app.dashboard.filter_input.has_focus
        await pilot.press(*"deep")
        assert rows(app, 1) == ["deepseek"]
        assert rows(app, 3) == ["1"]
        assert rows(app, 2) == [] and rows(app, 4) == []
        assert "filter: deep" in header(app)
        # the Alerts box says the rows are the filter's, not every open alert (4 in this snapshot)
        await pilot.pause()
        assert app.dashboard.panels[3].border_subtitle.startswith("1 match · "), app.dashboard.panels[3].border_subtitle
        assert "/ 4 open" in app.dashboard.panels[3].border_subtitle
        await pilot.press("enter")  # keep it, back to the rows
        assert isinstance(app.focused, DataTable)
        assert rows(app, 1) == ["deepseek"]
        await pilot.press("escape")
        assert len(rows(app, 1)) == 6 and len(rows(app, 3)) == 4  # six with a key


async def test_help_lists_every_key_with_its_description():
    app = fixed_app()
    async with app.run_test(size=(100, 60)) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen)), app.screen
        text = help_plain(app)
        for binding in app.BINDINGS + DashboardScreen.BINDINGS:
            assert binding.id, f"binding {binding.key} has no id"
            assert binding.description, f"binding {binding.key} has no description"
            assert binding.description in text
        for word in ("Ack", "Silence", "Resolve", "Filter", "Pause", "Quit", "Probe", "Range"):
            assert word in text
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen)), app.screen


async def test_number_keys_focus_panels_and_vi_keys_move():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("3")
        table = app.dashboard.panels[3].table
        assert app.focused is table
        await pilot.press("G")
        assert table.cursor_row == table.row_count - 1
        await pilot.press("g")
        assert table.cursor_row == 0
        await pilot.press("j")
        assert table.cursor_row == 1
        await pilot.press("k")
        assert table.cursor_row == 0
        await pilot.press("1")
        assert app.focused is app.dashboard.panels[1].table


async def test_refresh_interval_and_time_range_keys():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert app.refresh_interval == 1.0
        await pilot.press("plus")
        assert app.refresh_interval == 0.5
        await pilot.press("minus", "minus")
        assert app.refresh_interval == 2.0
        assert "⟳2s" in header(app)
        assert app.time_range[0] == "24h"
        await pilot.press("t")
        assert app.time_range[0] == "7d" and "7d" in header(app)


async def test_a_acts_on_the_selected_alert_and_the_row_says_acked():
    backend = FixedBackend()
    app = fixed_app(backend=backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("3", "a")
        assert await wait_for(pilot, lambda: backend.calls == [("ack", 1, "ops")]), backend.calls
        table = app.dashboard.panels[3].table
        assert table.get_cell("1", "state").plain.startswith("acked")


async def test_silence_asks_how_long():
    backend = FixedBackend()
    app = fixed_app(backend=backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("3", "j", "s")
        assert await wait_for(pilot, lambda: isinstance(app.screen, SilenceScreen)), app.screen
        await pilot.press(*"soon", "enter")
        assert isinstance(app.screen, SilenceScreen), "a bad duration must not close the question"
        assert "not a duration" in str(app.screen.query_one("#silence-error").render())
        for _ in range(4):
            await pilot.press("backspace")
        await pilot.press(*"2h", "enter")
        assert await wait_for(pilot, lambda: backend.calls == [("silence", 3, 7200.0, "ops")]), backend.calls
        assert app.dashboard.panels[3].table.get_cell("3", "state").plain == "silenced 2h"


async def test_silence_can_be_cancelled():
    backend = FixedBackend()
    app = fixed_app(backend=backend)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("3", "s", "escape")
        assert await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen)), app.screen
        assert backend.calls == []


async def test_nothing_is_redrawn_while_a_modal_is_open():
    backend = FixedBackend()
    app = fixed_app(backend=backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("3", "s")
        snap = fixed_snapshot()
        snap.providers = snap.providers[:1]
        backend.snap = snap
        polls = app.polls
        app.refresh_now()
        assert await wait_for(pilot, lambda: app.polls > polls)
        assert app.pending_draw and len(rows(app, 1)) == 6
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: rows(app, 1) == ["openai"]), rows(app, 1)


async def test_resolve_removes_the_row():
    backend = FixedBackend()
    app = fixed_app(backend=backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("3", "r")
        assert await wait_for(pilot, lambda: backend.calls == [("resolve", 1, "ops")]), backend.calls
        assert "1" not in rows(app, 3)


async def test_quit_is_quick_while_the_collector_hangs():
    backend = FixedBackend(collector_hangs=True)
    app = fixed_app(backend=backend)
    app.collect = True
    async with app.run_test() as pilot:
        await settle(pilot, app)
        # The collector never returns: quitting finishes only because it does not wait for it. The 30 s
        # guard only stops a regression from hanging the suite.
        await asyncio.wait_for(pilot.press("q"), 30)
    assert backend.closed
