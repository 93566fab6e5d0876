"""Pure migration logic: model matching, share, phase advance, trend fit, projection, risk, before/after."""

import datetime as dt

import pytest

from llmpulse.core.migration import (
    DAY,
    DEFAULT_PHASES,
    MigrationConfig,
    ModelTraffic,
    Phase,
    assess_risk,
    automatic_advances,
    compare_sides,
    fit_line,
    model_matches,
    model_side,
    project_share,
    traffic_split,
)

CFG = MigrationConfig(
    name="gpt-4.1",
    from_models=("gpt-4o", "gpt-4"),
    to_model="gpt-4.1",
    start=dt.date(2025, 1, 1),
    deadline=dt.date(2025, 1, 31),
)


@pytest.mark.parametrize(
    "model, pattern, expected",
    [
        ("gpt-4o", "gpt-4o", True),
        ("gpt-4o-2024-08-06", "gpt-4o", True),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet", True),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet", True),
        ("gpt-4o-mini", "gpt-4o", False),  # a different model, not a snapshot
        ("gpt-4.1", "gpt-4", False),
        ("gpt-4.1-mini", "gpt-4.1", False),
        ("openai/gpt-4o", "gpt-4o", True),  # OpenRouter's vendor prefix
        ("openai/gpt-4o", "anthropic/gpt-4o", False),
        ("gpt-4-turbo", "gpt-4*", True),  # globs when asked for
    ],
)
def test_model_matches(model, pattern, expected):
    assert model_matches(model, pattern) is expected


def test_model_side():
    assert model_side("gpt-4.1-2025-04-14", CFG) == "new"
    assert model_side("gpt-4", CFG) == "old"
    assert model_side("gpt-4o-2024-08-06", CFG) == "old"
    assert model_side("claude-3", CFG) is None


def test_share_counts_only_old_and_new():
    rows = [
        ModelTraffic("gpt-4o", 60, 6000),
        ModelTraffic("gpt-4", 20, 1000),
        ModelTraffic("gpt-4.1", 20, 3000),
        ModelTraffic("claude-3", 500, 99999),
    ]
    split = traffic_split(rows, CFG)
    assert (split.old_requests, split.new_requests) == (80, 20)
    assert split.share_requests == pytest.approx(0.2)
    assert split.share_tokens == pytest.approx(3000 / 10000)
    assert traffic_split([ModelTraffic("claude-3", 5, 5)], CFG).share_requests is None


PH = DEFAULT_PHASES  # preparation 0, testing .05, rollout .5, full 1, completed 1


def test_automatic_advance_steps():
    assert automatic_advances(PH, 0, 0.01, 0, 100, DAY) == []
    assert automatic_advances(PH, 0, 0.05, 0, 100, DAY) == [1]
    # A jump straight to 60% passes through testing into rollout, each step recorded.
    assert automatic_advances(PH, 0, 0.6, 0, 100, DAY) == [1, 2]
    assert automatic_advances(PH, 1, 1.0, 0, 100, DAY) == [2, 3]
    assert automatic_advances(PH, 2, None, 0, 100, DAY) == []
    # Phases only go forward: a lower share never moves it back.
    assert automatic_advances(PH, 3, 0.1, 0, 100, DAY) == []


def test_completed_needs_full_share_held_for_a_window():
    # Just entered "full": not yet completed even at 100%.
    assert automatic_advances(PH, 3, 1.0, entered_at=1000, now=1000 + 3600, window=DAY) == []
    assert automatic_advances(PH, 3, 1.0, entered_at=1000, now=1000 + DAY, window=DAY) == [4]
    # Reaching full in this very evaluation does not also complete it.
    assert automatic_advances(PH, 2, 1.0, entered_at=0, now=10 * DAY, window=DAY) == [3]
    assert automatic_advances(PH, 4, 1.0, 0, 10 * DAY, DAY) == []


def test_fit_line_exact_and_degenerate():
    slope, intercept = fit_line([(0, 1), (1, 3), (2, 5)])
    assert slope == pytest.approx(2) and intercept == pytest.approx(1)
    assert fit_line([(1, 1)]) is None
    assert fit_line([(1, 1), (1, 2)]) is None


def day(n: int) -> float:
    return CFG.start_ts + n * DAY


def test_projection_on_a_good_trend_is_on_track():
    # +5 points a day from day 0: reaches 100% around day 20, deadline is day 30.
    daily = [(day(i), 0.05 * i) for i in range(10)]
    now = day(10)
    p = project_share(daily, CFG, now, current_share=0.45)
    assert p.share_at_deadline == 1.0
    assert p.slope_per_day == pytest.approx(0.05)
    assert day(19) < p.reaches_target_at < day(21)
    assert assess_risk(CFG, 2, p.share_at_deadline, now) == "on track"


def test_projection_on_a_slow_trend_is_at_risk():
    # +1 point a day: about 30% by the deadline.
    daily = [(day(i), 0.01 * i) for i in range(10)]
    now = day(10)
    p = project_share(daily, CFG, now, current_share=0.09)
    assert p.share_at_deadline == pytest.approx(0.305, abs=0.01)
    assert assess_risk(CFG, 1, p.share_at_deadline, now) == "at risk"
    # A falling share never reaches the target.
    falling = project_share([(day(i), 0.5 - 0.02 * i) for i in range(10)], CFG, now, 0.3)
    assert falling.share_at_deadline == 0.0 and falling.reaches_target_at is None


def test_projection_with_one_day_uses_pace_since_start():
    now = day(10)
    p = project_share([(day(9), 0.5)], CFG, now, current_share=0.5)
    # 50% in 10 days: 100% by day 20, well before the day-31 deadline end.
    assert p.share_at_deadline == 1.0
    assert assess_risk(CFG, 2, p.share_at_deadline, now) == "on track"
    slow = project_share([], CFG, now, current_share=0.05)
    assert slow.share_at_deadline == pytest.approx(0.155, abs=0.01)
    assert project_share([], CFG, now, None).share_at_deadline is None


def test_risk_late_done_and_unmeasured():
    assert assess_risk(CFG, 4, 0.2, day(40)) == "done"
    assert assess_risk(CFG, 3, 1.0, CFG.deadline_ts + 1) == "late"
    assert assess_risk(CFG, 0, None, CFG.start_ts - 10) == "on track"  # not started yet
    assert assess_risk(CFG, 0, None, day(3)) == "at risk"  # started, nothing measured
    assert assess_risk(CFG, 2, 0.96, day(3)) == "on track"  # within tolerance


def test_before_after_cost_latency_errors():
    rows = [
        ModelTraffic("gpt-4o", 100, 100_000, cost_usd=1.0, success_rate=0.95, p95_ms=800),
        ModelTraffic("gpt-4", 100, 100_000, cost_usd=3.0, success_rate=0.99, p95_ms=1200),
        ModelTraffic("gpt-4.1", 50, 100_000, cost_usd=0.8, success_rate=1.0, p95_ms=600),
        ModelTraffic("other", 1000, 1, cost_usd=100.0, success_rate=0.0, p95_ms=1),
    ]
    before, after = compare_sides(rows, CFG)
    assert before.requests == 200 and before.tokens == 200_000
    assert before.cost_per_1k_tokens == pytest.approx(4.0 / 200)  # $0.02 per 1k
    assert before.p95_ms == pytest.approx(1000)
    assert before.error_rate == pytest.approx(0.03)
    assert after.cost_per_1k_tokens == pytest.approx(0.008)
    assert after.p95_ms == 600 and after.error_rate == 0.0
    # No new traffic yet: nothing to compare on that side; unknown prices give no cost figure.
    before, after = compare_sides([ModelTraffic("gpt-4", 3, 30, cost_usd=None, unknown_price_count=3)], CFG)
    assert after is None and before.cost_per_1k_tokens is None


def test_custom_phases_advance():
    phases = (Phase("off", 0.0), Phase("canary", 0.1), Phase("all", 1.0))
    assert automatic_advances(phases, 0, 0.2, 0, 1, DAY) == [1]
    assert automatic_advances(phases, 1, 1.0, 0, 1, DAY) == [2]
