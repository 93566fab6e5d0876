"""Model migrations: how far the move from old models to a new one has come, measured from real traffic.

Progress is measured, not declared: the share of requests (and of tokens) in a trailing window that went
to the target model, out of old + new. A migration walks through phases, each with the share it stands
for; it advances on its own when the measured share reaches the next phase's share, or by hand
(`llmpulse migration advance NAME`). Every phase change is stored with its time and cause.

Risk against the deadline comes from the trend: a line fitted to the daily shares, projected to the
deadline. Dates are whole UTC days; the deadline is the end of its day.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmpulse.core.durations import format_duration
from llmpulse.core.store import Store
from llmpulse.core.validate import Section

DAY = 86400.0

# The last phases share 1.0: "full" is all traffic on the new model, "completed" is the same share held
# for a whole window (the old model can be switched off).
DEFAULT_PHASES_SPEC = (("preparation", 0.0), ("testing", 0.05), ("rollout", 0.5), ("full", 1.0), ("completed", 1.0))

# A projection this close to the target still counts as on track: a fitted line on noisy daily
# shares rarely lands exactly on 100%.
ON_TRACK_TOLERANCE = 0.05

RISKS = ("on track", "at risk", "late", "done")


class MigrationError(ValueError):
    """A migration asked for that does not exist, or a phase change that is not possible."""


# --------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Phase:
    name: str
    share: float  # share of requests on the new model that this phase stands for (0..1)


DEFAULT_PHASES: tuple[Phase, ...] = tuple(Phase(n, s) for n, s in DEFAULT_PHASES_SPEC)


@dataclass(frozen=True)
class MigrationConfig:
    name: str
    from_models: tuple[str, ...]
    to_model: str
    start: dt.date
    deadline: dt.date
    phases: tuple[Phase, ...] = DEFAULT_PHASES
    window: float = DAY  # trailing window for the traffic share
    compare: float = 7 * DAY  # window of the before/after comparison
    trend: float = 14 * DAY  # how many recent days the trend line is fitted to
    auto_advance: bool = True

    @property
    def start_ts(self) -> float:
        return day_start(self.start)

    @property
    def deadline_ts(self) -> float:
        """The end of the deadline day (UTC): work on the day itself still counts."""
        return day_start(self.deadline) + DAY

    @property
    def target_share(self) -> float:
        return max(p.share for p in self.phases)


def day_start(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def _parse_phases(sec: Section) -> tuple[Phase, ...]:
    raw = sec.raw("phases", None)
    if raw is None:
        return DEFAULT_PHASES
    expected = 'a list of at least two tables like { name = "rollout", share = 0.5 }'
    if not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(p, dict) for p in raw):
        raise sec.error("phases", raw, expected)
    phases: list[Phase] = []
    for i, item in enumerate(raw):
        psec = Section(item, sec.source, f"{sec.key('phases')}[{i}]")
        name = psec.string("name")
        share = psec.number("share", minimum=0.0, maximum=1.0)
        psec.done()
        if not name.strip():
            raise psec.error("name", name, "a non-empty phase name")
        if any(p.name == name for p in phases):
            raise psec.error("name", name, "a phase name not used before in this migration")
        if phases and share < phases[-1].share:
            raise psec.error(
                "share", share, f"a share >= the previous phase's {phases[-1].share:g} (phases go forward)"
            )
        phases.append(Phase(name, share))
    return tuple(phases)


def parse_config(root: Section) -> list[MigrationConfig]:
    """The `[[migrations]]` tables; raise ConfigError naming the key on the first thing wrong."""
    out: list[MigrationConfig] = []
    for sec in root.tables("migrations"):
        name = sec.string("name")
        if not name.strip():
            raise sec.error("name", name, "a non-empty name")
        if any(m.name == name for m in out):
            raise sec.error("name", name, "a name no other [[migrations]] table uses")
        from_models = sec.string_list("from")
        if not from_models or not all(m.strip() for m in from_models):
            raise sec.error("from", from_models, 'one or more old model names, e.g. ["gpt-4o", "gpt-4"]')
        to_model = sec.string("to")
        if not to_model.strip():
            raise sec.error("to", to_model, 'the new model name, e.g. "gpt-4.1"')
        if to_model in from_models:
            raise sec.error("to", to_model, "a model that is not also listed in `from`")
        start = sec.date("start")
        deadline = sec.date("deadline")
        if deadline < start:
            raise sec.error("deadline", deadline, f"a date on or after start ({start})")
        phases = _parse_phases(sec)
        cfg = MigrationConfig(
            name=name,
            from_models=tuple(from_models),
            to_model=to_model,
            start=start,
            deadline=deadline,
            phases=phases,
            window=sec.duration("window", DAY, minimum=60.0),
            compare=sec.duration("compare", 7 * DAY, minimum=60.0),
            trend=sec.duration("trend", 14 * DAY, minimum=2 * DAY),
            auto_advance=sec.boolean("auto_advance", True),
        )
        sec.done()
        out.append(cfg)
    return out


def migration_configs(cfg: Any) -> list[MigrationConfig]:
    """Accept a Config (cfg.migrations) or a plain list of MigrationConfig."""
    if cfg is None:
        return []
    if isinstance(cfg, (list, tuple)):
        return list(cfg)
    return list(getattr(cfg, "migrations", None) or [])


# ------------------------------------------------------------------------------------ model matching

# Providers publish dated snapshots ("gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022") and aliases
# ("-latest"); traffic to those is traffic to the model the config names.
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def model_matches(model: str, pattern: str) -> bool:
    """Whether recorded `model` is the configured `pattern`.

    Exact, or the same name with a dated snapshot suffix, or a glob when the pattern has * ? [.
    A vendor prefix on the recorded name (OpenRouter's "openai/gpt-4o") is ignored unless the pattern
    has one too.
    """
    if "/" in model and "/" not in pattern:
        model = model.rsplit("/", 1)[1]
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(model, pattern)
    if model == pattern:
        return True
    return model.startswith(pattern + "-") and bool(_SNAPSHOT_SUFFIX.fullmatch(model[len(pattern) :]))


def model_side(model: str, cfg: MigrationConfig) -> str | None:
    """ "new", "old" or None (traffic outside this migration)."""
    if model_matches(model, cfg.to_model):
        return "new"
    if any(model_matches(model, p) for p in cfg.from_models):
        return "old"
    return None


# ------------------------------------------------------------------------------- measured share (pure)


@dataclass(frozen=True)
class ModelTraffic:
    """What usage says about one model over some window (from the usage breakdown by model)."""

    model: str
    requests: int
    tokens: int
    cost_usd: float | None = None
    unknown_price_count: int = 0
    success_rate: float | None = None
    p95_ms: float | None = None


@dataclass(frozen=True)
class TrafficSplit:
    old_requests: int
    new_requests: int
    old_tokens: int
    new_tokens: int

    @property
    def share_requests(self) -> float | None:
        total = self.old_requests + self.new_requests
        return self.new_requests / total if total else None

    @property
    def share_tokens(self) -> float | None:
        total = self.old_tokens + self.new_tokens
        return self.new_tokens / total if total else None


def traffic_split(rows: Iterable[ModelTraffic], cfg: MigrationConfig) -> TrafficSplit:
    old_r = new_r = old_t = new_t = 0
    for row in rows:
        side = model_side(row.model, cfg)
        if side == "new":
            new_r += row.requests
            new_t += row.tokens
        elif side == "old":
            old_r += row.requests
            old_t += row.tokens
    return TrafficSplit(old_r, new_r, old_t, new_t)


@dataclass(frozen=True)
class SideStats:
    """One side of the before/after comparison: the old models together, or the new one."""

    requests: int
    tokens: int
    cost_usd: float | None
    cost_per_1k_tokens: float | None  # None when no token or no known price
    p95_ms: float | None
    error_rate: float | None
    unknown_price_count: int = 0

    def to_json(self) -> dict:
        return {
            "requests": self.requests,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "cost_per_1k_tokens": self.cost_per_1k_tokens,
            "p95_ms": self.p95_ms,
            "error_rate": self.error_rate,
            "unknown_price_count": self.unknown_price_count,
        }


def side_stats(rows: Sequence[ModelTraffic]) -> SideStats | None:
    """Combine several models into one side. None when the side had no traffic.

    A roll-up cannot split tokens into priced and unpriced, so the cost per 1k tokens includes the
    unpriced requests' tokens (reported beside it as unknown_price_count); a side whose every request had
    an unknown price has no cost figure at all.
    p95 of several models is approximated by the request-weighted mean of their p95s (exact per model,
    close enough across a few models to compare old against new).
    """
    requests = sum(r.requests for r in rows)
    if requests == 0:
        return None
    tokens = sum(r.tokens for r in rows)
    unknown = sum(r.unknown_price_count for r in rows)
    priced = [r for r in rows if r.cost_usd is not None]
    cost = sum(r.cost_usd for r in priced) if priced else None
    if cost is not None and unknown >= requests:
        cost = None
    cost_per_1k = cost / tokens * 1000.0 if cost is not None and tokens else None
    with_p95 = [r for r in rows if r.p95_ms is not None and r.requests]
    weight = sum(r.requests for r in with_p95)
    p95 = sum(r.p95_ms * r.requests for r in with_p95) / weight if weight else None
    with_sr = [r for r in rows if r.success_rate is not None and r.requests]
    sr_weight = sum(r.requests for r in with_sr)
    error_rate = (sum((1.0 - r.success_rate) * r.requests for r in with_sr) / sr_weight) if sr_weight else None
    return SideStats(
        requests=requests,
        tokens=tokens,
        cost_usd=cost,
        cost_per_1k_tokens=cost_per_1k,
        p95_ms=p95,
        error_rate=error_rate,
        unknown_price_count=unknown,
    )


def compare_sides(rows: Iterable[ModelTraffic], cfg: MigrationConfig) -> tuple[SideStats | None, SideStats | None]:
    """(before, after): the old models against the new one."""
    old, new = [], []
    for row in rows:
        side = model_side(row.model, cfg)
        if side == "old":
            old.append(row)
        elif side == "new":
            new.append(row)
    return side_stats(old), side_stats(new)


# --------------------------------------------------------------------------------- phases (pure)


def phase_index_of(phases: Sequence[Phase], name: str | None, fallback_index: int = 0) -> int:
    for i, p in enumerate(phases):
        if p.name == name:
            return i
    return max(0, min(fallback_index, len(phases) - 1))


def automatic_advances(
    phases: Sequence[Phase], current: int, share: float | None, entered_at: float, now: float, window: float
) -> list[int]:
    """The phase indexes the migration moves through now, in order (empty: it stays).

    It moves on when the measured share reaches the next phase's share. A next phase with the same
    share as the current one (full -> completed) needs that share held for a whole window since the
    current phase began, so "completed" means the old model really saw no traffic for a window.
    Phases only go forward.
    """
    if share is None:
        return []
    out: list[int] = []
    i = current
    while i + 1 < len(phases):
        nxt = phases[i + 1]
        if share + 1e-9 < nxt.share:
            break
        if nxt.share <= phases[i].share and (i != current or now - entered_at < window):
            break
        i += 1
        out.append(i)
    return out


# ----------------------------------------------------------------------------------- trend (pure)


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


def assess_risk(cfg: MigrationConfig, phase_index: int, projected: float | None, now: float) -> str:
    """done (final phase), late (deadline passed without finishing), on track (the trend reaches the
    target by the deadline), else at risk — including no measured traffic after the start."""
    if phase_index >= len(cfg.phases) - 1:
        return "done"
    if now >= cfg.deadline_ts:
        return "late"
    if projected is None:
        return "on track" if now < cfg.start_ts else "at risk"
    return "on track" if projected >= cfg.target_share - ON_TRACK_TOLERANCE else "at risk"


# ------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class PhaseChange:
    at: float
    from_phase: str | None
    to_phase: str
    cause: str  # "automatic: ..." or "by hand: ..."
    share_requests: float | None = None

    def to_json(self) -> dict:
        return {
            "at": self.at,
            "from_phase": self.from_phase,
            "to_phase": self.to_phase,
            "cause": self.cause,
            "share_requests": self.share_requests,
        }


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
    risk: str  # on track | at risk | late | done
    projected_share_at_deadline: float | None
    trend_per_day: float | None
    projected_completion_at: float | None
    before: SideStats | None  # old models over the comparison window
    after: SideStats | None  # the new model over the same window
    compare_s: float
    history: list[PhaseChange] = field(default_factory=list)
    phase_since: float | None = None

    @property
    def next_phase(self) -> str | None:
        return self.phases[self.phase_index + 1] if self.phase_index + 1 < len(self.phases) else None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "from": list(self.from_models),
            "to": self.to_model,
            "start": self.start.isoformat(),
            "deadline": self.deadline.isoformat(),
            "phase": self.phase,
            "phase_index": self.phase_index,
            "phases": [{"name": n, "share": s} for n, s in zip(self.phases, self.phase_shares)],
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


# ------------------------------------------------------------------------------------- state (DB)


@dataclass(frozen=True)
class _State:
    index: int
    entered_at: float


async def _load_state(store: Store, cfg: MigrationConfig) -> _State:
    row = await store.fetchone("SELECT phase, phase_index, entered_at FROM migration_state WHERE name = ?", (cfg.name,))
    if row is None:
        return _State(0, cfg.start_ts)
    return _State(phase_index_of(cfg.phases, row["phase"], row["phase_index"]), row["entered_at"])


async def _write_change(
    store: Store, cfg: MigrationConfig, old: int | None, new: int, now: float, cause: str, share: float | None
) -> None:
    phase = cfg.phases[new]
    await store.execute(
        "INSERT INTO migration_state (name, phase, phase_index, entered_at, updated_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET phase = excluded.phase, phase_index = excluded.phase_index, "
        "entered_at = excluded.entered_at, updated_at = excluded.updated_at",
        (cfg.name, phase.name, new, now, now),
    )
    await store.execute(
        "INSERT INTO migration_events (name, at, from_phase, to_phase, cause, share_requests) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (cfg.name, now, cfg.phases[old].name if old is not None else None, phase.name, cause, share),
    )


async def phase_history(store: Store, name: str) -> list[PhaseChange]:
    rows = await store.fetchall(
        "SELECT at, from_phase, to_phase, cause, share_requests FROM migration_events WHERE name = ? ORDER BY at, id",
        (name,),
    )
    return [PhaseChange(r["at"], r["from_phase"], r["to_phase"], r["cause"], r["share_requests"]) for r in rows]


def find_config(cfg: Any, name: str) -> MigrationConfig:
    configs = migration_configs(cfg)
    for m in configs:
        if m.name == name:
            return m
    known = ", ".join(m.name for m in configs) or "none configured ([[migrations]] in the config file)"
    raise MigrationError(f"unknown migration {name!r}; known: {known}")


async def advance(
    store: Store, name: str, now: float, cause: str = "by hand", *, cfg: Any = None, to_phase: str | None = None
) -> PhaseChange:
    """Move migration `name` one phase on (or to `to_phase`, forward or back) and record why.

    `cfg` is the Config (or list of MigrationConfig) that defines `name`. Runs under BEGIN IMMEDIATE so
    a collector advancing at the same moment cannot make the same move twice.
    """
    mcfg = find_config(cfg, name)
    async with store.transaction():
        state = await _load_state(store, mcfg)
        if to_phase is not None:
            names = [p.name for p in mcfg.phases]
            if to_phase not in names:
                raise MigrationError(f"migration {name!r} has no phase {to_phase!r}; phases: {', '.join(names)}")
            target = names.index(to_phase)
            if target == state.index:
                raise MigrationError(f"migration {name!r} is already in phase {to_phase!r}")
        else:
            target = state.index + 1
            if target >= len(mcfg.phases):
                raise MigrationError(
                    f"migration {name!r} is already in its final phase {mcfg.phases[state.index].name!r}"
                )
        await _write_change(store, mcfg, state.index, target, now, cause, None)
    return PhaseChange(now, mcfg.phases[state.index].name, mcfg.phases[target].name, cause)


async def _apply_automatic(store: Store, cfg: MigrationConfig, share: float | None, now: float) -> _State:
    """Record any automatic phase advances the share earns now; returns the state afterwards."""
    state = await _load_state(store, cfg)
    if not cfg.auto_advance or now < cfg.start_ts:
        return state
    steps = automatic_advances(cfg.phases, state.index, share, state.entered_at, now, cfg.window)
    if not steps:
        return state
    async with store.transaction():
        # Re-read under the write lock: another process may have moved it meanwhile.
        state = await _load_state(store, cfg)
        steps = automatic_advances(cfg.phases, state.index, share, state.entered_at, now, cfg.window)
        prev = state.index
        for i in steps:
            cause = (
                f"automatic: {share:.1%} of requests on {cfg.to_model} over the last "
                f"{_window_words(cfg.window)} reached {cfg.phases[i].name}'s {cfg.phases[i].share:.0%}"
            )
            await _write_change(store, cfg, prev, i, now, cause, share)
            prev = i
        if steps:
            state = _State(prev, now)
    return state


def _window_words(seconds: float) -> str:
    return format_duration(seconds)


# ------------------------------------------------------------------------------------- usage queries


def _tokens(row: Any) -> int:
    return int((getattr(row, "input_tokens", 0) or 0) + (getattr(row, "output_tokens", 0) or 0))


async def window_traffic(store: Store, since: float, until: float) -> list[ModelTraffic]:
    """Per-model traffic in [since, until) from the usage roll-ups (issue 3's breakdown by model)."""
    try:
        from llmpulse.core.usage import breakdown
    except ImportError:  # usage not built into this tree yet: no traffic measured
        return []
    rows = await breakdown(store, "model", since, until)
    return [
        ModelTraffic(
            model=str(r.key),
            requests=int(r.requests or 0),
            tokens=_tokens(r),
            cost_usd=r.cost_usd,
            unknown_price_count=int(r.unknown_price_count or 0),
            success_rate=r.success_rate,
            p95_ms=r.p95_ms,
        )
        for r in rows
    ]


def _day_ts(day: Any) -> float:
    if isinstance(day, (int, float)):
        return float(day)
    if isinstance(day, dt.datetime):
        return day.timestamp()
    if isinstance(day, dt.date):
        return day_start(day)
    return day_start(dt.date.fromisoformat(str(day)[:10]))


async def daily_shares(store: Store, cfg: MigrationConfig, since: float, until: float) -> list[tuple[float, float]]:
    """[(day_start_ts, share of requests on the new model)] for each day with old or new traffic."""
    try:
        from llmpulse.core.usage import daily_by
    except ImportError:
        return []
    per_day: dict[float, list[int]] = {}
    for day, key, requests, _, _ in await daily_by(store, "model", since, until):
        side = model_side(str(key), cfg)
        if side is None:
            continue
        counts = per_day.setdefault(_day_ts(day), [0, 0])
        counts[1 if side == "new" else 0] += int(requests or 0)
    return sorted((ts, new / (old + new)) for ts, (old, new) in per_day.items() if old + new)


async def migration_status(store: Store, cfg: MigrationConfig, now: float, *, record: bool = False) -> MigrationStatus:
    """Measure one migration now. Only the collector passes `record=True`: it decides and writes any
    automatic phase advance the share has earned. Everyone else reads the phase as stored — a dashboard
    or `migration` over SSH must never decide a phase (nor write at all)."""
    window = await window_traffic(store, now - cfg.window, now)
    split = traffic_split(window, cfg)
    if record:
        state = await _apply_automatic(store, cfg, split.share_requests, now)
    else:
        state = await _load_state(store, cfg)
    trend_since = max(cfg.start_ts, now - cfg.trend)
    daily = await daily_shares(store, cfg, trend_since, now) if now > cfg.start_ts else []
    projection = project_share(daily, cfg, now, split.share_requests)
    compare = window if cfg.compare == cfg.window else await window_traffic(store, now - cfg.compare, now)
    before, after = compare_sides(compare, cfg)
    history = await phase_history(store, cfg.name)
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
        risk=assess_risk(cfg, state.index, projection.share_at_deadline, now),
        projected_share_at_deadline=projection.share_at_deadline,
        trend_per_day=projection.slope_per_day,
        projected_completion_at=projection.reaches_target_at,
        before=before,
        after=after,
        compare_s=cfg.compare,
        history=history,
        phase_since=state.entered_at if history else None,
    )


async def migration_statuses(store: Store, cfg: Any, now: float, *, record: bool = False) -> list[MigrationStatus]:
    """Every configured migration, measured now; `record=True` (the collector only) also records
    automatic phase advances."""
    return [await migration_status(store, m, now, record=record) for m in migration_configs(cfg)]
