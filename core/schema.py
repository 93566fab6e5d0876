"""The database schema as named, forward-only migrations, applied in order at open.

Each feature owns one list below and only appends to it; a migration's name never changes once
released. All times are unix seconds (UTC) as REAL. No column ever holds an API key.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str


CORE = [
    Migration("0001_core", """
        CREATE TABLE probe_results (
            id           INTEGER PRIMARY KEY,
            provider_id  TEXT NOT NULL,
            checked_at   REAL NOT NULL,
            status       TEXT NOT NULL,        -- healthy | degraded | failed | unknown
            error_kind   TEXT,
            error        TEXT,                 -- redacted
            latency_ms   REAL,
            http_status  INTEGER,
            rate_limit   TEXT,                 -- JSON
            balance      TEXT                  -- JSON
        );
        CREATE INDEX probe_results_provider_time ON probe_results (provider_id, checked_at);
        CREATE INDEX probe_results_time ON probe_results (checked_at);

        -- Latest judgement per provider, and the circuit breaker, so both survive restarts.
        CREATE TABLE provider_state (
            provider_id          TEXT PRIMARY KEY,
            circuit              TEXT NOT NULL DEFAULT 'closed',   -- closed | open | half_open
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            opened_at            REAL,
            last_status          TEXT,
            last_error_kind      TEXT,
            last_error           TEXT,
            last_checked_at      REAL,
            last_success_at      REAL,
            enabled_override     INTEGER,      -- NULL: config decides; 0/1 set by `providers enable/disable`
            updated_at           REAL NOT NULL
        );

        -- Named leases: exactly one process runs the collector for a database.
        CREATE TABLE leases (
            name        TEXT PRIMARY KEY,
            holder      TEXT NOT NULL,
            acquired_at REAL NOT NULL,
            expires_at  REAL NOT NULL
        );
    """),
]

# Issue 3 (usage, cost, budgets) appends here.
USAGE: list[Migration] = []

# Issue 4 (alerts) appends here.
ALERTS: list[Migration] = []

# Issue 5 (migrations, failover) appends here.
MIGRATION: list[Migration] = [
    Migration("0300_migration_phases", """
        -- The phase each model migration is in; config defines the phases, this row says where it stands.
        CREATE TABLE migration_state (
            name        TEXT PRIMARY KEY,
            phase       TEXT NOT NULL,
            phase_index INTEGER NOT NULL,      -- used only if the config renamed the phase
            entered_at  REAL NOT NULL,
            updated_at  REAL NOT NULL
        );
        -- Every phase change, with its time and cause (automatic share reached, or by hand).
        CREATE TABLE migration_events (
            id             INTEGER PRIMARY KEY,
            name           TEXT NOT NULL,
            at             REAL NOT NULL,
            from_phase     TEXT,
            to_phase       TEXT NOT NULL,
            cause          TEXT NOT NULL,
            share_requests REAL
        );
        CREATE INDEX migration_events_name_time ON migration_events (name, at);
    """),
]

# Issue 6 (collector, TUI) appends here.
COLLECTOR: list[Migration] = []

MIGRATIONS: list[Migration] = CORE + USAGE + ALERTS + MIGRATION + COLLECTOR
