"""Model migrations: how far the move from old models to a new one has come, measured from real traffic.

A migration walks through phases, each with the share of requests on the new model it stands for; it
advances on its own when the measured share reaches the next phase's share, or by hand
(`llmpulse migration advance NAME`). Every phase change is stored with its time and cause. Risk against
the deadline comes from the trend of the daily shares.

One concept per module:
    config    the `[[migrations]]` tables: models, dates, phases
    matching  which side of a migration a recorded model name is on
    traffic   measured share and the before/after comparison (and the usage queries behind them)
    phases    which phases the measured share earns (pure)
    risk      trend line, projection to the deadline, risk
    state     the stored phase, its history, advancing by hand or automatically
    status    one migration measured now, everything above together

The names the rest of llmpulse uses are re-exported here.
"""

from typing import TYPE_CHECKING, Any

from llmpulse.core.migration.config import (
    DAY,
    DEFAULT_PHASES,
    DEFAULT_PHASES_SPEC,
    MigrationConfig,
    MigrationError,
    MigrationSource,
    Phase,
    day_start,
    find_config,
    migration_configs,
    parse_config,
)

# The rest is imported on first use: measuring traffic pulls in the usage queries, which a command that
# only reads the config (every command loads it) should not pay for at start-up.
_LAZY = {
    "matching": ("Side", "model_matches", "model_side"),
    "phases": ("automatic_advances", "phase_index_of"),
    "risk": ("ON_TRACK_TOLERANCE", "RISKS", "Projection", "Risk", "assess_risk", "fit_line", "project_share"),
    "state": ("PhaseChange", "advance", "phase_history"),
    "status": ("MigrationStatus", "migration_status", "migration_statuses"),
    "traffic": (
        "ModelTraffic",
        "SideStats",
        "TrafficSplit",
        "compare_sides",
        "daily_shares",
        "side_stats",
        "traffic_split",
        "window_traffic",
    ),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}

if TYPE_CHECKING:
    from llmpulse.core.migration.matching import Side, model_matches, model_side
    from llmpulse.core.migration.phases import automatic_advances, phase_index_of
    from llmpulse.core.migration.risk import (
        ON_TRACK_TOLERANCE,
        RISKS,
        Projection,
        Risk,
        assess_risk,
        fit_line,
        project_share,
    )
    from llmpulse.core.migration.state import PhaseChange, advance, phase_history
    from llmpulse.core.migration.status import MigrationStatus, migration_status, migration_statuses
    from llmpulse.core.migration.traffic import (
        ModelTraffic,
        SideStats,
        TrafficSplit,
        compare_sides,
        daily_shares,
        side_stats,
        traffic_split,
        window_traffic,
    )


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DAY",
    "DEFAULT_PHASES",
    "DEFAULT_PHASES_SPEC",
    "ON_TRACK_TOLERANCE",
    "RISKS",
    "MigrationConfig",
    "MigrationError",
    "MigrationSource",
    "MigrationStatus",
    "ModelTraffic",
    "Phase",
    "PhaseChange",
    "Projection",
    "Risk",
    "Side",
    "SideStats",
    "TrafficSplit",
    "advance",
    "assess_risk",
    "automatic_advances",
    "compare_sides",
    "daily_shares",
    "day_start",
    "find_config",
    "fit_line",
    "migration_configs",
    "migration_status",
    "migration_statuses",
    "model_matches",
    "model_side",
    "parse_config",
    "phase_history",
    "phase_index_of",
    "project_share",
    "side_stats",
    "traffic_split",
    "window_traffic",
]
