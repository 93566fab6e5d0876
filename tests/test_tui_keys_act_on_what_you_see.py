"""Issue 13 §2: keys act on what you see — a/s/r/u only on a selected alert, the cursor stays on the
alert after an ack, `e` asks first, ctrl+c quits, j/k scroll the help, `t` shows its range."""

from __future__ import annotations

from llmpulse.tui.screens.confirm import ConfirmScreen
from llmpulse.tui.screens.help import HelpScreen
from tests.snapshot_apps.fixed import FixedBackend, fixed_app
from tests.tui_helpers import settle, wait_for


def toasts(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_alert_keys_outside_the_alerts_panel_only_say_what_to_do():
    backend = FixedBackend()
    app = fixed_app(backend=backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        for panel in ("1", "2", "4"):  # Providers, Costs, Migration focused: nothing may change
            await pilot.press(panel, "a", "r", "u")
        await pilot.press("2", "s")
        await pilot.pause(0.05)
        assert backend.calls == []
        assert not isinstance(app.screen, ConfirmScreen)
        assert toasts(app).count("select an alert first (3)") == 10
        await pilot.press("3", "a")  # now the critical alert under the cursor
        assert await wait_for(pilot, lambda: backend.calls == [("ack", 1, "ops")])


async def test_after_an_ack_the_cursor_stays_on_that_alert():
    backend = FixedBackend()
    app = fixed_app(backend=backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        table = app.dashboard.panels[3].table
        await pilot.press("3")
        assert app.dashboard.alerts_panel.selected == "1"
        await pilot.press("a")
        assert await wait_for(pilot, lambda: table.get_cell("1", "state").plain.startswith("acked"))
        # Alert 1 is handled now and sorts after the firing one, and the cursor went with it.
        order = [r.key.value for r in table.ordered_rows]
        assert order.index("1") > order.index("3")
        assert app.dashboard.alerts_panel.selected == "1"
        await pilot.press("r")
        assert await wait_for(pilot, lambda: ("resolve", 1, "ops") in backend.calls)


async def test_u_ends_a_silence():
    backend = FixedBackend()
    app = fixed_app(backend=backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        table = app.dashboard.panels[3].table
        await pilot.press("3")
        table.move_cursor(row=table.get_row_index("4"))  # the silenced info alert
        assert table.get_cell("4", "state").plain.startswith("silenced")
        await pilot.press("u")
        assert await wait_for(pilot, lambda: ("unsilence", 4, "ops") in backend.calls)
        assert await wait_for(pilot, lambda: table.get_cell("4", "state").plain == "firing")


async def test_disabling_from_the_dashboard_asks_first():
    backend = FixedBackend()
    app = fixed_app(backend=backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("3", "e")  # not in the Providers panel: says so
        assert await wait_for(pilot, lambda: "select a provider first (1)" in toasts(app)), toasts(app)
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("1", "e")  # DeepSeek, the first row
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen)), app.screen
        await pilot.press("escape")
        await pilot.pause(0.05)
        assert backend.calls == []
        await pilot.press("e", "y")
        assert await wait_for(pilot, lambda: backend.calls == [("set_enabled", "deepseek", False)])


async def test_ctrl_c_quits():
    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("ctrl+c")
        await pilot.pause(0.05)
        assert app.return_value == 0 and app._exit


async def test_j_and_k_scroll_the_help():
    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        assert await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen)), app.screen
        box = app.screen.query_one("#help")
        assert box.max_scroll_y > 0 and box.scroll_y == 0
        await pilot.press("j", "j", "j")
        await pilot.pause(0.05)
        assert box.scroll_y == 3
        await pilot.press("k")
        await pilot.pause(0.05)
        assert box.scroll_y == 2
        await pilot.press("G")
        await pilot.pause(0.05)
        assert box.scroll_y == box.max_scroll_y


async def test_t_changes_the_range_shown_on_the_main_screen():
    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        header = app.dashboard.header_line
        assert "range 24h" in str(header.render())
        await pilot.press("t")
        await pilot.pause(0.05)
        assert "range 7d" in str(header.render()) and "range 24h" not in str(header.render())
        assert any(t.startswith("Time range 7d") for t in toasts(app))
