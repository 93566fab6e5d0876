"""Alertmanager's v2 API as an alert channel: llmpulse alerts pushed as Alertmanager alerts, and llmpulse
acks and silences mirrored as Alertmanager silences.

An alert is identified in Alertmanager by its labels: `alertname` (the rule), `severity`, the subject
under its own name (`provider`, `budget`, `migration`, else `subject`), `source="llmpulse"` and any extra
labels the channel configures. Alertmanager expects a client to re-send its active alerts every 30 s to
3 min, each with an `endsAt` a few re-sends ahead (Prometheus uses 4x its re-send interval): if llmpulse
stops, Alertmanager resolves the alerts on its own instead of keeping a stale page forever. A resolved
llmpulse alert is sent once more with `endsAt` = when it resolved; one closed because its provider was
disabled says so in its annotations (`llmpulse_state: closed`, `llmpulse_closed`: who and why).

Silences llmpulse creates carry a marker in their comment (`[llmpulse alert #12 ack]`), so they are found
again to be expired (alert resolved, unsilenced, or fired again after an ack) without keeping any state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from llmpulse.core.alerts.config import ChannelConfig
from llmpulse.core.alerts.engine import Alert
from llmpulse.core.http_answer import MAX_ANSWER_BYTES, Answer, fetch

# Prometheus sends endsAt = now + 4 x max(evaluation interval, resend delay): three re-sends may be lost
# before Alertmanager resolves the alert by itself.
VALIDITY_RESENDS = 4
ANNOTATION_MAX = 1024
SOURCE = "llmpulse"


def subject_label(rule: str) -> str:
    """The label the alert's subject goes under, so Alertmanager routes can match `provider=~"openai"`."""
    if rule.startswith("budget_"):
        return "budget"
    if rule.startswith("migration_"):
        return "migration"
    if rule.startswith(("provider_", "error_rate", "latency_", "rate_limit_", "fallback_")):
        return "provider"
    return "subject"


def rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_labels(alert: Alert, ch: ChannelConfig, *, with_severity: bool = True) -> dict[str, str]:
    labels = dict(ch.labels)  # the channel's extras first: llmpulse's own names win
    labels.update({"alertname": alert.rule, "source": SOURCE, subject_label(alert.rule): alert.subject})
    if with_severity:
        labels["severity"] = alert.severity
    return labels


def alert_body(alert: Alert, ch: ChannelConfig, now: float, valid_for: float) -> dict[str, Any]:
    """One element of POST /api/v2/alerts: active until `now + valid_for`, or ended when resolved."""
    ends = alert.resolved_at if alert.state == "resolved" and alert.resolved_at is not None else now + valid_for
    annotations = {
        "summary": _clip(f"{alert.subject}: {alert.message}"),
        "description": _clip(alert.message),
        "llmpulse_alert_id": str(alert.id),
        "llmpulse_state": "closed" if alert.closed_reason else alert.state,
    }
    if alert.closed_reason:  # ended because its provider was disabled: Alertmanager's "resolved" is not a recovery
        annotations["llmpulse_closed"] = _clip(alert.closed_reason)
    if alert.acked_by:
        annotations["acknowledged_by"] = alert.acked_by
    if alert.escalated:
        annotations["escalated"] = "true"
    return {
        "labels": alert_labels(alert, ch),
        "annotations": annotations,
        "startsAt": rfc3339(alert.first_seen),
        "endsAt": rfc3339(max(ends, alert.first_seen)),
    }


def ended(labels: Mapping[str, str], starts: float, now: float) -> dict[str, Any]:
    """An earlier label set of an alert (before its severity changed), ended now."""
    return {"labels": dict(labels), "annotations": {}, "startsAt": rfc3339(starts), "endsAt": rfc3339(now)}


def marker(alert: Alert, kind: str) -> str:
    return f"[llmpulse alert #{alert.id} {kind}]"


def silence_body(
    alert: Alert, ch: ChannelConfig, kind: str, now: float, until: float, who: str, note: str | None
) -> dict[str, Any]:
    """POST /api/v2/silences. An ack's silence matches the severity too (a worse alert pages again, as it
    fires again in llmpulse); a silence covers the alert whatever its severity, as in llmpulse."""
    labels = alert_labels(alert, ch, with_severity=(kind == "ack"))
    verb = "acknowledged" if kind == "ack" else "silenced"
    return {
        "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in sorted(labels.items())],
        "startsAt": rfc3339(now),
        "endsAt": rfc3339(until),
        "createdBy": who or SOURCE,
        "comment": _clip(f"{marker(alert, kind)} {verb} in llmpulse by {who}" + (f": {note}" if note else "")),
    }


async def expire_silences(
    client: httpx.AsyncClient,
    base: str,
    alert: Alert,
    ch: ChannelConfig,
    kinds: tuple[str, ...],
    check: Callable[[Answer], None],
) -> int:
    """Expire the still active silences llmpulse created for this alert (of these kinds); how many.
    A silence is ours when its comment has the alert's marker and its matchers are this alert's labels (so
    another llmpulse's alert #12 on the same Alertmanager is left alone). `check` raises the notifier's
    delivery error for an answer that is not a 2xx."""
    response = await fetch(
        client, "GET", f"{base}/api/v2/silences", limit=MAX_ANSWER_BYTES, params={"filter": f'alertname="{alert.rule}"'}
    )
    check(response)
    marks = tuple(marker(alert, k) for k in kinds)
    labels = alert_labels(alert, ch, with_severity=False)
    expired = 0
    for silence in response.json():
        state = silence.get("status", {}).get("state")
        if state == "expired" or not str(silence.get("comment", "")).startswith(marks):
            continue
        matchers = {m.get("name"): m.get("value") for m in silence.get("matchers", [])}
        matchers.pop("severity", None)
        if matchers != labels:
            continue
        check(await fetch(client, "DELETE", f"{base}/api/v2/silence/{silence['id']}", limit=MAX_ANSWER_BYTES))
        expired += 1
    return expired


def _clip(text: str) -> str:
    return text if len(text) <= ANNOTATION_MAX else text[: ANNOTATION_MAX - 1] + "…"
