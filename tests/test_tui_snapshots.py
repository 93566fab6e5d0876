"""Screenshots of the dashboard on fixed data and a fixed clock (tests/snapshot_apps/fixed.py).

Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update` and look at
the SVGs under tests/__snapshots__/ before committing them.
"""

from tests.snapshot_apps.fixed import fixed_app


async def wait_for_data(pilot):
    app = pilot.app
    for _ in range(300):
        if app.polls:
            break
        await pilot.pause(0.01)
    await pilot.pause()


def test_dashboard_80x24(snap_compare):
    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=wait_for_data)


def test_dashboard_120x40(snap_compare):
    assert snap_compare(fixed_app(), terminal_size=(120, 40), run_before=wait_for_data)


def test_dashboard_200x60(snap_compare):
    assert snap_compare(fixed_app(), terminal_size=(200, 60), run_before=wait_for_data)


def test_paused_and_filtered_120x40(snap_compare):
    async def run_before(pilot):
        await wait_for_data(pilot)
        await pilot.press("slash", *"an", "enter", "space")

    assert snap_compare(fixed_app(), terminal_size=(120, 40), run_before=run_before)


def test_silence_question_80x24(snap_compare):
    async def run_before(pilot):
        await wait_for_data(pilot)
        await pilot.press("3", "s")

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


def test_provider_detail_120x40(snap_compare):
    async def run_before(pilot):
        await wait_for_data(pilot)
        await pilot.press("1", "j", "j", "enter")  # the third row: Anthropic, degraded
        for _ in range(300):  # its probes load in a worker
            if getattr(pilot.app.screen, "probes", None) is not None and pilot.app.screen.probes.row_count == 5:
                break
            await pilot.pause(0.01)
        await pilot.pause()

    assert snap_compare(fixed_app(), terminal_size=(120, 40), run_before=run_before)


def test_help_120x40(snap_compare):
    async def run_before(pilot):
        await wait_for_data(pilot)
        await pilot.press("question_mark")

    assert snap_compare(fixed_app(), terminal_size=(120, 40), run_before=run_before)


def test_dashboard_no_color_80x24(snap_compare, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=wait_for_data)


def test_dashboard_16_colours_120x40(snap_compare, monkeypatch):
    monkeypatch.setenv("TERM", "linux")
    monkeypatch.delenv("COLORTERM", raising=False)
    assert snap_compare(fixed_app(), terminal_size=(120, 40), run_before=wait_for_data)
