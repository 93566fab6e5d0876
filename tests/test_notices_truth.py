"""Notices that tell on-call the truth: a resolved notice is never held back by a channel's hourly limit;
alert history names what happened (escalated, delivery failed and why) instead of "firing → firing"; a
2h silence reads 2h; the daemon's log is one line per event, without a line per HTTP request, and an
HTML error page shows as its title, redacted."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from llmpulse.core.alerts.config import parse as parse_alerts
from llmpulse.core.alerts.engine import AlertEngine
from llmpulse.core.alerts.notify import Notifier
from llmpulse.core.alerts.rules import Condition
from llmpulse.core.clock import ManualClock
from llmpulse.core.redact import body_line, register_secret
from llmpulse.core.simulator.fleet import FakeProvider, Fleet, Response
from llmpulse.core.store import Store
from llmpulse.core.validate import Section
from llmpulse.tui import format as fmt
from tests.cli_helpers import run_cli
from tests.test_notify import T0, Receiver, channels, deliveries, hook

DOWN = Condition("provider_down", "groq", "critical", "Groq down: 3 failed probes in a row (timeout)")


@pytest.fixture
async def notify_setup(tmp_path):
    """(make, receiver) as in test_notify: make(toml, env) -> (store, engine, notifier, clock)."""
    made = []
    async with Receiver() as receiver:

        async def make(text: str, env: dict):
            cfg = parse_alerts(Section(tomllib.loads(text), "t.toml"))
            store = await Store.open(tmp_path / "n.db")
            clock = ManualClock(T0)
            notifier = Notifier(cfg, store, clock, env)
            made.append((store, notifier))
            return store, AlertEngine(store, cfg, clock), notifier, clock

        yield make, receiver
        for store, notifier in made:
            for task in notifier.tasks:
                task.cancel()
            await store.close()


PROXY_PAGE = (
    "<!DOCTYPE html>\n<html>\n<head>\n<title>502 Bad Gateway</title>\n<style>body{font:13px sans-serif}</style>"
    "</head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx/1.25.3</center>\n"
    "<script>var k='sk-proj-EchoedBack0123456789abcdef';</script>\n</body>\n</html>\n"
)


async def test_resolved_notices_go_out_over_the_hourly_limit(notify_setup):
    make, rx = notify_setup
    store, engine, notifier, clock = await make(
        channels(hook("pager", rate_limit_per_hour=1)), {"PAGER_URL": rx.url("/pager")}
    )
    outage = [Condition("provider_down", pid, "critical", f"{pid} down") for pid in ("groq", "openai", "mistral")]
    await engine.process(outage)
    await notifier.dispatch()
    await notifier.drain(5)
    assert [b["event"] for b in rx.bodies("/pager")] == ["firing"]  # the limit: one an hour, two held

    clock.advance(600)  # the outage ends within the same hour
    await engine.process([], covered={"provider_down"})
    await notifier.dispatch()
    await notifier.drain(5)
    resolved = [b["alert"]["subject"] for b in rx.bodies("/pager") if b["event"] == "resolved"]
    assert sorted(resolved) == ["groq", "mistral", "openai"]
    assert not [k for k, r in (await deliveries(store)).items() if k[2] == "resolved" and r["status"] == "held"]


async def test_history_names_what_happened_and_why_delivery_failed(notify_setup, tmp_path):
    make, rx = notify_setup
    rx.answers["/hook"] = [(502, {"content-type": "text/html"}, PROXY_PAGE)]
    register_secret("sk-proj-EchoedBack0123456789abcdef")
    _store, engine, notifier, clock = await make(
        '[alerts]\nescalate_after = "15m"\n' + channels(hook("hook")), {"HOOK_URL": rx.url("/hook")}
    )
    await engine.process([DOWN])
    await notifier.dispatch()
    await notifier.drain(5)
    clock.advance(15 * 60)
    await engine.process([DOWN])
    await notifier.dispatch()
    await notifier.drain(5)

    history = await engine.transitions(1)
    changes = [t.change for t in history]
    assert "escalated" in changes and "delivery failed" in changes
    assert not any(re.search(r"(\w+) → \1", c) for c in changes)  # never "firing → firing"
    escalated = next(t for t in history if t.event == "escalated")
    assert escalated.detail == "not acknowledged within 15m"
    failed = next(t for t in history if t.event == "delivery_failed")
    # the proxy's page comes down to its title; its markup and the key it echoed stay out
    assert failed.detail == "hook: HTTP 502: HTML page: 502 Bad Gateway"
    # the CLI shows the same words, as a table and in JSON
    shown = run_cli(tmp_path, "--db", str(tmp_path / "n.db"), "alerts", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert "escalated" in shown.stdout and "delivery failed" in shown.stdout and "firing → firing" not in shown.stdout
    as_json = json.loads(run_cli(tmp_path, "--db", str(tmp_path / "n.db"), "alerts", "show", "1", "--json").stdout)
    assert [t["change"] for t in as_json["transitions"]] == changes


async def test_a_two_hour_silence_reads_two_hours(notify_setup):
    make, rx = notify_setup
    _store, engine, _notifier, clock = await make(channels(hook("hook")), {"HOOK_URL": rx.url("/hook")})
    await engine.process([DOWN])
    alert = await engine.silence(1, 2 * 3600, "ops")
    [silenced] = [t for t in await engine.transitions(1) if t.event == "silenced"]
    assert silenced.detail == "for 2h" and silenced.change == "silenced"
    # the dashboard a moment later: 1h59m59.6s left is still "2h", never the "1h" a floor gives
    words = fmt.alert_state_words(alert.state, alert.silenced_until, alert.escalated, clock.now() + 0.4)
    assert words == "silenced 2h"
    assert fmt.alert_state_words(alert.state, alert.silenced_until, False, clock.now() + 600) == "silenced 1h50m"


def test_body_line_cuts_html_to_its_title_and_keeps_json_words():
    assert body_line(PROXY_PAGE) == "HTML page: 502 Bad Gateway"
    assert body_line("<html><body><h1>Service Unavailable</h1></body></html>") == "HTML page: Service Unavailable"
    assert body_line("upstream connect error\n  reset before headers") == "upstream connect error reset before headers"
    assert body_line("x" * 500, 40) == "x" * 39 + "…"


def test_daemon_log_is_one_line_per_event(tmp_path):
    key = "sk-proj-DaemonLogKey0123456789abcdef"
    with Fleet([FakeProvider("openai", key=key), FakeProvider("mistral", kind="mistral", key=key)]) as fleet:
        fleet.add_route(
            "mistral",
            "GET",
            "/models",
            lambda fake, req: Response(502, PROXY_PAGE.replace("EchoedBack", "DaemonLogKey").encode(), {}),
        )
        lines = [
            f'[providers.{pid}]\nbase_url = "{fleet.base_url(pid)}"\napi_key_env = "K"\n'
            for pid in ("openai", "mistral")
        ]
        (tmp_path / "llmpulse.toml").write_text("".join(lines))
        r = run_cli(tmp_path, "--db", str(tmp_path / "d.db"), "daemon", "--once", env={"K": key})
    log = r.stderr.splitlines()
    assert log, r.stderr
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} llmpulse ", line) for line in log), r.stderr
    assert "HTTP Request" not in r.stderr  # httpx's line per probe
    events = [line for line in log if "provider " in line]
    assert any("provider openai new -> healthy" in line for line in events), r.stderr
    [mistral] = [line for line in events if "provider mistral" in line]
    assert mistral.endswith("(server_error: HTTP 502: HTML page: 502 Bad Gateway)")
    assert key not in r.stderr and "<" not in r.stderr


def test_a_multi_line_event_is_still_one_log_line():
    import io
    import logging

    from llmpulse.core.daemon_log import DAEMON_LOG_DATEFMT, DAEMON_LOG_FORMAT, OneLineFormatter
    from llmpulse.core.redact import RedactingFilter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(OneLineFormatter(DAEMON_LOG_FORMAT, DAEMON_LOG_DATEFMT))
    log = logging.getLogger("llmpulse.test-one-line")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        log.info("error in notifications: boom\n  with key sk-proj-OneLineKey0123456789abcdef\nand more")
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            log.exception("collector step failed")
    finally:
        log.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("error in notifications: boom | with key *** | and more")
    assert "Traceback (most recent call last): |" in lines[1] and lines[1].endswith("ValueError: bad | value")
