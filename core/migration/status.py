"""One migration measured now: phase, share, trend, risk and the before/after comparison together."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from llmpulse.core.migration.config import DAY, MigrationConfig, MigrationSource, migration_configs
from llmpulse.core.migration.risk import PhaseTarget, Risk, assess_risk, overall_risk, phase_targets, project_share
from llmpulse.core.migration.state import PhaseChange, apply_automatic, load_state, phase_history
from llmpulse.core.migration.traffic import SideStats, compare_sides, daily_shares, traffic_split, window_traffic
from llmpulse.core.store import Store


@dataclass
class MigrationStatus:
    name: str
    from_models: list[str]
    to_model: str
    start: dt.date
    deadline: dt.date
    phase: str
    phase_index: int
    phases: list[str]  # phase names in order
    phase_shares: list[float]  # the share each phase stands for
    share_requests: float | None  # 0..1 over the window; None: no old or new traffic
    share_tokens: float | None
    requests_in_window: int  # old + new
    window_s: float
    days_left: float  # negative once past the deadline
    risk: Risk  # on track | at risk | late | done
    projected_share_at_deadline: float | None
    trend_per_day: float | None
    projected_completion_at: float | None
    before: SideStats | None  # old models over the comparison window
    after: SideStats | None  # the new model over the same window
    compare_s: float
    history: list[PhaseChange] = field(default_factory=list)
    phase_since: float | None = None
    phase_targets: list[PhaseTarget] = field(default_factory=list)  # phases with their own `by` date

    @property
    def next_phase(self) -> str | None:
        return self.phases[self.phase_index + 1] if self.phase_index + 1 < len(self.phases) else None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "from": list(self.from_models),
            "to": self.to_model,
            "start": self.start.isoformat(),
            "deadline": self.deadline.isoformat(),
            "phase": self.phase,
            "phase_index": self.phase_index,
            "phases": [{"name": n, "share": s} for n, s in zip(self.phases, self.phase_shares, strict=True)],
            "phase_targets": [t.to_json() for t in self.phase_targets],
            "phase_since": self.phase_since,
            "next_phase": self.next_phase,
            "share_requests": self.share_requests,
            "share_tokens": self.share_tokens,
            "requests_in_window": self.requests_in_window,
            "window_s": self.window_s,
            "days_left": round(self.days_left, 3),
            "risk": self.risk,
            "projected_share_at_deadline": self.projected_share_at_deadline,
            "trend_per_day": self.trend_per_day,
            "projected_completion_at": self.projected_completion_at,
            "compare_s": self.compare_s,
            "before": self.before.to_json() if self.before else None,
            "after": self.after.to_json() if self.after else None,
            "history": [h.to_json() for h in self.history],
        }


async def migration_status(store: Store, cfg: MigrationConfig, now: float, *, record: bool = False) -> MigrationStatus:
    """Measure one migration now. Only the collector passes `record=True`: it decides and writes any
    automatic phase advance the share has earned. Everyone else reads the phase as stored — a dashboard
    or `migration` over SSH must never decide a phase (nor write at all)."""
    window = await window_traffic(store, now - cfg.window, now)
    split = traffic_split(window, cfg)
    if record:
        state = await apply_automatic(store, cfg, split.share_requests, now)
    else:
        state = await load_state(store, cfg)
    trend_since = max(cfg.start_ts, now - cfg.trend)
    daily = await daily_shares(store, cfg, trend_since, now) if now > cfg.start_ts else []
    projection = project_share(daily, cfg, now, split.share_requests)
    compare = window if cfg.compare == cfg.window else await window_traffic(store, now - cfg.compare, now)
    before, after = compare_sides(compare, cfg)
    history = await phase_history(store, cfg.name)
    reached_at: dict[str, float] = {}
    for change in history:
        reached_at.setdefault(change.to_phase, change.at)
    targets = phase_targets(cfg, state.index, reached_at, projection, now)
    return MigrationStatus(
        name=cfg.name,
        from_models=list(cfg.from_models),
        to_model=cfg.to_model,
        start=cfg.start,
        deadline=cfg.deadline,
        phase=cfg.phases[state.index].name,
        phase_index=state.index,
        phases=[p.name for p in cfg.phases],
        phase_shares=[p.share for p in cfg.phases],
        share_requests=split.share_requests,
        share_tokens=split.share_tokens,
        requests_in_window=split.old_requests + split.new_requests,
        window_s=cfg.window,
        days_left=(cfg.deadline_ts - now) / DAY,
        risk=overall_risk(assess_risk(cfg, state.index, projection.share_at_deadline, now), targets),
        projected_share_at_deadline=projection.share_at_deadline,
        trend_per_day=projection.slope_per_day,
        projected_completion_at=projection.reaches_target_at,
        before=before,
        after=after,
        compare_s=cfg.compare,
        history=history,
        phase_since=state.entered_at if history else None,
        phase_targets=targets,
    )


async def migration_statuses(
    store: Store, cfg: MigrationSource, now: float, *, record: bool = False
) -> list[MigrationStatus]:
    """Every configured migration, measured now; `record=True` (the collector only) also records
    automatic phase advances."""
    return [await migration_status(store, m, now, record=record) for m in migration_configs(cfg)]


async def migration_shares(store: Store, cfg: MigrationSource, now: float) -> dict[str, float | None]:
    """Each migration's share of requests on the new model over its window, from the roll-ups — without
    the trend, comparison and history a full status reads (GET /metrics)."""
    out: dict[str, float | None] = {}
    for m in migration_configs(cfg):
        out[m.name] = traffic_split(await window_traffic(store, now - m.window, now), m).share_requests
    return out
