"""Issue 13 §1: what matters first is on the first screen — alerts on top at 80×24, most urgent first,
"+N more" when they do not fit, trouble first in Providers, a sort that survives refreshes, how long a
state has lasted, "…" on cut text, and a one-line header that drops its least important parts first."""

from __future__ import annotations

import dataclasses

from tests.snapshot_apps.fixed import NOW, FixedBackend, _alert, first_run_snapshot, fixed_app, fixed_snapshot
from tests.tui_helpers import settle, shown, wait_for


def keys(app, number):
    return [row.key.value for row in app.dashboard.panels[number].table.ordered_rows]


def line(widget, y: int) -> str:
    return widget.render_line(y).text


def many_alerts(n: int):
    """n alerts: the newest is a critical firing one, buried among older warnings and handled ones."""
    alerts = []
    for i in range(1, n + 1):
        if i == 7:
            alerts.append(_alert(i, "critical", "firing", "provider_down", "groq", "Groq down", 60))
        elif i % 3 == 0:
            alerts.append(_alert(i, "warning", "acknowledged", "latency", f"p{i}", "slow", 600 + i))
        else:
            alerts.append(_alert(i, "warning", "firing", "latency", f"p{i}", "slow", 600 + i))
    return alerts


async def test_alerts_come_first_at_80x24_most_urgent_first_with_a_count_of_the_rest():
    snap = dataclasses.replace(fixed_snapshot(), alerts=many_alerts(12))
    app = fixed_app(backend=FixedBackend(snap))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        panel = app.dashboard.panels[3]
        # The Alerts box is the first thing under the header, on the first screen.
        assert panel.region.y == 1 and panel.region.bottom <= 23
        order = keys(app, 3)
        assert order[0] == "7"  # the critical firing alert, although it is not the first by id
        firing_warnings = [str(i) for i in range(1, 13) if i != 7 and i % 3]
        acked = [str(i) for i in range(1, 13) if i % 3 == 0]
        # then firing warnings, newest first, then the acknowledged ones
        assert order[1 : 1 + len(firing_warnings)] == sorted(firing_warnings, key=int)
        assert set(order[-len(acked) :]) == set(acked)
        # A 9-line box: two border lines and the column header leave 6 rows; 12 - 6 are below it.
        assert panel.border_subtitle.endswith("+6 more"), panel.border_subtitle
        # The first row shown carries the alert's number and its age.
        first = line(panel.table, 1)
        assert first.split()[:3] == ["7", "‼", "critical"] and "1m" in first


async def test_no_more_note_when_every_alert_fits():
    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        assert "more" not in app.dashboard.panels[3].border_subtitle


async def test_cut_text_ends_with_an_ellipsis_and_the_detail_screen_has_all_of_it():
    app = fixed_app()
    message = "DeepSeek failing: 5 of 5 probes failed (auth)"
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        row = line(app.dashboard.panels[3].table, 1).rstrip()
        assert row.endswith("…") and message not in row, row
        assert message[:15] in row
        await pilot.press("3", "enter")
        assert await wait_for(pilot, lambda: message in shown(app, "#alert-summary"))


async def test_a_long_subject_is_cut_so_the_message_keeps_its_room():
    """One budget alert's subject ('department:Engineering/month') must not widen the Subject column
    for every row and leave the messages a dozen characters at 80 columns; at 120 it has more room."""
    long_subject = "department:Engineering/month"
    alerts = [
        _alert(1, "critical", "firing", "provider_down", "groq", "Groq down: 5 of 5 probes failed (timeout)", 60),
        _alert(2, "warning", "firing", "budget", long_subject, f"budget {long_subject} at 85% of $790", 120),
        # "acked silenced 1h59m escalated": the longest state words, capped like the subject
        _alert(
            3,
            "critical",
            "acknowledged",
            "provider_down",
            "xai",
            "xAI down",
            300,
            escalated=True,
            silenced_until=NOW + 7140,
        ),
    ]
    snap = dataclasses.replace(fixed_snapshot(), alerts=alerts)
    for width, subject_cap in ((80, 14), (120, 28)):
        app = fixed_app(backend=FixedBackend(snap))
        async with app.run_test(size=(width, 30)) as pilot:
            await settle(pilot, app)
            await pilot.pause(0.05)
            table = app.dashboard.panels[3].table
            rows = {line(table, y).split()[0]: line(table, y) for y in (1, 2, 3)}
            subject_col = table.columns[next(k for k in table.columns if k.value == "subject")]
            message_col = table.columns[next(k for k in table.columns if k.value == "message")]
            state_col = table.columns[next(k for k in table.columns if k.value == "state")]
            assert subject_col.width <= subject_cap, (width, subject_col.width)
            assert state_col.width <= (16 if width == 80 else 32), (width, state_col.width)
            assert table.virtual_size.width <= table.size.width, "no horizontal scrolling"
            # What is left after the capped subject goes to the message: more than the subject gets.
            assert message_col.width > subject_col.width, (width, message_col.width)
            if width == 80:
                assert long_subject[:10] in rows["2"] and long_subject not in rows["2"] and "…" in rows["2"]
            else:
                assert long_subject in rows["2"], rows["2"]


async def test_trouble_first_and_a_chosen_sort_survives_refreshes():
    backend = FixedBackend()
    app = fixed_app(backend=backend, refresh=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert keys(app, 1)[:3] == ["deepseek", "groq", "anthropic"]
        await pilot.press("1", "o")  # by Provider name
        by_name = sorted((h.name.lower(), h.provider_id) for h in backend.snap.providers if h.configured)
        assert keys(app, 1) == [pid for _, pid in by_name]
        assert "by Provider ↑" in app.dashboard.panels[1].border_subtitle
        await pilot.press("O")
        assert keys(app, 1) == [pid for _, pid in reversed(by_name)]
        polls = app.polls
        app.refresh_now()
        await settle(pilot, app, polls + 2)
        assert keys(app, 1) == [pid for _, pid in reversed(by_name)]
        # p95 next: the fastest first, providers without a p95 last.
        await pilot.press("o", "o")
        p95 = sorted((h.p95_ms, h.provider_id) for h in backend.snap.providers if h.p95_ms is not None and h.configured)
        assert keys(app, 1)[: len(p95)] == [pid for _, pid in p95]


async def test_how_long_a_state_has_lasted():
    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        table = app.dashboard.panels[1].table
        snap = app.backend.snap
        for pid in ("deepseek", "anthropic"):
            h = next(h for h in snap.providers if h.provider_id == pid)
            minutes = int((NOW - h.status_since) // 60)
            assert table.get_cell(pid, "status").plain.endswith(f"for {minutes}m")


async def test_header_is_one_line_and_drops_the_least_important_first():
    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        header = app.dashboard.header_line
        text = str(header.render())
        assert header.size.height == 1 and len(text) <= 78
        # kept: alerts, health, budget and the range; left out: the name, the spend, fallbacks
        for kept in ("alerts ‼1", "2/5 healthy", "budget  81%", "range 24h"):
            assert kept in text, (kept, text)
        for dropped in ("llmpulse", "req", "fallbacks"):
            assert dropped not in text
        await pilot.resize_terminal(200, 50)
        assert await wait_for(pilot, lambda: "llmpulse" in str(header.render()))
        wide = str(header.render())
        assert "llmpulse" in wide and "fallbacks   17/24h" in wide
        # The alerts segment keeps its width when a count grows past 9: the rest does not move.
        start = wide.index("2/5 healthy")
        snap = app.backend.snap
        more = dict(snap.header.alerts_by_severity, warning=12)
        app.backend.snap = dataclasses.replace(snap, header=dataclasses.replace(snap.header, alerts_by_severity=more))
        polls = app.polls
        app.refresh_now()
        await settle(pilot, app, polls + 1)
        assert str(header.render()).index("2/5 healthy") == start


async def test_first_run_without_keys_welcomes_instead_of_rows_of_no_key():
    snap = first_run_snapshot()
    app = fixed_app(backend=FixedBackend(snap))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        welcome = app.dashboard.welcome
        assert welcome.display and not app.dashboard.query_one("#panels").display
        text = " ".join(welcome.render_line(y).text.strip() for y in range(welcome.size.height))
        for h in snap.providers:  # every variable to set, by its provider's name
            assert f"{h.provider_id.upper()}_API_KEY" in text and h.name in text
        assert ".env" in text and "llmpulse demo" in text and "README.md" in text and "Providers and probes" in text
        # Once a provider has a key, the panels come back with only the configured ones.
        one_key = [dataclasses.replace(snap.providers[0], configured=True), *snap.providers[1:]]
        app.backend.snap = dataclasses.replace(snap, providers=one_key)
        polls = app.polls
        app.refresh_now()
        await settle(pilot, app, polls + 1)
        assert not welcome.display and keys(app, 1) == [snap.providers[0].provider_id]
        assert "6 not configured, not shown" in app.dashboard.panels[1].border_subtitle


async def test_a_refresh_with_nothing_new_touches_no_cell():
    """Issue 14: the dashboard side of idle CPU — an unchanged row keeps its cell objects, so the table
    measures and repaints nothing for it (the 'checked 3s ago' cells used to change every second)."""
    app = fixed_app(refresh=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)

        def cells():
            return {
                (n, row.key.value, col.key.value): id(app.dashboard.panels[n].table.get_cell(row.key, col.key))
                for n in (1, 3)
                for row in app.dashboard.panels[n].table.ordered_rows
                for col in app.dashboard.panels[n].table.ordered_columns
            }

        before = cells()
        polls = app.polls
        app.clock.advance(5)  # time passes; nothing shown to the minute changes
        app.refresh_now()
        await settle(pilot, app, polls + 2)
        assert app.polls >= polls + 2
        assert cells() == before


async def test_a_snapshot_read_again_with_the_same_figures_touches_no_cell():
    """A snapshot read again (after a lease renewal, say) carries new objects with the same figures, and a
    status_since that follows the health window's edge: rows whose shown words did not change keep their
    cells; a row whose figure changed gets new ones."""
    app = fixed_app(refresh=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        table = app.dashboard.panels[1].table

        def cells():
            return {
                (row.key.value, col.key.value): id(table.get_cell(row.key, col.key))
                for row in table.ordered_rows
                for col in table.ordered_columns
            }

        panel = app.dashboard.panels[1]
        built: list[str] = []
        build_cells = panel.cells
        panel.cells = lambda h, view: built.append(h.provider_id) or build_cells(h, view)  # type: ignore[method-assign]
        before = cells()
        snap = app.backend.snap
        reread = [
            dataclasses.replace(h, status_since=h.status_since - 1 if h.status_since else None) for h in snap.providers
        ]
        reread[0] = dataclasses.replace(reread[0], circuit="half_open")  # OpenAI: one figure changed
        app.backend.snap = dataclasses.replace(snap, providers=reread)
        polls = app.polls
        app.refresh_now()
        await settle(pilot, app, polls + 2)
        after = cells()
        changed = {key for key in before if after.get(key) != before[key]}
        assert changed == {("openai", "circuit")}, changed
        assert set(built) == {"openai"}, "only the changed row's cells are built again"


def footer_text(app) -> str:
    """The footer's last line as drawn on the screen."""
    strips = app.screen._compositor.render_strips()
    return strips[-1].text


async def test_the_welcome_footer_lists_only_keys_that_act_there():
    """No provider configured: the welcome has no alert, provider or row, so Ack, Silence, Resolve, Probe,
    Pause, Filter and Sort were keys in its footer that did nothing. Only help and quit (and the palette)
    act there; the panels' keys come back with the first configured provider."""
    snap = fixed_snapshot()
    welcome_snap = first_run_snapshot()
    unconfigured = welcome_snap.providers
    idle = ("Ack", "Silence", "Resolve", "Probe", "Pause", "Filter", "Sort")
    for size in ((80, 24), (120, 40)):
        app = fixed_app(backend=FixedBackend(welcome_snap))
        async with app.run_test(size=size) as pilot:
            await settle(pilot, app)
            await pilot.pause()
            assert app.dashboard.welcome.display
            shown = footer_text(app)
            assert "Help" in shown and "Quit" in shown, (size, shown)
            assert not [word for word in idle if word in shown], (size, shown)
            # and they do nothing: no "select an alert first", no filter box, no pause
            await pilot.press("a", "slash", "space")
            await pilot.pause()
            assert not app.dashboard.filter_input.display and not app.paused
            assert not [n for n in app._notifications if "select" in n.message], size
            # A configured provider brings the panels and their keys back.
            app.backend.snap = dataclasses.replace(
                welcome_snap, providers=[dataclasses.replace(snap.providers[0], configured=True), *unconfigured[1:]]
            )
            polls = app.polls
            app.refresh_now()
            await settle(pilot, app, polls + 1)
            await pilot.pause()
            shown = footer_text(app)
            assert not app.dashboard.welcome.display
            assert all(word in shown for word in ("Ack", "Probe", "Filter")), (size, shown)


async def test_the_welcome_gives_way_to_what_there_is_to_show():
    """The welcome hid everything whenever this process had no key: a viewer over SSH without the
    daemon's keys saw "nothing to watch" instead of the daemon's verdicts, and a team that only records
    usage (no provider keys) never saw its budgets and migrations — while keys 1-4 and enter opened rows
    of panels nobody could see. The welcome is for a database with nothing to show."""
    empty = first_run_snapshot()
    full = fixed_snapshot()
    judged_elsewhere = [dataclasses.replace(empty.providers[0], verdict_at=NOW - 20, status="failed")]
    cases = {
        "a provider the collector judges": dataclasses.replace(empty, providers=judged_elsewhere + empty.providers[1:]),
        "budgets": dataclasses.replace(empty, budgets=full.budgets),
        "migrations": dataclasses.replace(empty, migrations=full.migrations),
        "open alerts": dataclasses.replace(empty, alerts=full.alerts),
        "usage this month": dataclasses.replace(empty, usage=full.usage),
    }
    for name, snap in cases.items():
        app = fixed_app(backend=FixedBackend(snap))
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, app)
            assert not app.dashboard.welcome.display, name
            assert app.dashboard.query_one("#panels").display, name
    app = fixed_app(backend=FixedBackend(empty))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        assert app.dashboard.welcome.display


async def test_the_footer_at_80_columns_keeps_help_and_quit_and_only_keys_that_act():
    """At 80×24 the dashboard's footer filled with Filter, Sort, Ack, Silence, Resolve, Probe and Pause and
    pushed "? Help" and "q Quit" off the line: a new user saw no way to the keys or out. And on screens
    where no alert can be selected (help, a provider, costs) Ack, Silence and Resolve stayed in the
    footer, acting on nothing. Sort and Pause are in the help (`?`); alert keys show where an alert can
    be selected: the dashboard and an alert's screen."""
    app = fixed_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.pause()
        shown = footer_text(app)
        assert "? Help" in shown and "q Quit" in shown and "a Ack" in shown, shown
        for keys, screen in ((("question_mark",), "HelpScreen"), (("1", "enter"), "ProviderScreen")):
            await pilot.press(*keys)
            assert await wait_for(pilot, lambda screen=screen: type(app.screen).__name__ == screen), app.screen
            await pilot.pause()
            shown = footer_text(app)
            assert "Quit" in shown, (screen, shown)
            assert not [w for w in ("Ack", "Silence", "Resolve") if w in shown], (screen, shown)
            await pilot.press("escape")
            await pilot.pause()
        await pilot.press("3", "enter")
        assert await wait_for(pilot, lambda: type(app.screen).__name__ == "AlertScreen"), app.screen
        await pilot.pause()
        shown = footer_text(app)
        assert "a Ack" in shown and "Quit" in shown, shown
