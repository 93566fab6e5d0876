"""What trying llmpulse as a new user found: a `check` typo must not read as CRITICAL, and a notice that
could not be delivered must say so in the daemon's log, not only in `alerts show`."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli


@pytest.mark.parametrize("args", [["check", "--jsn"], ["check", "--provider"], ["--db", "x.db", "check", "--bogus"]])
def test_a_check_command_line_typo_is_unknown_not_critical(tmp_path: Path, args: list[str]) -> None:
    proc = run_cli(tmp_path, *args)
    assert proc.returncode == 3, proc.stderr  # Nagios: UNKNOWN, never CRITICAL (2), for a typo
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_other_commands_keep_exit_2_for_a_typo(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "alerts", "--jsn")
    assert proc.returncode == 2 and "--jsn" in proc.stderr


def test_a_failed_notice_is_one_line_in_the_daemon_log(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: the webhook is refused at once
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    (tmp_path / "llmpulse.toml").write_text(
        '[[budgets]]\nscope = "total"\nperiod = "month"\nlimit_usd = 0.01\n\n'
        '[[alerts.channels]]\nname = "ops-hook"\ntype = "webhook"\nurl_env = "HOOK_URL"\nmin_severity = "info"\n'
        "retries = 0\n"
    )
    db = str(tmp_path / "d.db")
    r = run_cli(
        tmp_path, "--db", db, "record", "--provider", "openai", "--model", "gpt-4o", "--input-tokens", "9000000"
    )
    assert r.returncode == 0, r.stderr
    proc = run_cli(tmp_path, "--db", db, "daemon", "--once", env={"HOOK_URL": dead})
    failed = [line for line in proc.stderr.splitlines() if "notice to ops-hook failed" in line]
    assert failed, proc.stderr
    assert all("alert #" in line for line in failed)
    assert dead not in proc.stderr  # the webhook URL is a secret


def test_record_refuses_a_provider_one_slip_from_a_known_one(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db")
    args = ("--model", "gpt-4o", "--input-tokens", "3", "--output-tokens", "5")
    typo = run_cli(tmp_path, "--db", db, "record", "--provider", "opneai", *args)
    assert typo.returncode == 2 and "did you mean 'openai'" in typo.stderr
    assert len(typo.stderr.strip().splitlines()) == 1
    own = run_cli(tmp_path, "--db", db, "record", "--provider", "acme-gateway", *args)
    assert own.returncode == 0, own.stderr  # a provider of one's own, not near any known id, is recorded
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert [r[0] for r in conn.execute("SELECT provider FROM usage_records")] == ["acme-gateway"]


async def test_a_body_that_does_not_inflate_is_answered_and_logs_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt gzip body refused before it was read (415, 401) or while reading it (400): the client gets
    its answer, and aiohttp reading the rest of that body afterwards (which raises again) no longer writes a
    traceback ("Unhandled exception") into the daemon's one-line-per-event log."""
    import logging

    import httpx

    from llmpulse.core.config import load_context
    from llmpulse.core.server.app import Server, ServerState
    from llmpulse.core.server.config import Listener
    from llmpulse.core.server.jsonl import install as install_jsonl
    from llmpulse.core.store import Store

    (tmp_path / "llmpulse.toml").write_text("")
    ctx = load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "s.db"), environ={})
    store = await Store.open(ctx.db_path)
    server = Server(ServerState(ctx, store, ctx.config.server), Listener("127.0.0.1", 0, None), [install_jsonl])
    await server.start()
    garbage = b"\x00not gzip at all" * 64
    try:
        with caplog.at_level(logging.DEBUG, logger="aiohttp"):
            async with httpx.AsyncClient(base_url=server.url) as c:
                ndjson = {"Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"}
                read = await c.post("/v1/records", content=garbage, headers=ndjson)
                form = {"Content-Encoding": "gzip", "Content-Type": "application/x-www-form-urlencoded"}
                refused = await c.post("/v1/records", content=garbage, headers=form)
                ok = await c.post(
                    "/v1/records",
                    content=b'{"provider": "openai", "model": "gpt-4o", "input_tokens": 3}\n',
                    headers={"Content-Type": "application/x-ndjson"},
                )
    finally:
        await server.stop()
        await store.close()
    assert (read.status_code, refused.status_code, ok.status_code) == (400, 415, 200)
    assert ok.json()["stored"] == 1  # the server still serves after the bad bodies
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_the_welcome_fits_80x24_to_its_last_line() -> None:
    """The first run's welcome with every key variable the catalog knows (11): at 80×24 its last lines —
    where the README's configuration section is, and that q quits — were below the footer, cut off."""
    from llmpulse.core.catalog import CATALOG
    from tests.snapshot_apps.fixed import FixedBackend, first_run_snapshot, fixed_app
    from tests.tui_helpers import settle

    variables = [(p.name, p.key_envs[0]) for p in CATALOG if p.key_envs and not p.local]
    assert len(variables) >= 11
    backend = FixedBackend(first_run_snapshot())
    backend.key_variables = lambda: variables  # type: ignore[method-assign]
    for size in ((80, 24), (120, 40)):
        app = fixed_app(backend=backend)
        async with app.run_test(size=size) as pilot:
            await settle(pilot, app)
            welcome = app.dashboard.welcome
            shown = " ".join(welcome.render_line(y).text.strip() for y in range(welcome.size.height))
            assert welcome.display
            for _, var in variables:
                assert var in shown, (size, var)
            assert 'section "Providers and probes"' in shown and "q quits" in shown, (size, shown)
            lines = [welcome.render_line(y).text.strip() for y in range(welcome.size.height)]
            assert any(line.endswith("llmpulse demo") for line in lines), (size, lines)  # the command in one piece


def test_messages_name_the_command_line_or_the_config_file_never_defaults(tmp_path: Path) -> None:
    """With no config file the config's source is "defaults": '--listen 0.0.0.0:9' was blamed on
    "defaults: server.listen", '--listen nope' read "--listen: listen:", and `migration` asked to add a
    table "to defaults"."""
    db = str(tmp_path / "d.db")
    bad = run_cli(tmp_path, "--db", db, "daemon", "--listen", "nope")
    assert bad.returncode == 2 and bad.stderr.startswith(
        "llmpulse: config error: command line: --listen: found 'nope';"
    )
    open_port = run_cli(tmp_path, "--db", db, "daemon", "--listen", "0.0.0.0:0")
    assert open_port.returncode == 2
    assert open_port.stderr.startswith(
        "llmpulse: config error: command line: --listen: found '0.0.0.0:0' (not loopback)"
    )
    migrations = run_cli(tmp_path, "--db", db, "migration")
    assert migrations.returncode == 0 and "[[migrations]] table to the config file" in migrations.stdout
    for proc in (bad, open_port, migrations):
        assert "defaults" not in proc.stdout + proc.stderr


def test_a_channel_with_its_secret_in_the_file_is_told_to_name_a_variable(tmp_path: Path) -> None:
    """`url = "https://hooks.slack.com/..."` in a slack channel read "url_env: found NoneType None": it
    must say that the file holds the secret itself and which key names the variable instead."""
    secret = "https://hooks.slack.com/services/T000/B000/XyzSecretXyz"
    (tmp_path / "llmpulse.toml").write_text(f'[[alerts.channels]]\ntype = "slack"\nurl = "{secret}"\n')
    proc = run_cli(tmp_path, "check")
    assert proc.returncode == 3 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "alerts.channels[0].url: found the secret itself" in proc.stderr and "url_env" in proc.stderr
    assert "XyzSecretXyz" not in proc.stderr and "NoneType" not in proc.stderr
    (tmp_path / "llmpulse.toml").write_text('[[alerts.channels]]\ntype = "slack"\n')
    missing = run_cli(tmp_path, "check")
    assert missing.returncode == 3 and "alerts.channels[0].url_env: found nothing" in missing.stderr, missing.stderr


async def test_recent_probes_title_says_the_table_is_the_latest_of_more() -> None:
    """The provider screen lists the newest 50 probes; its title read "last 7d: 50 probes, 0 failed" beside
    the chart's "70 probes" over the same 7d. When the list is cut, the title says it is the latest 50 of
    all the range's probes, and counts the failures of the whole range."""
    from llmpulse.core.probe import ProbeResult
    from llmpulse.tui.backend import LatencyHistory
    from llmpulse.tui.screens.provider import ProviderScreen
    from tests.snapshot_apps.fixed import NOW, FixedBackend, fixed_app
    from tests.tui_helpers import ready, wait_for

    in_range, failed_in_range = 80, 3

    class ManyProbes(FixedBackend):  # type: ignore[misc]
        async def recent_probes(self, provider_id: str, since: float, limit: int = 50) -> list[ProbeResult]:
            return [
                ProbeResult(provider_id, provider_id, NOW - 5 * i, "healthy", latency_ms=40.0, http_status=200)
                for i in range(min(limit, in_range))
            ]

        async def latency_history(self, provider_id: str, since: float, until: float, buckets: int) -> LatencyHistory:
            return LatencyHistory(since, until, [40.0] * buckets, 40.0, in_range, failed_in_range)

    for size in ((80, 24), (120, 40)):
        app = fixed_app(backend=ManyProbes())
        async with app.run_test(size=size) as pilot:
            await ready(pilot)
            await pilot.press("1", "enter")
            # press() returns once the process looks idle, which under load can be before enter is handled
            assert await wait_for(pilot, lambda app=app: isinstance(app.screen, ProviderScreen)), app.screen
            screen = app.screen
            assert await wait_for(pilot, lambda screen=screen: screen.probes.row_count == 50)
            title = str(app.screen.query_one("#provider-probes-title").render())
            assert f"latest 50 of {in_range} probes" in title and f"{failed_in_range} failed" in title, (size, title)


async def test_cost_panel_fits_80_columns_with_real_budget_names() -> None:
    """The demo's budget names ('department:Engineering/month') pushed 'Runs out' past the right edge at 80
    columns: 'Runs' and 'Dec 2' cut without a mark, behind a horizontal scrollbar. Every column stays in
    the box at 80 and 120 columns; a name longer than its room ends with '…'."""
    import dataclasses

    from tests.snapshot_apps.fixed import FixedBackend, fixed_app, fixed_snapshot
    from tests.tui_helpers import settle

    snap = fixed_snapshot()
    template = snap.budgets[0]
    names = ["department:Engineering/month", "provider:anthropic/month", "department:Platform-Reliability-Infra/month"]
    budgets = [
        dataclasses.replace(template, name=name, spent_usd=1234.5, limit_usd=10_000.0, projected_usd=12_345.0)
        for name in names
    ]
    for size in ((80, 24), (120, 40)):
        app = fixed_app(backend=FixedBackend(dataclasses.replace(snap, budgets=budgets)))
        async with app.run_test(size=size) as pilot:
            await settle(pilot, app)
            await pilot.pause(0.1)
            table = app.dashboard.panels[2].table
            assert table.virtual_size.width <= table.scrollable_content_region.width, (size, table.virtual_size)
            lines = [table.render_line(y).text for y in range(len(names) + 1)]
            assert "Runs out" in lines[0], (size, lines[0])
            assert any(names[0] in line for line in lines), (size, lines)  # a demo name, whole
            assert any("department:Platform" in line and "…" in line for line in lines), (size, lines)
            assert not any(names[2] in line for line in lines)


def test_every_json_flag_says_what_it_prints() -> None:
    """`budgets --help`, `reconcile --help`, `failover --help` and `doctor --help` listed a bare `--json`
    where every other command says what it prints."""
    import argparse

    from llmpulse.core.cli import build_parser

    def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
        bare = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    bare += walk(sub, f"{path} {name}")
            elif "--json" in action.option_strings and not action.help:
                bare.append(path)
        return bare

    assert walk(build_parser(), "llmpulse") == []


async def test_cost_panel_names_the_period_of_its_unknown_price_count() -> None:
    """The Cost panel's "⚠ 28 requests with unknown price" (this month) sat under the prices alert's
    "57 requests uncosted" (the last 24h): the panel's count says which period it counts."""
    from tests.snapshot_apps.fixed import fixed_app, fixed_snapshot
    from tests.tui_helpers import settle

    expected = fixed_snapshot().usage.unknown_price_count
    for size in ((80, 24), (120, 40)):
        app = fixed_app()
        async with app.run_test(size=size) as pilot:
            await settle(pilot, app)
            subtitle = str(app.dashboard.panels[2].border_subtitle)
            assert subtitle == f"⚠ {expected} requests this month with unknown price", (size, subtitle)


def test_the_prices_alert_says_the_period_it_counts(tmp_path: Path) -> None:
    """The collector counts uncosted requests over the last 24h; the alert said only "57 requests uncosted"
    under the Cost panel's month figure. Driven through the real collector (daemon --once)."""
    import json

    db = str(tmp_path / "p.db")
    for _ in range(2):
        r = run_cli(
            tmp_path, "--db", db, "record", "--provider", "openai", "--model", "in-house-9", "--input-tokens", "5"
        )
        assert r.returncode == 0, r.stderr
    assert run_cli(tmp_path, "--db", db, "daemon", "--once").returncode == 0
    alerts = json.loads(run_cli(tmp_path, "--db", db, "alerts", "--json").stdout)
    rows = alerts["alerts"] if isinstance(alerts, dict) else alerts
    message = next(a["message"] for a in rows if a["rule"] == "prices_unknown")
    assert "2 requests uncosted in the last 24h: openai/in-house-9 (2)" in message, message


@pytest.mark.parametrize("bad", ["folder", "garbage"])
def test_the_dashboard_refuses_a_database_it_cannot_use_in_one_line(tmp_path: Path, bad: str) -> None:
    """`llmpulse --db /tmp` (or a file that is not SQLite) opened an empty dashboard that said
    "loading…" and "⚠ StoreError: … e.g." cut at the edge, and exited 0: it is refused before the screen
    opens, in the one line `status` gives, exit 2."""
    path = tmp_path / "folder"
    path.mkdir()
    if bad == "garbage":
        path = tmp_path / "garbage.db"
        path.write_text("not a database\n")
    for argv in (["--db", str(path)], ["--db", str(path), "watch"]):
        proc = run_cli(tmp_path, *argv)
        status = run_cli(tmp_path, "--db", str(path), "status")
        assert proc.returncode == 2 and status.returncode == 2, (proc.stderr, status.stderr)
        assert proc.stderr == status.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert "terminal" not in proc.stderr


def test_a_usage_count_of_the_wrong_type_is_named_in_our_words(tmp_path: Path) -> None:
    """`"usage": {"prompt_tokens": "x"}` was reported with genai-prices' internal "Missing value at
    `usage.input_tokens`"; the line now names the field and what is expected, and null (Anthropic's
    cache counts) is still accepted."""
    lines = [
        '{"provider": "openai", "model": "gpt-4o", "usage": {"prompt_tokens": "x", "completion_tokens": 5}}',
        '{"provider": "anthropic", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 10, "output_tokens": 3,'
        ' "cache_creation_input_tokens": null, "cache_read_input_tokens": null}}',
    ]
    (tmp_path / "u.jsonl").write_text("\n".join(lines) + "\n")
    r = run_cli(tmp_path, "--db", str(tmp_path / "u.db"), "import", "u.jsonl")
    bad = [line for line in r.stderr.splitlines() if line.startswith("line ")]
    assert bad == ["line 1: usage.prompt_tokens: found 'x'; expected a whole number of tokens"], r.stderr
    assert "imported 1 record " in r.stdout and "Traceback" not in r.stderr


async def test_a_snapshot_arriving_while_a_detail_screen_is_being_pushed_waits_for_it() -> None:
    """The recent-probes title test failed now and then under load: a snapshot drawn between a provider
    screen's push (it is current at once) and its compose queried '#provider-summary' before it existed,
    and the dashboard crashed (NoMatches). A draw in that moment now leaves the screen to draw itself."""
    from llmpulse.tui.screens.provider import ProviderScreen
    from tests.snapshot_apps.fixed import fixed_app
    from tests.tui_helpers import ready, shown, wait_for

    app = fixed_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        app.push_screen(ProviderScreen("anthropic"))
        assert isinstance(app.screen, ProviderScreen) and not app.screen.is_mounted
        app.draw()  # what a snapshot arriving at this moment does
        assert await wait_for(pilot, lambda: "Anthropic" in shown(app, "#provider-summary"))
