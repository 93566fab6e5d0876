"""Detail screens on fixed data: provider (enable/disable, probe now), costs (group by, range), an alert
(acting on it from its own screen), migration, and the command palette's commands."""

from llmpulse.tui.screens.alert import AlertScreen
from llmpulse.tui.screens.confirm import ConfirmScreen
from llmpulse.tui.screens.costs import CostsScreen
from llmpulse.tui.screens.dashboard import DashboardScreen
from llmpulse.tui.screens.migration import MigrationScreen
from llmpulse.tui.screens.provider import ProviderScreen
from tests.snapshot_apps.fixed import FixedBackend, fixed_app
from tests.tui_helpers import ready, wait_for


async def test_provider_screen_toggles_enabled_and_probes_that_provider():
    backend = FixedBackend()
    app = fixed_app(backend=backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("1", "j", "j", "enter")  # deepseek, groq, then anthropic
        assert await wait_for(pilot, lambda: isinstance(app.screen, ProviderScreen)), app.screen
        assert app.screen.provider_id == "anthropic"
        assert await wait_for(pilot, lambda: app.screen.probes.row_count == 5)
        summary = str(app.screen.query_one("#provider-summary").render())
        assert "Anthropic" in summary and "degraded" in summary
        await pilot.press("e")  # asks first; n leaves it, y does it
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen)), app.screen
        assert "Disable Anthropic?" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("n")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ProviderScreen)), app.screen
        assert not backend.calls
        await pilot.press("e", "y")
        assert await wait_for(pilot, lambda: ("set_enabled", "anthropic", False) in backend.calls)
        await pilot.press("p")
        assert await wait_for(pilot, lambda: ("probe_now", ["anthropic"]) in backend.calls)
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen)), app.screen


async def test_costs_screen_groups_and_ranges():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("2", "enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, CostsScreen)), app.screen
        screen = app.screen
        assert await wait_for(pilot, lambda: screen.table.row_count == 3)
        assert [r.key.value for r in screen.table.ordered_rows] == ["c", "b", "a"]  # most expensive first

        def title():
            return str(screen.query_one("#costs-title").render())

        assert "by provider, last 24h" in title()
        await pilot.press("b")
        assert await wait_for(pilot, lambda: "by model" in title())
        await pilot.press("t")
        assert await wait_for(pilot, lambda: "last 7d" in title())


async def test_alert_screen_acts_on_its_alert():
    backend = FixedBackend()
    app = fixed_app(backend=backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("3", "j", "enter")  # the second row: alert 3
        assert await wait_for(pilot, lambda: isinstance(app.screen, AlertScreen)), app.screen
        assert app.screen.alert_id == 3
        await pilot.press("a")
        assert await wait_for(pilot, lambda: ("ack", 3, "ops") in backend.calls)
        assert await wait_for(pilot, lambda: "acked" in str(app.screen.query_one("#alert-summary").render()))


async def test_migration_screen():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("4", "enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, MigrationScreen)), app.screen
        await pilot.pause()  # composed and filled before it is read
        text = str(app.screen.query_one("#migration-text").render())
        assert "gpt-4 → gpt-4.1" in text and "at risk" in text and "37%" in text


async def test_alert_keys_do_nothing_where_there_is_no_alert():
    backend = FixedBackend()
    app = fixed_app(backend=backend)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        await pilot.press("2", "enter", "a", "r")
        await pilot.pause(0.05)
        assert backend.calls == []


async def test_command_palette_offers_what_has_no_key():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in (
            "Costs by group",
            "Probe all providers now",
            "Provider: Anthropic",
            "Disable OpenAI",
            "Enable xAI",
            "Help",
        ):
            assert wanted in titles, wanted
