"""The stored phase of each migration and its history: every phase change with its time and cause.

A migration advances on its own when the measured share reaches the next phase's share, or by hand
(`llmpulse migration advance NAME`); both are written here under BEGIN IMMEDIATE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmpulse.core.durations import format_duration
from llmpulse.core.migration.config import MigrationConfig, MigrationError, MigrationSource, find_config
from llmpulse.core.migration.phases import automatic_advances, phase_index_of
from llmpulse.core.store import Store


@dataclass(frozen=True)
class PhaseChange:
    at: float
    from_phase: str | None
    to_phase: str
    cause: str  # "automatic: ..." or "by hand: ..."
    share_requests: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "from_phase": self.from_phase,
            "to_phase": self.to_phase,
            "cause": self.cause,
            "share_requests": self.share_requests,
        }


@dataclass(frozen=True)
class _State:
    index: int
    entered_at: float


async def load_state(store: Store, cfg: MigrationConfig) -> _State:
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


async def advance(
    store: Store,
    name: str,
    now: float,
    cause: str = "by hand",
    *,
    cfg: MigrationSource = None,
    to_phase: str | None = None,
) -> PhaseChange:
    """Move migration `name` one phase on (or to `to_phase`, forward or back) and record why.

    `cfg` is the Config (or list of MigrationConfig) that defines `name`. Runs under BEGIN IMMEDIATE so
    a collector advancing at the same moment cannot make the same move twice.
    """
    mcfg = find_config(cfg, name)
    async with store.transaction():
        state = await load_state(store, mcfg)
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


async def apply_automatic(store: Store, cfg: MigrationConfig, share: float | None, now: float) -> _State:
    """Record any automatic phase advances the share earns now; returns the state afterwards."""
    state = await load_state(store, cfg)
    if not cfg.auto_advance or now < cfg.start_ts:
        return state
    steps = automatic_advances(cfg.phases, state.index, share, state.entered_at, now, cfg.window)
    if not steps:
        return state
    async with store.transaction():
        # Re-read under the write lock: another process may have moved it meanwhile.
        state = await load_state(store, cfg)
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
