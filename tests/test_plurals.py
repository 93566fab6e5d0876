"""A count and its noun agree: "1 record", "1 bad line", "1 alert", "1 time" — never "1 records" — in the
messages users read most: the import summary, alerts show and stats, notices, rule messages and the daemon
log. One rule (llmpulse.core.vocabulary.plural / counted) serves the CLI, the core and the dashboard."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

from llmpulse.core.alerts.config import parse as parse_alerts
from llmpulse.core.alerts.engine import Alert, AlertEngine
from llmpulse.core.alerts.notify import slack_payload
from llmpulse.core.alerts.rules import Condition, RuleInputs, evaluate_rules
from llmpulse.core.clock import ManualClock
from llmpulse.core.health import ProviderHealth
from llmpulse.core.store import Store
from llmpulse.core.validate import Section
from llmpulse.core.vocabulary import counted, plural
from llmpulse.tui import format as fmt
from tests.cli_helpers import run_cli

T0 = 1_800_000_000.0


async def _one_alert(db: Path, at: float) -> Alert:
    """One firing alert, opened by the real engine at `at`, in the database file `db`."""
    store = await Store.open(db)
    try:
        engine = AlertEngine(store, None, ManualClock(at))
        await engine.process([Condition("provider_down", "groq", "critical", "Groq down")])
        (alert,) = await engine.open_alerts()
        return alert
    finally:
        await store.close()


def test_the_rule() -> None:
    assert [plural(n, "record") for n in (0, 1, 2, 1.5)] == ["records", "record", "records", "records"]
    assert plural(1, "was", "were") == "was" and plural(3, "was", "were") == "were"
    assert [counted(n, "alert") for n in (0, 1, 2, 12_345)] == ["0 alerts", "1 alert", "2 alerts", "12,345 alerts"]
    assert fmt.plural is plural  # the dashboard uses the same rule, not a second one


def test_import_summary_of_one_record_and_one_bad_line(tmp_path: Path) -> None:
    good = json.dumps({"provider": "openai", "model": "gpt-4o", "input_tokens": 5, "output_tokens": 2})
    (tmp_path / "one.jsonl").write_text(good + "\n{not json\n")
    r = run_cli(tmp_path, "--db", str(tmp_path / "d.db"), "import", str(tmp_path / "one.jsonl"))
    assert r.returncode == 1  # a bad line was skipped
    assert "imported 1 record (0 already there, 1 bad line skipped, 0 with unknown price)" in r.stdout, r.stdout


async def test_alerts_show_and_stats_of_one_alert(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    alert = await _one_alert(db, time.time() - 3600)
    show = run_cli(tmp_path, "--db", str(db), "alerts", "show", str(alert.id))
    assert show.returncode == 0, show.stderr
    assert ", 1 time" in show.stdout and "time(s)" not in show.stdout, show.stdout
    ack = run_cli(tmp_path, "--db", str(db), "alerts", "ack", str(alert.id), "--by", "bob")
    assert ack.returncode == 0, ack.stderr
    resolve = run_cli(tmp_path, "--db", str(db), "alerts", "resolve", str(alert.id), "--by", "bob")
    assert resolve.returncode == 0, resolve.stderr
    stats = run_cli(tmp_path, "--db", str(db), "alerts", "stats", "--since", "7d")
    assert stats.returncode == 0, stats.stderr
    lines = stats.stdout.splitlines()
    assert lines[0] == "1 alert opened in the last 7d", lines[0]
    assert "(of 1 alert)" in lines[1] and "(of 1 alert)" in lines[2], lines[1:3]
    assert "noisiest rules: provider_down (1 fire)" in stats.stdout, stats.stdout


async def test_a_notice_says_one_held_back_notice_was_held(tmp_path: Path) -> None:
    alert = await _one_alert(tmp_path / "n.db", T0)
    assert slack_payload(alert, "resolved", 1)["text"].endswith("_1 more notice was held back by the rate limit_")
    assert slack_payload(alert, "resolved", 2)["text"].endswith("_2 more notices were held back by the rate limit_")


def test_rule_messages_count_one_as_one() -> None:
    cfg = parse_alerts(Section(tomllib.loads("[alerts]\ndown_after_failures = 1\n"), "t.toml"))
    down = ProviderHealth(
        provider_id="groq",
        name="Groq",
        status="failed",
        error_kind="timeout",
        consecutive_failures=1,
        samples=10,
        error_rate=1.0,
    )
    found = {c.fingerprint: c for c in evaluate_rules(RuleInputs(now=T0, health=[down]), cfg)}
    assert "Groq down: 1 failed probe in a row (timeout)" in found["provider_down:groq"].message
    prices = {
        c.fingerprint: c for c in evaluate_rules(RuleInputs(now=T0, unknown_prices=[("acme", "in-house", 1)]), cfg)
    }
    message = prices["prices_unknown:prices"].message
    assert message.startswith("1 model in use with no known price, 1 request uncosted"), message
