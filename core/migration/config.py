"""What a migration is, as the config file says: its models, dates and phases (the `[[migrations]]` tables).

Dates are whole UTC days; the deadline is the end of its day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from llmpulse.core.errors import LlmpulseError
from llmpulse.core.validate import Section

DAY = 86400.0

# The last phases share 1.0: "full" is all traffic on the new model, "completed" is the same share held
# for a whole window (the old model can be switched off).
DEFAULT_PHASES_SPEC: tuple[tuple[str, float], ...] = (
    ("preparation", 0.0),
    ("testing", 0.05),
    ("rollout", 0.5),
    ("full", 1.0),
    ("completed", 1.0),
)


class MigrationError(LlmpulseError, ValueError):
    """A migration asked for that does not exist, or a phase change that is not possible."""


@dataclass(frozen=True)
class Phase:
    name: str
    share: float  # share of requests on the new model that this phase stands for (0..1)
    by: dt.date | None = None  # the phase's own target date (end of that UTC day); None: only the deadline

    @property
    def by_ts(self) -> float | None:
        return None if self.by is None else day_start(self.by) + DAY


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
        by = psec.date("by", None)
        psec.done()
        if by is not None:
            earlier = [p.by for p in phases if p.by is not None]
            if earlier and by < earlier[-1]:
                raise psec.error("by", by, f"a date on or after the previous phase's {earlier[-1]} (phases go forward)")
        if not name.strip():
            raise psec.error("name", name, "a non-empty phase name")
        if any(p.name == name for p in phases):
            raise psec.error("name", name, "a phase name not used before in this migration")
        if phases and share < phases[-1].share:
            raise psec.error(
                "share", share, f"a share >= the previous phase's {phases[-1].share:g} (phases go forward)"
            )
        phases.append(Phase(name, share, by))
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
        for i, phase in enumerate(phases):
            if phase.by is not None and not start <= phase.by <= deadline:
                key = f"phases[{i}].by"
                raise sec.error(key, phase.by, f"a date from start ({start}) to the deadline ({deadline})")
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


class HasMigrations(Protocol):
    """A loaded Config, or anything else that carries its `[[migrations]]`."""

    @property
    def migrations(self) -> Sequence[MigrationConfig]: ...


# Where the functions below find the configured migrations: a Config, a plain list, or nothing.
MigrationSource = HasMigrations | Sequence[MigrationConfig] | None


def migration_configs(cfg: MigrationSource) -> list[MigrationConfig]:
    """Accept a Config (cfg.migrations) or a plain list of MigrationConfig."""
    if cfg is None:
        return []
    if isinstance(cfg, (list, tuple)):
        return list(cfg)
    assert not isinstance(cfg, Sequence)
    return list(cfg.migrations or [])


def find_config(cfg: MigrationSource, name: str) -> MigrationConfig:
    configs = migration_configs(cfg)
    for m in configs:
        if m.name == name:
            return m
    known = ", ".join(m.name for m in configs) or "none configured ([[migrations]] in the config file)"
    raise MigrationError(f"unknown migration {name!r}; known: {known}")
