"""The alert lifecycle: conditions in, alerts people can act on out.

A fingerprint (rule + subject) has at most one open alert: while its condition holds, the alert's
last-seen time and count move instead of a new alert opening. States: firing → acknowledged (who,
when, note; stops repeats) → resolved (automatically when the condition clears, or by hand). A trigger
after resolve opens a new alert. An alert about a provider someone disables is *closed*: resolved with
the reason ("provider disabled by alice (llmpulse providers disable)") and a `closed` notice, never the
`resolved` one that tells on-call the provider recovered — nothing judges it any more, so nobody knows.
Enabled again, it is judged afresh: a failure still there opens a new alert. Silence hides an alert's notices for a while without hiding the alert,
and its resolved notice is still sent. Critical alerts not acknowledged within `escalate_after` are
escalated; unacknowledged firing alerts are re-announced every `repeat_interval`.

Every change is one BEGIN IMMEDIATE transaction that checks the state it changes, records a transition
(time and actor), and queues its notice in `alert_outbox` — so two processes acking the same alert
cannot both win, and a resolve typed in the CLI is announced by whichever process runs the notifier.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from llmpulse.core.alerts import SEVERITY_RANK
from llmpulse.core.alerts.config import AlertsConfig, alerts_config
from llmpulse.core.alerts.rules import PROVIDER_RULES, Condition
from llmpulse.core.clock import SYSTEM_CLOCK, Clock
from llmpulse.core.durations import format_duration
from llmpulse.core.errors import LlmpulseError
from llmpulse.core.redact import redact
from llmpulse.core.store import Store
from llmpulse.core.vocabulary import AlertState, Severity

log = logging.getLogger(__name__)

ALERT_COLUMNS = (
    "id",
    "fingerprint",
    "rule",
    "subject",
    "severity",
    "stage",
    "message",
    "state",
    "silenced_until",
    "silenced_by",
    "escalated",
    "escalated_at",
    "first_seen",
    "last_seen",
    "count",
    "acked_by",
    "acked_at",
    "note",
    "resolved_at",
    "resolved_by",
    "last_notified_at",
    "firing_since",
    "closed_reason",
)

OPEN_ALERTS_SQL = f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts WHERE state != 'resolved' ORDER BY id"


class AlertError(LlmpulseError):
    """An action on an alert that cannot be done; the message says why, in one line."""


class AlertNotFound(AlertError):
    pass


class AlertStateError(AlertError):
    pass


@dataclass
class Alert:
    id: int
    fingerprint: str
    rule: str
    subject: str
    severity: Severity
    stage: int
    message: str
    state: AlertState
    silenced_until: float | None
    silenced_by: str | None
    escalated: bool
    escalated_at: float | None
    first_seen: float
    last_seen: float
    count: int
    acked_by: str | None
    acked_at: float | None
    note: str | None
    resolved_at: float | None
    resolved_by: str | None
    last_notified_at: float | None
    firing_since: float | None = None  # when it last started needing someone: escalate_after counts from here
    # Set when the alert was closed because llmpulse stopped judging its subject (the provider was
    # disabled): resolved, but not recovered — nobody knows how the provider is now.
    closed_reason: str | None = None

    def silenced(self, now: float) -> bool:
        return self.silenced_until is not None and self.silenced_until > now

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Transition:
    id: int
    alert_id: int
    at: float
    event: str
    from_state: AlertState | None
    to_state: AlertState
    actor: str
    detail: str | None

    @property
    def change(self) -> str:
        """What happened, in words: "escalated", "delivery failed", "acknowledged (firing → acknowledged)".
        Events that leave the state as it was (escalated, delivery failed, silenced) are named by the
        event, never shown as "firing → firing"."""
        what = self.event.replace("_", " ")
        if self.from_state and self.from_state != self.to_state:
            return f"{what} ({self.from_state} → {self.to_state})"
        return what


@dataclass(frozen=True)
class AlertChange:
    """What a `process` round changed, for the daemon's log."""

    alert_id: int
    event: str
    fingerprint: str
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"alert #{self.alert_id} {self.event} [{self.severity}] {self.fingerprint}: {self.message}"


def _alert(row: Any) -> Alert:
    values = {c: row[c] for c in ALERT_COLUMNS}
    values["escalated"] = bool(values["escalated"])
    return Alert(**values)


class AlertEngine:
    def __init__(self, store: Store, cfg: Any = None, clock: Clock | None = None, notifier: Any = None):
        self.store = store
        self.cfg: AlertsConfig = alerts_config(cfg)
        self.clock = clock or SYSTEM_CLOCK
        self.notifier = notifier

    # -- reading -----------------------------------------------------------------------------------
    async def get(self, alert_id: int) -> Alert | None:
        row = await self.store.fetchone(f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts WHERE id = ?", (alert_id,))
        return _alert(row) if row else None

    async def open_alerts(self) -> list[Alert]:
        rows = await self.store.fetchall(OPEN_ALERTS_SQL)
        return [_alert(r) for r in rows]

    async def history(self, limit: int = 200) -> list[Alert]:
        rows = await self.store.fetchall(
            f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_alert(r) for r in rows]

    async def transitions(self, alert_id: int) -> list[Transition]:
        rows = await self.store.fetchall(
            "SELECT id, alert_id, at, event, from_state, to_state, actor, detail "
            "FROM alert_transitions WHERE alert_id = ? ORDER BY at, id",
            (alert_id,),
        )
        return [Transition(*tuple(r)) for r in rows]

    async def deliveries(self, alert_id: int) -> list[Any]:
        return await self.store.fetchall(
            "SELECT channel, event, status, attempts, error, updated_at "
            "FROM alert_deliveries WHERE alert_id = ? ORDER BY id",
            (alert_id,),
        )

    # -- the rules' verdicts -----------------------------------------------------------------------
    async def process(self, conditions: Sequence[Condition], covered: Iterable[str] | None = None) -> list[AlertChange]:
        """Open, update and auto-resolve alerts from this round's conditions; escalate and repeat.
        `covered`: the rules judged this round (default: every rule seen in `conditions` plus all
        rules of open alerts), or single "rule:subject" fingerprints — only their alerts may resolve for
        lack of a condition."""
        now = self.clock.now()
        changes: list[AlertChange] = []
        by_fp = {c.fingerprint: c for c in conditions}
        async with self.store.transaction() as conn:
            async with conn.execute(OPEN_ALERTS_SQL) as cur:
                open_by_fp = {r["fingerprint"]: _alert(r) for r in await cur.fetchall()}
            judged = (
                set(covered)
                if covered is not None
                else {c.rule for c in conditions} | {a.rule for a in open_by_fp.values()}
            )
            for fp, cond in by_fp.items():
                message = redact(cond.message) or ""
                alert = open_by_fp.get(fp)
                if alert is None:
                    cur = await conn.execute(
                        "INSERT INTO alerts (fingerprint, rule, subject, severity, stage, message, state, first_seen, "
                        "last_seen, count, last_notified_at, firing_since) "
                        "VALUES (?, ?, ?, ?, ?, ?, 'firing', ?, ?, 1, ?, ?)",
                        (fp, cond.rule, cond.subject, cond.severity, cond.stage, message, now, now, now, now),
                    )
                    alert_id = cur.lastrowid
                    assert alert_id is not None  # sqlite3 sets it on every INSERT
                    await self._transition(conn, alert_id, now, "opened", None, "firing", "auto", message)
                    await self._notice(conn, alert_id, "firing", now, "auto", message)
                    changes.append(AlertChange(alert_id, "opened", fp, cond.severity, message))
                    continue
                worse = (SEVERITY_RANK[cond.severity], cond.stage) > (SEVERITY_RANK[alert.severity], alert.stage)
                if worse:
                    # Worse than what was acknowledged: it needs someone again. The escalation clock restarts
                    # when it fires again after an ack or moves up a severity (not for a step within one).
                    restart = alert.state != "firing" or cond.severity != alert.severity
                    since = now if restart or alert.firing_since is None else alert.firing_since
                    await conn.execute(
                        "UPDATE alerts SET severity = ?, stage = ?, message = ?, last_seen = ?, count = count + 1, "
                        "state = 'firing', acked_by = NULL, acked_at = NULL, last_notified_at = ?, firing_since = ? "
                        "WHERE id = ?",
                        (cond.severity, cond.stage, message, now, now, since, alert.id),
                    )
                    await self._transition(
                        conn,
                        alert.id,
                        now,
                        "severity",
                        alert.state,
                        "firing",
                        "auto",
                        f"{alert.severity} -> {cond.severity}: {message}",
                    )
                    await self._notice(conn, alert.id, "severity", now, "auto", message)
                    changes.append(AlertChange(alert.id, "worse", fp, cond.severity, message))
                else:
                    await conn.execute(
                        "UPDATE alerts SET message = ?, last_seen = ?, count = count + 1, "
                        "severity = ?, stage = ? WHERE id = ?",
                        (message, now, cond.severity, cond.stage, alert.id),
                    )
            for fp, alert in open_by_fp.items():
                if fp in by_fp or (alert.rule not in judged and fp not in judged):
                    continue
                await conn.execute(
                    "UPDATE alerts SET state = 'resolved', resolved_at = ?, resolved_by = 'auto' WHERE id = ?",
                    (now, alert.id),
                )
                await self._transition(
                    conn, alert.id, now, "resolved", alert.state, "resolved", "auto", "condition cleared"
                )
                # Sent even when silenced: the whole point of a silence is not missing the all-clear.
                await self._notice(conn, alert.id, "resolved", now, "auto", "condition cleared")
                changes.append(AlertChange(alert.id, "resolved", fp, alert.severity, "condition cleared"))
            changes += await self._timers(conn, now)
        await self._announce()
        return changes

    async def _timers(self, conn: Any, now: float) -> list[AlertChange]:
        changes: list[AlertChange] = []
        async with conn.execute(OPEN_ALERTS_SQL) as cur:
            alerts = [_alert(r) for r in await cur.fetchall()]
        for a in alerts:
            if a.silenced_until is not None and a.silenced_until <= now:
                await conn.execute("UPDATE alerts SET silenced_until = NULL, silenced_by = NULL WHERE id = ?", (a.id,))
                await self._transition(conn, a.id, now, "unsilenced", a.state, a.state, "auto", "silence expired")
                a.silenced_until = None
            if a.state != "firing":
                continue
            # A silence is someone saying "we know": escalation waits until it ends (or is lifted).
            since = a.firing_since if a.firing_since is not None else a.first_seen
            if (
                a.severity == "critical"
                and not a.escalated
                and not a.silenced(now)
                and now - since >= self.cfg.escalate_after
            ):
                await conn.execute("UPDATE alerts SET escalated = 1, escalated_at = ? WHERE id = ?", (now, a.id))
                detail = f"not acknowledged within {format_duration(self.cfg.escalate_after)}"
                await self._transition(conn, a.id, now, "escalated", a.state, a.state, "auto", detail)
                await self._notice(conn, a.id, "escalated", now, "auto", detail)
                changes.append(AlertChange(a.id, "escalated", a.fingerprint, a.severity, a.message))
            elif (
                a.last_notified_at is not None
                and now - a.last_notified_at >= self.cfg.repeat_interval
                and not a.silenced(now)
            ):
                await conn.execute("UPDATE alerts SET last_notified_at = ? WHERE id = ?", (now, a.id))
                await self._notice(conn, a.id, "repeat", now, "auto", a.message)
                changes.append(AlertChange(a.id, "repeated", a.fingerprint, a.severity, a.message))
        return changes

    async def close_disabled(self, disabled: dict[str, str]) -> list[AlertChange]:
        """Close the open alerts about providers that are disabled (provider id -> who disabled it and
        where): nothing judges them any more. The collector calls it every round for the providers the
        config (or an override) disables; it reads first and writes only when there is something to close."""
        if not disabled:
            return []
        rules = sorted(PROVIDER_RULES)
        rows = await self.store.fetchall(
            f"SELECT DISTINCT subject FROM alerts WHERE state != 'resolved' AND rule IN ({', '.join('?' * len(rules))})",
            rules,
        )
        subjects = sorted({r["subject"] for r in rows} & set(disabled))
        if not subjects:
            return []
        changes: list[AlertChange] = []
        async with self.store.transaction() as conn:
            for pid in subjects:
                changes += await close_provider_alerts(conn, pid, self.clock.now(), disabled[pid])
        await self._announce()
        return changes

    # -- people's decisions ------------------------------------------------------------------------
    async def ack(self, alert_id: int, by: str, note: str | None = None) -> Alert:
        async with self.store.transaction() as conn:
            alert = await self._load(conn, alert_id)
            if alert.state != "firing":
                raise AlertStateError(self._why_not(alert, "acknowledged", "a firing alert"))
            now = self.clock.now()
            await conn.execute(
                "UPDATE alerts SET state = 'acknowledged', acked_by = ?, acked_at = ?, note = ? "
                "WHERE id = ? AND state = 'firing'",
                (by, now, note, alert_id),
            )
            await self._transition(conn, alert_id, now, "acknowledged", "firing", "acknowledged", by, note)
            # Only channels that mirror the lifecycle (PagerDuty acknowledge, an Alertmanager silence) act on it.
            await self._notice(conn, alert_id, "acknowledged", now, by, note)
        await self._announce()
        return await self.get(alert_id)  # type: ignore[return-value]

    async def resolve(self, alert_id: int, by: str, note: str | None = None) -> Alert:
        async with self.store.transaction() as conn:
            alert = await self._load(conn, alert_id)
            if alert.state == "resolved":
                raise AlertStateError(self._why_not(alert, "resolved", "an open alert"))
            now = self.clock.now()
            await conn.execute(
                "UPDATE alerts SET state = 'resolved', resolved_at = ?, resolved_by = ? WHERE id = ?",
                (now, by, alert_id),
            )
            await self._transition(conn, alert_id, now, "resolved", alert.state, "resolved", by, note)
            await self._notice(conn, alert_id, "resolved", now, by, note or f"resolved by {by}")
        await self._announce()
        return await self.get(alert_id)  # type: ignore[return-value]

    async def silence(self, alert_id: int, seconds: float, by: str) -> Alert:
        if seconds <= 0:
            raise AlertError(f"silence for {seconds:g}s: expected a positive duration like 30m or 2h")
        async with self.store.transaction() as conn:
            alert = await self._load(conn, alert_id)
            if alert.state == "resolved":
                raise AlertStateError(self._why_not(alert, "silenced", "an open alert"))
            now = self.clock.now()
            await conn.execute(
                "UPDATE alerts SET silenced_until = ?, silenced_by = ? WHERE id = ?", (now + seconds, by, alert_id)
            )
            await self._transition(
                conn, alert_id, now, "silenced", alert.state, alert.state, by, f"for {format_duration(seconds)}"
            )
            await self._notice(conn, alert_id, "silenced", now, by, f"for {format_duration(seconds)}")
        await self._announce()
        return await self.get(alert_id)  # type: ignore[return-value]

    async def unsilence(self, alert_id: int, by: str) -> Alert:
        async with self.store.transaction() as conn:
            alert = await self._load(conn, alert_id)
            now = self.clock.now()
            if not alert.silenced(now):
                raise AlertStateError(f"alert #{alert_id} is not silenced; nothing to unsilence")
            await conn.execute("UPDATE alerts SET silenced_until = NULL, silenced_by = NULL WHERE id = ?", (alert_id,))
            await self._transition(conn, alert_id, now, "unsilenced", alert.state, alert.state, by, None)
            await self._notice(conn, alert_id, "unsilenced", now, by, None)
        await self._announce()
        return await self.get(alert_id)  # type: ignore[return-value]

    # -- internals ---------------------------------------------------------------------------------
    async def _announce(self) -> None:
        """Hand queued notices to the notifier, when this engine has one (the collector's does). Without
        one (CLI, TUI) they wait in alert_outbox for the process that runs the collector."""
        if self.notifier is not None:
            try:
                await self.notifier.dispatch()
            except Exception as exc:  # the change is committed; the notices stay queued for the next dispatch
                log.warning("alert notices not dispatched yet: %s", redact(f"{type(exc).__name__}: {exc}"))

    async def _load(self, conn: Any, alert_id: int) -> Alert:
        alert = await self._load_or_none(conn, alert_id)
        if alert is None:
            raise AlertNotFound(f"no alert #{alert_id}; `llmpulse alerts --all` lists them")
        return alert

    @staticmethod
    async def _load_or_none(conn: Any, alert_id: int) -> Alert | None:
        async with conn.execute(f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts WHERE id = ?", (alert_id,)) as cur:
            row = await cur.fetchone()
        return _alert(row) if row is not None else None

    @staticmethod
    def _why_not(alert: Alert, verb: str, expected: str) -> str:
        if alert.state == "acknowledged":
            now_state = f"already acknowledged by {alert.acked_by}"
        elif alert.state == "resolved":
            now_state = f"already resolved by {alert.resolved_by}"
        else:
            now_state = alert.state
        return f"alert #{alert.id} cannot be {verb}: it is {now_state}; only {expected} can be {verb}"

    @staticmethod
    async def _transition(
        conn: Any,
        alert_id: int,
        at: float,
        event: str,
        from_state: str | None,
        to_state: str,
        actor: str,
        detail: str | None,
    ) -> None:
        await conn.execute(
            "INSERT INTO alert_transitions (alert_id, at, event, from_state, to_state, actor, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (alert_id, at, event, from_state, to_state, actor, redact(detail) if detail else None),
        )

    @staticmethod
    async def _notice(conn: Any, alert_id: int, event: str, at: float, actor: str, detail: str | None) -> None:
        await conn.execute(
            "INSERT INTO alert_outbox (alert_id, event, at, actor, detail) VALUES (?, ?, ?, ?, ?)",
            (alert_id, event, at, actor, redact(detail) if detail else None),
        )


def disabled_reason(by: str) -> str:
    return f"provider disabled by {by}: llmpulse no longer judges it; not a recovery"


async def close_provider_alerts(conn: Any, provider_id: str, now: float, by: str) -> list[AlertChange]:
    """Inside the caller's transaction: every open alert of a provider rule about `provider_id` becomes
    resolved with `closed_reason` set, a `closed` transition (actor `by`) and a `closed` notice — which the
    notifier announces as "closed, not a recovery", never as resolved. `by` says who and where, e.g.
    "alice (llmpulse providers disable)" or "config (/etc/llmpulse/llmpulse.toml)"."""
    rules = sorted(PROVIDER_RULES)
    async with conn.execute(
        f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts WHERE state != 'resolved' AND subject = ? "
        f"AND rule IN ({', '.join('?' * len(rules))}) ORDER BY id",
        (provider_id, *rules),
    ) as cur:
        alerts = [_alert(r) for r in await cur.fetchall()]
    reason = redact(disabled_reason(by)) or ""
    changes: list[AlertChange] = []
    for alert in alerts:
        await conn.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = ?, resolved_by = ?, closed_reason = ? "
            "WHERE id = ? AND state != 'resolved'",
            (now, by, reason, alert.id),
        )
        await AlertEngine._transition(conn, alert.id, now, "closed", alert.state, "resolved", by, reason)
        await AlertEngine._notice(conn, alert.id, "closed", now, by, reason)
        changes.append(AlertChange(alert.id, "closed", alert.fingerprint, alert.severity, reason))
    return changes


async def prune_alert_notices(store: Store, now: float, keep_s: float) -> int:
    """Drop sent-out notices and finished deliveries older than `keep_s` (repeats add up over months).
    Alerts and their transitions are the history and are kept; so is anything not yet dispatched or sent."""
    cutoff = now - keep_s
    async with store.transaction() as conn:
        cur = await conn.execute(
            "DELETE FROM alert_deliveries WHERE updated_at < ? AND status != 'sending' "
            "AND NOT (status = 'held' AND held_reported = 0)",
            (cutoff,),
        )
        removed = max(cur.rowcount, 0)
        cur = await conn.execute(
            "DELETE FROM alert_outbox WHERE dispatched_at IS NOT NULL AND at < ? AND id NOT IN "
            "(SELECT outbox_id FROM alert_deliveries WHERE outbox_id IS NOT NULL)",
            (cutoff,),
        )
        removed += max(cur.rowcount, 0)
    return removed


def alert_summary(alert: Alert) -> dict[str, Any]:
    """The fields a notification carries (no internal bookkeeping)."""
    keep = (
        "id",
        "rule",
        "subject",
        "severity",
        "message",
        "state",
        "first_seen",
        "last_seen",
        "count",
        "acked_by",
        "escalated",
        "silenced_until",
        "resolved_at",
    )
    return {k: getattr(alert, k) for k in keep}


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
