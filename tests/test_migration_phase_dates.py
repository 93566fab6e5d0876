"""Migration phases with their own target dates: each phase on track / at risk / late against its date, the
risk alert naming the phase, and date mistakes caught at load — real traffic on a real file."""

from __future__ import annotations

import datetime as dt
import time
import tomllib
from pathlib import Path

import pytest

from llmpulse.core.alerts.rules import RuleInputs, evaluate_rules
from llmpulse.core.migration import migration_status, parse_config
from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import Pricing
from llmpulse.core.usage.records import UsageRecord
from llmpulse.core.usage.rollup import ingest
from llmpulse.core.validate import ConfigError, Section

DAY = 86400.0
NOW = time.time()
TODAY = dt.datetime.fromtimestamp(NOW, dt.UTC).date()


def day(offset: int) -> str:
    return (TODAY + dt.timedelta(days=offset)).isoformat()


def config(phases: str) -> str:
    return (
        f'[[migrations]]\nname = "gpt41"\nfrom = ["gpt-4o"]\nto = "gpt-4.1"\nstart = {day(-20)}\n'
        f'deadline = {day(40)}\nwindow = "1d"\nphases = [{phases}]\n'
    )


PHASES = (
    f'{{ name = "preparation", share = 0.0 }}, {{ name = "testing", share = 0.05, by = {day(-10)} }}, '
    f'{{ name = "rollout", share = 0.5, by = {day(5)} }}, {{ name = "full", share = 1.0, by = {day(30)} }}, '
    '{ name = "completed", share = 1.0 }'
)


def traffic(shares_by_day_ago: dict[int, float], per_day: int = 100) -> list[UsageRecord]:
    records = []
    for ago, share in shares_by_day_ago.items():
        new = round(per_day * share)
        for i in range(per_day):
            model = "gpt-4.1" if i < new else "gpt-4o"
            records.append(
                UsageRecord(
                    ts=NOW - ago * DAY - 6 * 3600 - i,
                    provider="openai",
                    model=model,
                    input_tokens=100,
                    output_tokens=10,
                )
            )
    return records


async def status_for(tmp_path: Path, phases: str, shares: dict[int, float]):
    [cfg] = parse_config(Section(tomllib.loads(config(phases)), "t.toml"))
    store = await Store.open(tmp_path / "m.db")
    try:
        await ingest(store, traffic(shares), Pricing())
        return cfg, await migration_status(store, cfg, NOW, record=True)
    finally:
        await store.close()


async def test_a_phase_past_its_date_is_late_and_the_alert_names_it(tmp_path: Path) -> None:
    # 2% on the new model for days: testing (5%) was due ten days ago.
    _, status = await status_for(tmp_path, PHASES, dict.fromkeys(range(8), 0.02))
    targets = {t.name: t for t in status.phase_targets}
    assert set(targets) == {"testing", "rollout", "full"}  # only phases with a date
    assert status.phase == "preparation"
    testing = targets["testing"]
    assert testing.state == "late"
    due = dt.datetime.combine(TODAY - dt.timedelta(days=10), dt.time(), dt.UTC).timestamp() + DAY
    assert abs(testing.late_by_days - (NOW - due) / DAY) < 1e-6
    assert targets["rollout"].state == "at risk"  # a flat 2% never reaches 50%
    assert status.risk == "at risk"  # the deadline itself has not passed

    [alert] = [c for c in evaluate_rules(RuleInputs(now=NOW, migrations=[status])) if c.rule == "migration_deadline"]
    assert alert.severity == "warning"
    assert f"phase testing (5.0%) was due {day(-10)}" in alert.message


async def test_phases_reached_in_time_and_a_rising_share_on_track(tmp_path: Path) -> None:
    # From 0% ten days ago rising 4.5 points a day: 45% today, 50% within about a day (rollout due in 5),
    # 100% in about 12 days (full due in 30).
    shares = {ago: 0.045 * (10 - ago) for ago in range(11)}
    _, status = await status_for(tmp_path, PHASES, shares)
    targets = {t.name: t for t in status.phase_targets}
    assert status.phase == "testing"  # 45% earned testing, not yet rollout
    assert targets["testing"].state == "reached"
    assert targets["rollout"].state == "on track" and targets["full"].state == "on track"
    assert status.risk == "on track"
    assert not [c for c in evaluate_rules(RuleInputs(now=NOW, migrations=[status])) if c.rule == "migration_deadline"]
    assert status.to_json()["phase_targets"][0]["by"] == day(-10)


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        (f'{{ name = "a", share = 0.0, by = {day(3)} }}, {{ name = "b", share = 1.0, by = {day(1)} }}', "on or after"),
        (f'{{ name = "a", share = 0.0 }}, {{ name = "b", share = 1.0, by = {day(90)} }}', "to the deadline"),
        ('{ name = "a", share = 0.0 }, { name = "b", share = 1.0, by = "soon" }', "a date like"),
    ],
)
def test_phase_date_mistakes_are_config_errors(phases: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(Section(tomllib.loads(config(phases)), "t.toml"))
    assert expected in str(caught.value) and "by" in str(caught.value)
