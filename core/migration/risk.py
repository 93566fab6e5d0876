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
    intercept: float | None = None  # the fitted line: share = intercept + slope_per_day * t / DAY

    def reaches(self, share: float, now: float) -> float | None:
        """When the line reaches `share` (now if it already has); None if it never does."""
        if self.slope_per_day is None or self.intercept is None:
            return None
        if self.intercept + self.slope_per_day * now / DAY >= share:
            return now
        if self.slope_per_day <= 0:
            return None
        return (share - self.intercept) / self.slope_per_day * DAY


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
    return Projection(at_deadline, slope, reaches, len(pts), intercept)


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


@dataclass(frozen=True)
class PhaseTarget:
    """One phase against its own date: reached (on time or late), or on track / at risk / late."""

    name: str
    share: float
    by: str  # ISO date
    state: Literal["reached", "on track", "at risk", "late"]
    reached_at: float | None  # when the migration entered it, if the history says
    late_by_days: float | None  # reached after its date, or still not reached past it

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def phase_targets(
    cfg: MigrationConfig, phase_index: int, reached_at: dict[str, float], projection: Projection, now: float
) -> list[PhaseTarget]:
    """Each phase that has a `by` date, judged against it: a phase not reached by the end of its day is
    late; one whose trend line reaches its share after that day is at risk; else on track."""
    out: list[PhaseTarget] = []
    for i, phase in enumerate(cfg.phases):
        if phase.by is None or phase.by_ts is None:
            continue
        due = phase.by_ts
        at = reached_at.get(phase.name)
        if i <= phase_index:
            late = None if at is None or at <= due else (at - due) / DAY
            out.append(PhaseTarget(phase.name, phase.share, phase.by.isoformat(), "reached", at, late))
        elif now >= due:
            out.append(PhaseTarget(phase.name, phase.share, phase.by.isoformat(), "late", None, (now - due) / DAY))
        else:
            when = projection.reaches(phase.share, now)
            state: Literal["on track", "at risk"] = "on track" if when is not None and when <= due else "at risk"
            out.append(PhaseTarget(phase.name, phase.share, phase.by.isoformat(), state, None, None))
    return out


def overall_risk(deadline_risk: Risk, targets: Sequence[PhaseTarget]) -> Risk:
    """The deadline's risk, or "at risk" when a phase misses (or will miss) its own date: the migration
    is behind its plan, though only the deadline passing makes the whole of it late."""
    if deadline_risk in ("done", "late"):
        return deadline_risk
    if any(t.state in ("at risk", "late") for t in targets):
        return "at risk"
    return deadline_risk


def behind_phase(targets: Sequence[PhaseTarget]) -> PhaseTarget | None:
    """The first phase that is late, else the first at risk: the one a risk alert names."""
    for wanted in ("late", "at risk"):
        for t in targets:
            if t.state == wanted:
                return t
    return None
