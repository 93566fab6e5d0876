"""The database schema as named, forward-only migrations, applied in order at open.

Each feature owns one list below and only appends to it; a migration's name never changes once
released. All times are unix seconds (UTC) as REAL. No column ever holds an API key.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from llmpulse.core.usage import request_ids
from llmpulse.core.usage.pricing import NANO_USD
from llmpulse.core.usage.records import fill_attrs_keys


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str
    # Run after `sql`, in the same transaction, for a change SQL alone cannot make (a stored value
    # rewritten by Python code). Given the raw connection; must not COMMIT.
    then: Callable[[sqlite3.Connection], None] | None = None


CORE = [
    Migration(
        "0001_core",
        """
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
    """,
    ),
]

CORE.append(
    Migration(
        "0002_provider_last_error",
        """
    -- The latest failure per provider and when, kept as probes arrive, so the dashboard reads one row a
    -- provider every second instead of searching days of probe results for it.
    ALTER TABLE provider_state ADD COLUMN last_failure TEXT;
    ALTER TABLE provider_state ADD COLUMN last_failure_at REAL;
""",
    )
)

CORE.append(
    Migration(
        "0003_probe_windows",
        """
    -- Issue 14: the health window's aggregates per provider, moved as probes arrive (llmpulse.core.health_state),
    -- so a read costs one row per provider instead of every probe of the window. Empty at first: the next
    -- write of a provider rebuilds its row from the raw probes.
    CREATE TABLE probe_windows (
        provider_id   TEXT PRIMARY KEY,
        window_s      REAL NOT NULL,     -- the window length it was built for (another length: rebuilt)
        since         REAL NOT NULL,     -- covers probes with checked_at >= since ...
        last_at       REAL NOT NULL,     -- ... up to this write
        samples       INTEGER NOT NULL,  -- probes with a verdict (not unknown)
        errors        INTEGER NOT NULL,
        latency_hist  TEXT NOT NULL,     -- JSON {bucket: count}, log buckets (health_state.HIST_RATIO)
        p50_ms        REAL,
        p95_ms        REAL,
        series        TEXT NOT NULL,     -- JSON [[checked_at, latency_ms], ...], the newest 30
        rate_limit    TEXT,              -- JSON of the newest probe in the window that had one
        rate_limit_at REAL,
        balance       TEXT,
        balance_at    REAL
    );
    -- Per-minute probe summaries, kept long after raw probes are pruned: the charts' history.
    CREATE TABLE probe_minutes (
        provider_id TEXT NOT NULL,
        minute      REAL NOT NULL,       -- start of the minute, unix seconds
        probes      INTEGER NOT NULL,    -- with a verdict (not unknown)
        errors      INTEGER NOT NULL,
        latency_n   INTEGER NOT NULL,    -- probes that got an HTTP answer (their latency counts)
        latency_sum REAL NOT NULL,
        latency_max REAL NOT NULL,
        PRIMARY KEY (provider_id, minute)
    ) WITHOUT ROWID;
    CREATE INDEX probe_minutes_minute ON probe_minutes (minute);
    -- When the provider's latest status began (its run of probes with that status), kept as probes arrive.
    ALTER TABLE provider_state ADD COLUMN status_since REAL;
    INSERT INTO probe_minutes
        SELECT provider_id, CAST(checked_at / 60 AS INTEGER) * 60.0, COUNT(*),
               SUM(status = 'failed' OR error_kind IN ('rate_limited', 'overloaded')),
               SUM(latency_ms IS NOT NULL AND http_status),
               TOTAL(CASE WHEN latency_ms IS NOT NULL AND http_status THEN latency_ms END),
               COALESCE(MAX(CASE WHEN latency_ms IS NOT NULL AND http_status THEN latency_ms END), 0)
        FROM probe_results WHERE status != 'unknown'
        GROUP BY provider_id, CAST(checked_at / 60 AS INTEGER);
""",
    )
)

# Issue 3 (usage, cost, budgets) appends here.
USAGE: list[Migration] = [
    Migration(
        "0100_usage",
        """
        -- One row per LLM call. dedupe_key (request_id, else an imported line's hash) makes imports idempotent.
        CREATE TABLE usage_records (
            id                 INTEGER PRIMARY KEY,
            dedupe_key         TEXT,              -- NULL: a live call without request_id, never merged
            ts                 REAL NOT NULL,
            provider           TEXT NOT NULL,
            model              TEXT NOT NULL,
            input_tokens       INTEGER NOT NULL DEFAULT 0,
            output_tokens      INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            latency_ms         REAL,
            status             TEXT NOT NULL,
            error_kind         TEXT,
            is_fallback        INTEGER NOT NULL DEFAULT 0,
            fallback_from      TEXT,
            department         TEXT,
            agent              TEXT,
            user               TEXT,
            task_type          TEXT,
            category           TEXT,
            endpoint           TEXT,
            request_id         TEXT,
            cost_usd           REAL               -- NULL: price unknown (never a silent 0)
        );
        CREATE INDEX usage_records_ts ON usage_records (ts);
        -- Partial: live calls without a key cost the index nothing.
        CREATE UNIQUE INDEX usage_records_dedupe ON usage_records (dedupe_key) WHERE dedupe_key IS NOT NULL;

        -- Roll-ups kept as records arrive, so no dashboard or budget query scans raw records.
        -- grain: m (minute), h (hour), d (UTC day); dim: total, provider, model, provider_model,
        -- department, agent, user, task_type, fallback ("from>to"). l0..l15: latency counts in the
        -- fixed buckets of llmpulse.core.usage.rollup.LATENCY_BOUNDS_MS, for p95 without raw rows.
        CREATE TABLE usage_rollups (
            grain             TEXT NOT NULL,
            start             REAL NOT NULL,
            dim               TEXT NOT NULL,
            key               TEXT NOT NULL,
            requests          INTEGER NOT NULL DEFAULT 0,
            errors            INTEGER NOT NULL DEFAULT 0,
            fallbacks         INTEGER NOT NULL DEFAULT 0,
            input_tokens      INTEGER NOT NULL DEFAULT 0,
            output_tokens     INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd          REAL NOT NULL DEFAULT 0,
            unknown_price     INTEGER NOT NULL DEFAULT 0,
            l0                INTEGER NOT NULL DEFAULT 0,
            l1                INTEGER NOT NULL DEFAULT 0,
            l2                INTEGER NOT NULL DEFAULT 0,
            l3                INTEGER NOT NULL DEFAULT 0,
            l4                INTEGER NOT NULL DEFAULT 0,
            l5                INTEGER NOT NULL DEFAULT 0,
            l6                INTEGER NOT NULL DEFAULT 0,
            l7                INTEGER NOT NULL DEFAULT 0,
            l8                INTEGER NOT NULL DEFAULT 0,
            l9                INTEGER NOT NULL DEFAULT 0,
            l10               INTEGER NOT NULL DEFAULT 0,
            l11               INTEGER NOT NULL DEFAULT 0,
            l12               INTEGER NOT NULL DEFAULT 0,
            l13               INTEGER NOT NULL DEFAULT 0,
            l14               INTEGER NOT NULL DEFAULT 0,
            l15               INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (grain, dim, start, key)
        ) WITHOUT ROWID;
    """,
    ),
]

USAGE.append(
    Migration(
        "0190_billing_reports",
        """
    -- What providers report on their own bills (spend this month, or a balance), polled on a slow timer.
    CREATE TABLE billing_reports (
        id           INTEGER PRIMARY KEY,
        provider_id  TEXT NOT NULL,
        period_start REAL NOT NULL,
        period_end   REAL NOT NULL,
        reported_usd REAL,
        balance      REAL,
        currency     TEXT,
        fetched_at   REAL NOT NULL,
        error        TEXT               -- redacted
    );
    CREATE INDEX billing_reports_provider_time ON billing_reports (provider_id, fetched_at);
""",
    )
)

USAGE.append(
    Migration(
        "0191_usage_calls_attrs",
        """
    -- Records split in two: usage_calls (the numbers of each call) and usage_attrs (who and what: few
    -- distinct combinations shared by many calls). A call row binds 10 mostly numeric values instead of
    -- 21 mostly text ones: ingest ~2x faster, the file ~half the size. Text columns hold '' for "none"
    -- so UNIQUE matches; the usage_records view below gives the old shape (with NULLs) to readers.
    CREATE TABLE usage_attrs (
        id            INTEGER PRIMARY KEY,
        provider      TEXT NOT NULL,
        model         TEXT NOT NULL,
        status        TEXT NOT NULL,
        error_kind    TEXT NOT NULL,
        is_fallback   INTEGER NOT NULL,
        fallback_from TEXT NOT NULL,
        department    TEXT NOT NULL,
        agent         TEXT NOT NULL,
        user          TEXT NOT NULL,
        task_type     TEXT NOT NULL,
        category      TEXT NOT NULL,
        endpoint      TEXT NOT NULL,
        UNIQUE (provider, model, status, error_kind, is_fallback, fallback_from, department, agent, user,
                task_type, category, endpoint)
    );
    CREATE TABLE usage_calls (
        id                 INTEGER PRIMARY KEY,
        dedupe_key         TEXT,              -- request_id, else an imported line's hash; NULL: never merged
        ts                 REAL NOT NULL,
        attrs              INTEGER NOT NULL,  -- usage_attrs.id (no FOREIGN KEY: a lookup per insert; ingest resolves it)
        input_tokens       INTEGER NOT NULL,
        output_tokens      INTEGER NOT NULL,
        cache_read_tokens  INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        latency_ms         REAL,
        cost_usd           REAL,              -- NULL: price unknown (never a silent 0)
        request_id         TEXT
    );
    INSERT OR IGNORE INTO usage_attrs (provider, model, status, error_kind, is_fallback, fallback_from, department, agent, user, task_type, category, endpoint)
        SELECT provider, model, status, COALESCE(error_kind, ''), is_fallback, COALESCE(fallback_from, ''),
               COALESCE(department, ''), COALESCE(agent, ''), COALESCE(user, ''), COALESCE(task_type, ''),
               COALESCE(category, ''), COALESCE(endpoint, '')
        FROM usage_records;
    INSERT INTO usage_calls
        SELECT r.id, r.dedupe_key, r.ts, a.id, r.input_tokens, r.output_tokens, r.cache_read_tokens,
               r.cache_write_tokens, r.latency_ms, r.cost_usd, r.request_id
        FROM usage_records r JOIN usage_attrs a ON a.provider = r.provider AND a.model = r.model
            AND a.status = r.status AND a.error_kind = COALESCE(r.error_kind, '') AND a.is_fallback = r.is_fallback
            AND a.fallback_from = COALESCE(r.fallback_from, '') AND a.department = COALESCE(r.department, '')
            AND a.agent = COALESCE(r.agent, '') AND a.user = COALESCE(r.user, '')
            AND a.task_type = COALESCE(r.task_type, '') AND a.category = COALESCE(r.category, '')
            AND a.endpoint = COALESCE(r.endpoint, '');
    DROP TABLE usage_records;
    CREATE INDEX usage_calls_ts ON usage_calls (ts);
    CREATE UNIQUE INDEX usage_calls_dedupe ON usage_calls (dedupe_key) WHERE dedupe_key IS NOT NULL;
    CREATE VIEW usage_records AS
        SELECT c.id, c.dedupe_key, c.ts, a.provider, a.model, c.input_tokens, c.output_tokens, c.cache_read_tokens,
               c.cache_write_tokens, c.latency_ms, a.status, NULLIF(a.error_kind, '') AS error_kind, a.is_fallback,
               NULLIF(a.fallback_from, '') AS fallback_from, NULLIF(a.department, '') AS department,
               NULLIF(a.agent, '') AS agent, NULLIF(a.user, '') AS user, NULLIF(a.task_type, '') AS task_type,
               NULLIF(a.category, '') AS category, NULLIF(a.endpoint, '') AS endpoint, c.request_id, c.cost_usd
        FROM usage_calls c JOIN usage_attrs a ON a.id = c.attrs;
""",
    )
)


def _category_backfill() -> str:
    """Hour and day roll-ups by category for the raw records already stored (new records are rolled up by
    category as they arrive). The latency buckets are the roll-ups' own, as they were at this migration:
    l0 holds latency <= 50 ms, l_i (bound_{i-1}, bound_i], l15 above the last bound; no latency, no bucket."""
    bounds = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000, 30000)
    edges = [None, *bounds, None]
    hist = ", ".join(
        "TOTAL(latency_ms IS NOT NULL"
        + (f" AND latency_ms > {lo}" if lo is not None else "")
        + (f" AND latency_ms <= {hi}" if hi is not None else "")
        + f") AS l{i}"
        for i, (lo, hi) in enumerate(itertools.pairwise(edges))
    )
    cols = ", ".join(f"l{i}" for i in range(len(bounds) + 1))
    return "\n".join(
        f"""INSERT INTO usage_rollups (grain, start, dim, key, requests, errors, fallbacks, input_tokens,
            output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, unknown_price, {cols})
        SELECT '{grain}', ts - ts % {width}, 'category', category, COUNT(*), TOTAL(status = 'error'),
            TOTAL(is_fallback), TOTAL(input_tokens), TOTAL(output_tokens), TOTAL(cache_read_tokens),
            TOTAL(cache_write_tokens), TOTAL(cost_usd), TOTAL(cost_usd IS NULL), {hist}
        FROM usage_records WHERE category IS NOT NULL GROUP BY 2, 4
        ON CONFLICT (grain, dim, start, key) DO NOTHING;"""
        for grain, width in (("h", 3600), ("d", 86400))
    )


USAGE.append(Migration("0192_category_rollups", _category_backfill()))

USAGE.append(
    Migration(
        "0193_provider_usage",
        """
    -- Usage as the providers' own usage APIs report it (OpenAI organization usage, Anthropic usage
    -- report): one row per time bucket and group, replaced when a re-pull finds it changed (late data),
    -- so pulling again never counts twice. '' for "not grouped by this".
    CREATE TABLE provider_usage (
        provider_id        TEXT NOT NULL,
        bucket_start       REAL NOT NULL,
        bucket_width       REAL NOT NULL,   -- seconds: 60, 3600 or 86400
        project            TEXT NOT NULL,   -- OpenAI project_id, Anthropic workspace_id
        api_key            TEXT NOT NULL,   -- the provider's API key id (never the key)
        model              TEXT NOT NULL,
        requests           INTEGER,         -- NULL where the provider does not say (Anthropic)
        input_tokens       INTEGER NOT NULL, -- all prompt tokens, cached ones included
        output_tokens      INTEGER NOT NULL,
        cache_read_tokens  INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        cost_usd           REAL,            -- priced like a record; NULL: price unknown
        department         TEXT,            -- from [usage_api.<provider>] projects / api_keys
        agent              TEXT,
        fetched_at         REAL NOT NULL,
        PRIMARY KEY (provider_id, bucket_width, bucket_start, project, api_key, model)
    );
    CREATE INDEX provider_usage_time ON provider_usage (bucket_start);
    CREATE TABLE provider_usage_pulls (
        provider_id  TEXT PRIMARY KEY,
        last_pull_at REAL NOT NULL,
        covered_from REAL NOT NULL,         -- the oldest bucket start pulled so far
        error        TEXT                   -- the last pull's error, redacted; NULL when it worked
    );
""",
    )
)

USAGE.append(
    Migration(
        "0195_usage_request_id_once",
        """
    -- Issue 14: a request id was stored twice (dedupe_key 'id:...' and request_id) and indexed once more.
    -- Records with one are now deduplicated by request_id's own unique index; dedupe_key keeps only the
    -- content hash of imported lines without an id.
    -- (Only the first row of a request id loses its key: an id stored twice under two key spellings by an
    -- older version keeps its second row as it is, so the new index can be built.)
    UPDATE usage_calls SET dedupe_key = NULL
        WHERE request_id IS NOT NULL AND dedupe_key IN ('id:' || request_id, request_id)
          AND id IN (SELECT MIN(id) FROM usage_calls WHERE request_id IS NOT NULL GROUP BY request_id);
    CREATE UNIQUE INDEX usage_calls_request ON usage_calls (request_id)
        WHERE dedupe_key IS NULL AND request_id IS NOT NULL;
""",
    )
)

USAGE.append(
    Migration(
        "0196_usage_reported_cost",
        """
    -- What the provider itself says a call cost (OpenRouter's usage.cost, or a cost_usd field in an imported
    -- line), kept beside our estimate (cost_usd) instead of being dropped. NULL: the provider said nothing.
    ALTER TABLE usage_calls ADD COLUMN reported_cost_usd REAL;
    -- Few calls carry one: the report's "provider-reported" line reads them by time through this index.
    CREATE INDEX usage_calls_reported_ts ON usage_calls (ts) WHERE reported_cost_usd IS NOT NULL;
    DROP VIEW usage_records;
    CREATE VIEW usage_records AS
        SELECT c.id, c.dedupe_key, c.ts, a.provider, a.model, c.input_tokens, c.output_tokens, c.cache_read_tokens,
               c.cache_write_tokens, c.latency_ms, a.status, NULLIF(a.error_kind, '') AS error_kind, a.is_fallback,
               NULLIF(a.fallback_from, '') AS fallback_from, NULLIF(a.department, '') AS department,
               NULLIF(a.agent, '') AS agent, NULLIF(a.user, '') AS user, NULLIF(a.task_type, '') AS task_type,
               NULLIF(a.category, '') AS category, NULLIF(a.endpoint, '') AS endpoint, c.request_id, c.cost_usd,
               c.reported_cost_usd
        FROM usage_calls c JOIN usage_attrs a ON a.id = c.attrs;
""",
    )
)

USAGE.append(
    Migration(
        "0197_usage_attrs_last_ts",
        """
    -- Issue 14: when each attribution was last used (the newest call of a batch that used it), so pruning
    -- can drop the ones no kept call refers to (they were never pruned: most rows on a short retention).
    ALTER TABLE usage_attrs ADD COLUMN last_ts REAL NOT NULL DEFAULT 0;
    UPDATE usage_attrs SET last_ts = used.newest
        FROM (SELECT attrs, MAX(ts) AS newest FROM usage_calls GROUP BY attrs) AS used
        WHERE used.attrs = usage_attrs.id;
""",
    )
)

USAGE.append(
    Migration(
        "0198_usage_rollup_grains",
        """
    -- Issue 14: roll-ups per dimension only at the grains it needs (llmpulse.core.usage.rollup.DIM_GRAINS).
    -- Who called (department, agent, user) is rolled up per UTC day: with varied attribution an hour of one
    -- user held about one call, so its row cost as much as the call. Minutes only for total and provider.
    -- Finer ranges come from the raw calls. Only rows the raw calls can give again are dropped (those
    -- starting at or after the oldest kept call); older ones stay as they are (exports still show them).
    DELETE FROM usage_rollups WHERE grain = 'm' AND dim NOT IN ('total', 'provider')
        AND start >= (SELECT MIN(ts) FROM usage_calls);
    DELETE FROM usage_rollups WHERE grain = 'h' AND dim IN ('department', 'agent', 'user')
        AND start >= (SELECT MIN(ts) FROM usage_calls);
""",
    )
)

USAGE.append(
    Migration(
        "0199_usage_pull_ok_at",
        """
    -- When a provider's usage report was last pulled successfully (NULL: never). last_pull_at could not
    -- tell: a failed first pull stored the backfill's start there. A provider whose budgets count its
    -- report and that was never pulled has an unknown spend, never $0.
    ALTER TABLE provider_usage_pulls ADD COLUMN ok_at REAL;
    UPDATE provider_usage_pulls SET ok_at = last_pull_at WHERE error IS NULL;
    UPDATE provider_usage_pulls SET ok_at = (
        SELECT MAX(fetched_at) FROM provider_usage u WHERE u.provider_id = provider_usage_pulls.provider_id
    ) WHERE error IS NOT NULL;
""",
    )
)


def _usage_records_view(cost: str) -> str:
    """The usage_records view since 0199b: request ids given back as text (llmpulse.core.usage.request_ids);
    `cost`: the SQL of its cost_usd column."""
    return f"""
    CREATE VIEW usage_records AS
        SELECT c.id, c.dedupe_key, c.ts, a.provider, a.model, c.input_tokens, c.output_tokens, c.cache_read_tokens,
               c.cache_write_tokens, c.latency_ms, a.status, NULLIF(a.error_kind, '') AS error_kind, a.is_fallback,
               NULLIF(a.fallback_from, '') AS fallback_from, NULLIF(a.department, '') AS department,
               NULLIF(a.agent, '') AS agent, NULLIF(a.user, '') AS user, NULLIF(a.task_type, '') AS task_type,
               NULLIF(a.category, '') AS category, NULLIF(a.endpoint, '') AS endpoint,
               {request_ids.decoded_sql("c.request_id")} AS request_id, {cost}, c.reported_cost_usd
        FROM usage_calls c JOIN usage_attrs a ON a.id = c.attrs;"""


USAGE_RECORDS_VIEW = _usage_records_view("c.cost_usd")  # 0199b and 0199c (released: never changes)

USAGE.append(
    Migration(
        "0199b_usage_request_id_shapes",
        request_ids.CREATE_SHAPES
        + f"""
    -- Issue 14: a request id is stored as a BLOB naming its shape (request_id_shapes) with its hex digits
    -- packed two to a byte (llmpulse.core.usage.request_ids), or as its text when it has no shape. The
    -- view gives the text back, exactly, in plain SQL. The ids already stored are converted by `then`.
    DROP VIEW usage_records;
{USAGE_RECORDS_VIEW}
""",
        then=request_ids.encode_stored_ids,
    )
)

USAGE.append(
    Migration(
        "0199c_usage_attrs_key",
        f"""
    -- Issue 14: usage_attrs' UNIQUE index over its twelve text columns repeated all of their text (as large
    -- as the table). An attribution is now found by one 64-bit digest of it (key, llmpulse.core.usage.records.
    -- attrs_key) with its fields compared: the same exactness, an eighth of the index. Ids are kept (the
    -- calls point at them); `then` fills the keys.
    DROP VIEW usage_records;
    CREATE TABLE usage_attrs_new (
        id            INTEGER PRIMARY KEY,
        key           INTEGER NOT NULL,
        provider      TEXT NOT NULL,
        model         TEXT NOT NULL,
        status        TEXT NOT NULL,
        error_kind    TEXT NOT NULL,
        is_fallback   INTEGER NOT NULL,
        fallback_from TEXT NOT NULL,
        department    TEXT NOT NULL,
        agent         TEXT NOT NULL,
        user          TEXT NOT NULL,
        task_type     TEXT NOT NULL,
        category      TEXT NOT NULL,
        endpoint      TEXT NOT NULL,
        last_ts       REAL NOT NULL DEFAULT 0
    );
    INSERT INTO usage_attrs_new
        SELECT id, 0, provider, model, status, error_kind, is_fallback, fallback_from, department, agent, user,
               task_type, category, endpoint, last_ts
        FROM usage_attrs;
    DROP TABLE usage_attrs;
    ALTER TABLE usage_attrs_new RENAME TO usage_attrs;
    CREATE INDEX usage_attrs_key ON usage_attrs (key);
{USAGE_RECORDS_VIEW}
""",
        then=fill_attrs_keys,
    )
)

USAGE.append(
    Migration(
        "0199d_usage_cost_nano",
        f"""
    -- Issue 14: a call's cost is kept as a whole number of nano-dollars (llmpulse.core.usage.pricing.NANO_USD),
    -- which SQLite stores in 3-4 bytes instead of an 8-byte float: a REAL column keeps a value without a
    -- fraction as an integer on disk (the column stays REAL: renaming is instant, a new type would copy the
    -- table). The view still gives dollars. Costs already stored are rounded to the nano-dollar.
    DROP VIEW usage_records;
    ALTER TABLE usage_calls RENAME COLUMN cost_usd TO cost_nusd;
    UPDATE usage_calls SET cost_nusd = round(cost_nusd * {NANO_USD}) WHERE cost_nusd IS NOT NULL;
{_usage_records_view(f"c.cost_nusd / {NANO_USD} AS cost_usd")}
""",
    )
)

# Issue 4 (alerts) appends here.
ALERTS: list[Migration] = [
    Migration(
        "0200_alerts",
        """
        -- One row per alert; a fingerprint (rule + subject) has at most one open (not resolved) alert.
        CREATE TABLE alerts (
            id               INTEGER PRIMARY KEY,
            fingerprint      TEXT NOT NULL,
            rule             TEXT NOT NULL,
            subject          TEXT NOT NULL,
            severity         TEXT NOT NULL,        -- info | warning | critical
            stage            INTEGER NOT NULL DEFAULT 0,   -- how far into its rule (e.g. budget threshold index)
            message          TEXT NOT NULL,        -- redacted
            state            TEXT NOT NULL,        -- firing | acknowledged | resolved
            silenced_until   REAL,
            silenced_by      TEXT,
            escalated        INTEGER NOT NULL DEFAULT 0,
            escalated_at     REAL,
            first_seen       REAL NOT NULL,
            last_seen        REAL NOT NULL,
            count            INTEGER NOT NULL DEFAULT 1,
            acked_by         TEXT,
            acked_at         REAL,
            note             TEXT,
            resolved_at      REAL,
            resolved_by      TEXT,
            last_notified_at REAL                  -- last firing/repeat notice, for repeat_interval
        );
        CREATE UNIQUE INDEX alerts_open_fingerprint ON alerts (fingerprint) WHERE state != 'resolved';
        CREATE INDEX alerts_state ON alerts (state, id);

        -- Every change to an alert with its time and who made it ("auto" for the engine).
        CREATE TABLE alert_transitions (
            id         INTEGER PRIMARY KEY,
            alert_id   INTEGER NOT NULL REFERENCES alerts (id),
            at         REAL NOT NULL,
            event      TEXT NOT NULL,   -- opened acknowledged resolved silenced unsilenced escalated severity delivery_failed
            from_state TEXT,
            to_state   TEXT NOT NULL,
            actor      TEXT NOT NULL,
            detail     TEXT
        );
        CREATE INDEX alert_transitions_alert ON alert_transitions (alert_id, at);

        -- Notices waiting to be sent: written in the same transaction as the change that causes them,
        -- so a resolve from the CLI is announced by the collector, and nothing is lost on a crash.
        CREATE TABLE alert_outbox (
            id            INTEGER PRIMARY KEY,
            alert_id      INTEGER NOT NULL REFERENCES alerts (id),
            event         TEXT NOT NULL,    -- firing repeat severity escalated resolved
            at            REAL NOT NULL,
            actor         TEXT NOT NULL,
            detail        TEXT,
            dispatched_at REAL
        );
        CREATE INDEX alert_outbox_pending ON alert_outbox (dispatched_at, id);

        -- One row per notice per channel. held = kept back by the channel's hourly rate limit.
        CREATE TABLE alert_deliveries (
            id             INTEGER PRIMARY KEY,
            outbox_id      INTEGER,
            alert_id       INTEGER NOT NULL,
            channel        TEXT NOT NULL,
            event          TEXT NOT NULL,
            status         TEXT NOT NULL,   -- sending | sent | failed | held
            attempts       INTEGER NOT NULL DEFAULT 0,
            created_at     REAL NOT NULL,
            updated_at     REAL NOT NULL,
            error          TEXT,            -- redacted reason of the last failed attempt
            held_reported  INTEGER NOT NULL DEFAULT 0,  -- held notice: id of the later delivery that counted it (0: not yet)
            held_back      INTEGER NOT NULL DEFAULT 0   -- how many held notices this message reported
        );
        CREATE INDEX alert_deliveries_channel_time ON alert_deliveries (channel, created_at);
        CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id, id);

        -- What each provider's latency usually is, sampled over a trailing window: the baseline
        -- the latency anomaly rule compares against.
        CREATE TABLE alert_latency_samples (
            provider_id TEXT NOT NULL,
            at          REAL NOT NULL,
            latency_ms  REAL NOT NULL
        );
        CREATE INDEX alert_latency_samples_provider ON alert_latency_samples (provider_id, at);
    """,
    ),
    Migration(
        "0201_alert_firing_since",
        """
        -- When the alert last started needing someone (opened, turned critical, or fired again after an
        -- ack): escalate_after counts from here, so a warning that turns critical gets the full grace period.
        ALTER TABLE alerts ADD COLUMN firing_since REAL;
        UPDATE alerts SET firing_since = first_seen;
    """,
    ),
    Migration(
        "0202_alert_closed_reason",
        """
        -- An alert closed because llmpulse stopped judging its subject (the provider was disabled): why,
        -- and by whom. Such an alert is resolved but did not recover; NULL for every other alert.
        ALTER TABLE alerts ADD COLUMN closed_reason TEXT;
    """,
    ),
]

# Issue 5 (migrations, failover) appends here.
MIGRATION: list[Migration] = [
    Migration(
        "0300_migration_phases",
        """
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
    """,
    ),
]

# Issue 6 (collector, TUI) appends here.
COLLECTOR: list[Migration] = [
    Migration(
        "0400_collector_status",
        """
        -- The last collector round per lease, so viewers (TUIs on the same database) can say how fresh
        -- the data is and who collects it.
        CREATE TABLE collector_status (
            lease           TEXT PRIMARY KEY,
            holder          TEXT NOT NULL,
            rounds          INTEGER NOT NULL DEFAULT 0,
            last_started_at REAL,
            last_finished_at REAL,
            last_duration_ms REAL,
            last_errors     TEXT               -- JSON list of "step: message", redacted
        );
    """,
    ),
]

COLLECTOR.append(
    Migration(
        "0410_provider_status_pages",
        """
        -- What each provider's own status page declared at its last good reading (JSON of
        -- llmpulse.core.statuspage.Declared), and the last failed reading's reason: a page that stops
        -- answering leaves the old reading shown as stale, never as recovered.
        CREATE TABLE provider_status_pages (
            provider_id TEXT PRIMARY KEY,
            url         TEXT NOT NULL,
            ok_at       REAL,
            declared    TEXT,
            error       TEXT,              -- redacted
            error_at    REAL
        );
    """,
    )
)

COLLECTOR.append(
    Migration(
        "0411_probe_latency_totals",
        """
        -- Every answered probe's latency, counted since the database began (llmpulse.core.metric_totals):
        -- GET /metrics' probe-duration histogram, which must never go down when raw probes are pruned.
        CREATE TABLE probe_latency_totals (
            provider_id TEXT PRIMARY KEY,
            count INTEGER NOT NULL DEFAULT 0,
            sum_s REAL NOT NULL DEFAULT 0,
            b0 INTEGER NOT NULL DEFAULT 0, b1 INTEGER NOT NULL DEFAULT 0, b2 INTEGER NOT NULL DEFAULT 0,
            b3 INTEGER NOT NULL DEFAULT 0, b4 INTEGER NOT NULL DEFAULT 0, b5 INTEGER NOT NULL DEFAULT 0,
            b6 INTEGER NOT NULL DEFAULT 0, b7 INTEGER NOT NULL DEFAULT 0, b8 INTEGER NOT NULL DEFAULT 0,
            b9 INTEGER NOT NULL DEFAULT 0, b10 INTEGER NOT NULL DEFAULT 0, b11 INTEGER NOT NULL DEFAULT 0,
            b12 INTEGER NOT NULL DEFAULT 0, b13 INTEGER NOT NULL DEFAULT 0, b14 INTEGER NOT NULL DEFAULT 0,
            b15 INTEGER NOT NULL DEFAULT 0
        );
    """,
    )
)

COLLECTOR.append(
    Migration(
        "0412_collector_sees",
        """
        -- Issue 18: only a process that can see a provider (has its key / base URL) judges it. A lease
        -- holder says how many providers it sees, so one that sees more takes collection over; the
        -- status row says which, so viewers can tell whose verdicts they show.
        ALTER TABLE leases ADD COLUMN sees INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE collector_status ADD COLUMN sees TEXT;   -- JSON list of the provider ids it judges
    """,
    )
)

COLLECTOR.append(
    Migration(
        "0413_provider_traffic",
        """
        -- The health window's real traffic per provider as the collector's last round saw it
        -- (llmpulse.core.usage.traffic_window): viewers, `status` and the dashboard read these rows
        -- instead of reading the window's calls again. p50/p95 are exact nearest ranks over the same calls
        -- as the counts. traffic_published says that (and when) a collector published at all: no row
        -- there, a viewer reads the roll-ups itself (and says when that is an estimate).
        CREATE TABLE provider_traffic (
            provider_id TEXT PRIMARY KEY,
            requests    INTEGER NOT NULL,
            errors      INTEGER NOT NULL,
            fallbacks   INTEGER NOT NULL,
            p50_ms      REAL,
            p95_ms      REAL,
            p95_exact   INTEGER NOT NULL
        );
        CREATE TABLE traffic_published (
            lease    TEXT PRIMARY KEY,
            at       REAL NOT NULL,       -- the window's end (the round's now)
            window_s REAL NOT NULL
        );
    """,
    )
)

MIGRATIONS: list[Migration] = CORE + USAGE + ALERTS + MIGRATION + COLLECTOR
