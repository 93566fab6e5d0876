"""Risk against the deadline, from the trend: a line fitted to the daily shares, projected to the deadline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from llmpulse.core.migration.config import DAY, MigrationConfig

# A projection this close to the target still counts as on track: a fitted line on noisy daily
# shares rarely lands exactly on 100%.
ON_TRACK_TOLERANCE = 0.05

# How a migration stands against its deadline.
Risk = Literal["on track", "at risk", "late", "done"]
RISKS: tuple[Risk, ...] = ("on track", "at risk", "late", "done")


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares (slope, intercept) of y on x; None with fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in points)
    slope = sxy / sxx
    return slope, my - slope * mx


@dataclass(frozen=True)
class Projection:
    share_at_deadline: float | None  # clipped to 0..1
    slope_per_day: float | None  # change of the share per day
    reaches_target_at: float | None  # unix time the line reaches the target; None if it never does
    points: int  # daily shares the line was fitted to


def project_share(
    daily: Sequence[tuple[float, float]], cfg: MigrationConfig, now: float, current_share: float | None
) -> Projection:
    """Project the share to the deadline from daily shares [(day_start_ts, share)].

    Two or more days: a least-squares line through the days' midpoints. One day or none but a current
    share: a straight line from zero at the start to the current share now (the pace so far).
    """
    target = cfg.target_share
    deadline = cfg.deadline_ts
    pts = [((ts + DAY / 2) / DAY, s) for ts, s in daily if s is not None]
    line = fit_line(pts)
    if line is None:
        if current_share is None or now <= cfg.start_ts:
            return Projection(None, None, None, len(pts))
        slope = current_share / ((now - cfg.start_ts) / DAY)
        line = (slope, current_share - slope * now / DAY)
    slope, intercept = line
    at_deadline = min(1.0, max(0.0, intercept + slope * deadline / DAY))
    reaches: float | None = None
    if slope > 0:
        reaches = (target - intercept) / slope * DAY
    elif intercept + slope * now / DAY >= target:
        reaches = now
    return Projection(at_deadline, slope, reaches, len(pts))


def assess_risk(cfg: MigrationConfig, phase_index: int, projected: float | None, now: float) -> Risk:
    """done (final phase), late (deadline passed without finishing), on track (the trend reaches the
    target by the deadline), else at risk — including no measured traffic after the start."""
    if phase_index >= len(cfg.phases) - 1:
        return "done"
    if now >= cfg.deadline_ts:
        return "late"
    if projected is None:
        return "on track" if now < cfg.start_ts else "at risk"
    return "on track" if projected >= cfg.target_share - ON_TRACK_TOLERANCE else "at risk"
