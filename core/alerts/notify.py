"""Sending alert notices to webhooks, Slack, Discord, email, Alertmanager and PagerDuty — without ever
holding anything up.

`dispatch()` turns queued notices (alert_outbox) into one delivery per interested channel and returns at
once: each delivery runs as its own task with its own timeout and retries with exponential backoff. A
channel that hangs or answers 500 delays neither the collector's next round nor any other channel.

Delivery tasks never touch the database: the collector's connection is busy with its own transactions,
and a write slipped into one of them would share its fate. A finished delivery leaves its outcome in
memory; the next `dispatch()` (or `drain()`) records it — sent, or failed with the redacted reason and a
`delivery_failed` transition on the alert — in one transaction. A delivery left `sending` by a process
that stopped is sent again once it is older than its channel could have taken (at least once, never lost).

Each channel has a minimum severity and an hourly rate limit; notices over the limit are held and
counted — except a resolved notice, which is always sent: it is what tells on-call the outage ended, and the next message that goes out says how many were held back (if that message fails, the
count goes back to the pool for the one after).

An alert closed because its provider was disabled (engine.close_provider_alerts) gets a `closed` notice,
worded "CLOSED, NOT RECOVERED" with who disabled it — never the `resolved` one. PagerDuty is not told: its
only way to end an incident is "resolve", which says the problem went away, so the incident stays for a
person to close. Alertmanager gets the alert ended with `llmpulse_state: closed` and the reason in its
annotations (it would end the alert by itself once re-sends stop anyway).

Alertmanager and PagerDuty mirror the lifecycle rather than announce it: they also get the
`acknowledged`, `silenced` and `unsilenced` notices (PagerDuty acknowledge; Alertmanager silences), and
Alertmanager gets every open alert again each `resend_interval`, as it expects of its clients
(alertmanager.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx

from llmpulse.core.alerts import SEVERITY_RANK, alertmanager
from llmpulse.core.alerts.config import AlertsConfig, ChannelConfig, alerts_config
from llmpulse.core.alerts.engine import Alert, AlertEngine, alert_summary
from llmpulse.core.clock import SYSTEM_CLOCK, Clock
from llmpulse.core.errors import LlmpulseError
from llmpulse.core.http_answer import Answer, fetch
from llmpulse.core.redact import body_line, redact, register_secret
from llmpulse.core.store import Store
from llmpulse.core.vocabulary import counted, plural

log = logging.getLogger(__name__)

SILENCEABLE = {"firing", "repeat", "severity", "escalated"}
# An alert's last word: sent even over a channel's hourly rate limit. "closed": its provider was disabled —
# on-call hears the alert ended, and that it was not a recovery.
NEVER_HELD = frozenset({"resolved", "closed"})
ENDINGS = NEVER_HELD
# People's decisions on an alert: only the channels that mirror the lifecycle act on them.
LIFECYCLE_EVENTS = {"acknowledged", "silenced", "unsilenced"}
EMOJI = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
DISCORD_COLOUR = {"critical": 0xD0021B, "warning": 0xF5A623, "info": 0x4A90E2}
RESOLVED_COLOUR = 0x7ED321
WORDS = {
    "firing": "FIRING",
    "repeat": "STILL FIRING",
    "severity": "WORSE",
    "escalated": "ESCALATED",
    "resolved": "RESOLVED",
    "closed": "CLOSED, NOT RECOVERED",
}
CLOSED_COLOUR = 0x9B9B9B
# Discord rejects longer fields with a 400.
DISCORD_CONTENT_MAX, DISCORD_TITLE_MAX, DISCORD_DESCRIPTION_MAX = 2000, 256, 4096
# A 429's Retry-After is honoured up to this; past it the next round's notices matter more.
MAX_RETRY_AFTER_S = 60.0
# A `sending` delivery older than its channel's longest possible run plus this was orphaned by a stop.
ORPHAN_MARGIN_S = 60.0


# One delivery to make: channel, delivery id, alert, event, the outbox row, notices held back since the last.
Job = tuple[ChannelConfig, int, Alert, str, dict[str, Any], int]


class DeliveryError(LlmpulseError):
    """The receiver answered, but not with success; worth another try (5xx, 408)."""


class PermanentDeliveryError(DeliveryError):
    """The receiver refused the notice in a way a retry will not change (404 unknown webhook, 400, bad login)."""


class RetryAfter(DeliveryError):
    def __init__(self, message: str, seconds: float):
        super().__init__(message)
        self.seconds = seconds


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _held_line(held: int) -> str:
    return f"{counted(held, 'more notice', 'more notices')} {plural(held, 'was', 'were')} held back by the rate limit"


def headline(alert: Alert, event: str) -> str:
    return f"[{WORDS.get(event, event.upper())}] {alert.severity} · {alert.subject}: {alert.message}" + _why_closed(
        alert, event
    )


def _why_closed(alert: Alert, event: str) -> str:
    return f" — {alert.closed_reason}" if event == "closed" and alert.closed_reason else ""


def webhook_payload(alert: Alert, event: str, outbox: Mapping[str, Any], held_back: int) -> dict[str, Any]:
    """Generic webhook: the alert and the transition that caused this notice."""
    return {
        "source": "llmpulse",
        "event": event,
        "alert": alert_summary(alert),
        "transition": {"event": event, "at": outbox["at"], "actor": outbox["actor"], "detail": outbox["detail"]},
        "held_back": held_back,
    }


def slack_payload(alert: Alert, event: str, held_back: int) -> dict[str, Any]:
    """Slack incoming webhook: `text` (mrkdwn)."""
    mark = {"resolved": "✅", "closed": "⚪"}.get(event, EMOJI.get(alert.severity, ""))
    text = f"{mark} *{WORDS.get(event, event)}* `{alert.rule}` {alert.subject}: {alert.message}"
    text += _why_closed(alert, event)
    if held_back:
        text += f"\n_{_held_line(held_back)}_"
    return {"text": text}


def discord_payload(alert: Alert, event: str, held_back: int) -> dict[str, Any]:
    """Discord webhook: `content` plus one embed (title, description, color)."""
    description = alert.message + _why_closed(alert, event) + (f"\n({_held_line(held_back)})" if held_back else "")
    colour = {"resolved": RESOLVED_COLOUR, "closed": CLOSED_COLOUR}.get(event, DISCORD_COLOUR.get(alert.severity, 0))
    return {
        "content": _clip(f"{WORDS.get(event, event)}: {alert.subject}", DISCORD_CONTENT_MAX),
        "embeds": [
            {
                "title": _clip(f"{alert.severity} · {alert.rule} · {alert.subject}", DISCORD_TITLE_MAX),
                "description": _clip(description, DISCORD_DESCRIPTION_MAX),
                "color": colour,
            }
        ],
    }


def pagerduty_dedup_key(alert: Alert) -> str:
    """One PagerDuty alert per llmpulse alert: trigger, acknowledge and resolve share it. The fingerprint
    and opening time stay the same for the alert's life and differ for the next alert on that fingerprint."""
    return f"llmpulse:{alert.fingerprint[:200]}:{int(alert.first_seen)}"


def pagerduty_payload(alert: Alert, event: str, outbox: Mapping[str, Any], routing_key: str) -> dict[str, Any]:
    """Events API v2 (developer.pagerduty.com, "Send an Alert Event"): trigger while firing, acknowledge when
    acknowledged in llmpulse, resolve when resolved. llmpulse's severities are all PagerDuty severities."""
    action = {"acknowledged": "acknowledge", "resolved": "resolve"}.get(event, "trigger")
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": pagerduty_dedup_key(alert),
    }
    if action == "trigger":
        body["payload"] = {
            "summary": _clip(f"{alert.subject}: {alert.message}", 1024),
            "source": f"llmpulse/{alert.subject}",
            "severity": alert.severity,
            "timestamp": alertmanager.rfc3339(float(outbox["at"])),
            "component": alert.subject,
            "group": alertmanager.subject_label(alert.rule),
            "class": alert.rule,
            "custom_details": {**alert_summary(alert), "event": event},
        }
        body["client"] = "llmpulse"
    return body


def email_message(ch: ChannelConfig, alert: Alert, event: str, held_back: int) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = _clip(headline(alert, event), 200)
    msg["From"] = ch.sender
    msg["To"] = ", ".join(ch.to)
    when = dt.datetime.fromtimestamp(alert.first_seen, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        f"{alert.message}\n\nrule: {alert.rule}\nsubject: {alert.subject}\nseverity: {alert.severity}\n"
        f"state: {alert.state}\nfirst seen: {when}\ncount: {alert.count}\n"
    )
    if event == "closed" and alert.closed_reason:
        body += f"closed: {alert.closed_reason}\n"
    if held_back:
        body += f"\n{_held_line(held_back)} of this channel.\n"
    msg.set_content(body)
    return msg


# A webhook's reply is read up to this much (inflated): enough for any error message, never a 1 GiB body.
REPLY_BYTES = 64 * 1024


def raise_for_status(response: Answer) -> None:
    """A 2xx is delivered; 429 waits for Retry-After; 5xx and 408 are worth another try; other 4xx are not."""
    if 200 <= response.status_code < 300:
        return
    reason = f"HTTP {response.status_code}: {body_line(response.text, 200)}"
    if response.status_code == 429:
        try:
            after = float(response.headers.get("retry-after", "0")[:32])
        except ValueError:
            after = 0.0
        if not math.isfinite(after):  # "inf" or "nan" from a peer: no promise at all
            after = 0.0
        raise RetryAfter(reason, after)
    if 400 <= response.status_code < 500 and response.status_code != 408:
        raise PermanentDeliveryError(reason)
    raise DeliveryError(reason)


def longest_delivery_s(ch: ChannelConfig) -> float:
    """How long one delivery can take on this channel: every attempt timing out, every backoff slept."""
    backoffs = sum(max(ch.backoff * 2.0**i, 0.0) for i in range(ch.retries))
    return ch.timeout * (ch.retries + 1) + backoffs + MAX_RETRY_AFTER_S * ch.retries


@dataclass
class _Outcome:
    delivery_id: int
    alert_id: int
    alert_state: str
    channel: str
    status: str  # sent | failed
    attempts: int
    error: str | None
    finished_at: float


class Notifier:
    def __init__(
        self,
        cfg: Any,
        store: Store,
        clock: Clock = SYSTEM_CLOCK,
        env: Mapping[str, str] | None = None,
        round_interval: float = 0.0,
    ):
        """`round_interval`: how often the collector calls dispatch(), which bounds how often Alertmanager
        re-sends can happen (the alerts' validity covers a few of whichever is longer)."""
        self.cfg: AlertsConfig = alerts_config(cfg)
        self.round_interval = round_interval
        self.store = store
        self.clock = clock
        self.env = dict(env or {})
        self.engine = AlertEngine(store, self.cfg, clock)
        self.channels = {ch.name: ch for ch in self.cfg.channels}
        self.tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[int] = set()  # delivery ids this process is working on
        self._outcomes: list[_Outcome] = []  # finished, not yet written
        self._pushed_at: dict[str, float] = {}  # alertmanager channel -> last re-send of its open alerts
        self._pushing: set[str] = set()  # alertmanager channels with a re-send in flight
        self._resend_failing: set[str] = set()  # alertmanager channels whose last re-send failed
        # (channel, alert id) -> (labels, startsAt) last pushed: a label set that changed (severity) is ended
        self._am_labels: dict[tuple[str, int], tuple[dict[str, str], float]] = {}
        for ch in self.cfg.channels:  # webhook URLs, SMTP passwords and routing keys are secrets too
            for name in (ch.url_env, ch.password_env, ch.routing_key_env):
                value = self.env.get(name or "")
                if value:
                    register_secret(value)
                    # A webhook's secret is its path (Slack: /services/T…/B…/…): mask it on its own too.
                    parts = urlsplit(value) if "://" in value else None
                    if parts and len(parts.path) >= 8:
                        register_secret(parts.path + (f"?{parts.query}" if parts.query else ""))

    # -- which channels want a notice --------------------------------------------------------------
    def wants(self, ch: ChannelConfig, alert: Alert, event: str, at: float) -> bool:
        if SEVERITY_RANK[alert.severity] < SEVERITY_RANK[ch.min_severity]:
            return False
        if event in LIFECYCLE_EVENTS:
            if ch.type == "pagerduty":
                return event == "acknowledged"
            return ch.type == "alertmanager" and ch.silences
        if event == "closed" and ch.type == "pagerduty":
            return False  # PagerDuty's "resolve" would say it recovered: a person closes the incident

        # Alertmanager is told the true state; a silence there (mirrored from llmpulse's) keeps it quiet.
        if event in SILENCEABLE and alert.silenced(at) and ch.type != "alertmanager":
            return False
        if ch.escalation:
            return event == "escalated" or (event in (*ENDINGS, "repeat") and alert.escalated)
        return True

    # -- outbox -> deliveries ----------------------------------------------------------------------
    async def dispatch(self) -> int:
        """Record finished deliveries, then start one delivery per pending notice and interested channel,
        and return at once: the deliveries run on their own. Returns how many were started."""
        await self.record_outcomes()
        now = self.clock.now()
        jobs: list[Job] = []
        async with self.store.transaction() as conn:
            async with conn.execute("SELECT * FROM alert_outbox WHERE dispatched_at IS NULL ORDER BY id") as cur:
                rows = [dict(r) for r in await cur.fetchall()]
            if rows:
                await conn.execute(
                    "UPDATE alert_outbox SET dispatched_at = ? WHERE dispatched_at IS NULL AND id <= ?",
                    (now, rows[-1]["id"]),
                )
            alerts: dict[int, Alert | None] = {}
            for row in rows:
                if row["alert_id"] not in alerts:
                    alerts[row["alert_id"]] = await self.engine._load_or_none(conn, row["alert_id"])
                alert = alerts[row["alert_id"]]
                if alert is None:
                    continue
                for ch in self.cfg.channels:
                    if self.wants(ch, alert, row["event"], row["at"]):
                        job = await self._plan(conn, ch, alert, row, now)
                        if job is not None:
                            jobs.append(job)
            jobs += await self._orphans(conn, now)
        for job in jobs:
            self._start(*job)
        await self._resend_to_alertmanagers(now)
        return len(jobs)

    # -- Alertmanager: active alerts re-sent while they last ----------------------------------------
    def _valid_for(self, ch: ChannelConfig) -> float:
        return alertmanager.VALIDITY_RESENDS * max(ch.resend_interval, self.round_interval)

    async def _resend_to_alertmanagers(self, now: float) -> None:
        due = [
            ch
            for ch in self.cfg.channels
            if ch.type == "alertmanager"
            and ch.name not in self._pushing
            and now - self._pushed_at.get(ch.name, float("-inf")) >= ch.resend_interval
        ]
        if not due:
            return
        alerts = await self.engine.open_alerts()
        for ch in due:
            chosen = [
                a
                for a in alerts
                if SEVERITY_RANK[a.severity] >= SEVERITY_RANK[ch.min_severity] and (not ch.escalation or a.escalated)
            ]
            self._pushed_at[ch.name] = now
            if not chosen:
                continue
            self._pushing.add(ch.name)
            task = asyncio.get_running_loop().create_task(
                self._resend(ch, chosen, now), name=f"alertmanager-resend-{ch.name}"
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _resend(self, ch: ChannelConfig, alerts: list[Alert], now: float) -> None:
        """One attempt: the next re-send is never far off, and a failed one is tried again next round."""
        try:
            await asyncio.wait_for(self._push_alerts(ch, alerts, now), timeout=ch.timeout)
            if ch.name in self._resend_failing:
                self._resend_failing.discard(ch.name)
                log.warning("alertmanager %s: re-sends go through again", ch.name)
        except Exception as exc:
            self._pushed_at.pop(ch.name, None)
            reason = "no answer" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            if ch.name not in self._resend_failing:  # one line when it starts failing, not one a round
                self._resend_failing.add(ch.name)
                log.warning("alertmanager %s: re-send of %d alerts failed: %s", ch.name, len(alerts), redact(reason))
        finally:
            self._pushing.discard(ch.name)

    def _alertmanager_url(self, ch: ChannelConfig) -> str:
        url = ch.url or self.env.get(ch.url_env or "")
        if not url:
            raise PermanentDeliveryError(f"{ch.url_env} is not set; expected the Alertmanager URL in that variable")
        return url.rstrip("/")

    async def _push_alerts(self, ch: ChannelConfig, alerts: list[Alert], now: float) -> None:
        body = []
        for alert in alerts:
            item = alertmanager.alert_body(alert, ch, now, self._valid_for(ch))
            key = (ch.name, alert.id)
            before = self._am_labels.get(key)
            if before is not None and before[0] != item["labels"]:
                body.append(alertmanager.ended(before[0], before[1], now))
            body.append(item)
            if alert.state == "resolved":
                self._am_labels.pop(key, None)
            else:
                self._am_labels[key] = (item["labels"], alert.first_seen)
        async with httpx.AsyncClient(timeout=ch.timeout) as client:
            raise_for_status(
                await fetch(
                    client, "POST", limit=REPLY_BYTES, url=f"{self._alertmanager_url(ch)}/api/v2/alerts", json=body
                )
            )

    async def _send_alertmanager(self, ch: ChannelConfig, alert: Alert, event: str, outbox: Mapping[str, Any]) -> None:
        now = self.clock.now()
        base = self._alertmanager_url(ch)
        who, note = str(outbox.get("actor") or "llmpulse"), outbox.get("detail")
        async with httpx.AsyncClient(timeout=ch.timeout) as client:
            if event == "acknowledged":
                if alert.state == "acknowledged":  # not already fired again or resolved since
                    body = alertmanager.silence_body(alert, ch, "ack", now, now + ch.ack_silence, who, note)
                    raise_for_status(
                        await fetch(client, "POST", limit=REPLY_BYTES, url=f"{base}/api/v2/silences", json=body)
                    )
                return
            if event == "silenced":
                if alert.silenced(now) and alert.silenced_until is not None:
                    body = alertmanager.silence_body(alert, ch, "silence", now, alert.silenced_until, who, None)
                    raise_for_status(
                        await fetch(client, "POST", limit=REPLY_BYTES, url=f"{base}/api/v2/silences", json=body)
                    )
                return
            if event == "unsilenced":
                await alertmanager.expire_silences(client, base, alert, ch, ("silence",), raise_for_status)
                return
        await self._push_alerts(ch, [alert], now)
        if event in ENDINGS or (event == "severity" and alert.state == "firing"):
            kinds = ("ack", "silence") if event in ENDINGS else ("ack",)
            async with httpx.AsyncClient(timeout=ch.timeout) as client:
                await alertmanager.expire_silences(client, base, alert, ch, kinds, raise_for_status)

    async def _plan(self, conn: Any, ch: ChannelConfig, alert: Alert, row: Mapping[str, Any], now: float) -> Job | None:
        """One delivery row for this notice on this channel: held by the rate limit, or to be sent."""
        async with conn.execute(
            "SELECT COUNT(*) FROM alert_deliveries WHERE channel = ? AND created_at > ? AND status != 'held'",
            (ch.name, now - 3600),
        ) as cur:
            sent_last_hour = (await cur.fetchone())[0]
        # A resolved notice is never held: without it on-call keeps working an outage that has ended.
        if sent_last_hour >= ch.rate_limit_per_hour and row["event"] not in NEVER_HELD:
            await conn.execute(
                "INSERT INTO alert_deliveries (outbox_id, alert_id, channel, event, status, created_at, updated_at, "
                "error) VALUES (?, ?, ?, ?, 'held', ?, ?, ?)",
                (
                    row["id"],
                    alert.id,
                    ch.name,
                    row["event"],
                    now,
                    now,
                    f"held back: rate limit {ch.rate_limit_per_hour}/hour reached",
                ),
            )
            return None
        cur = await conn.execute(
            "INSERT INTO alert_deliveries (outbox_id, alert_id, channel, event, status, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, 'sending', ?, ?)",
            (row["id"], alert.id, ch.name, row["event"], now, now),
        )
        delivery_id = cur.lastrowid
        assert delivery_id is not None  # sqlite3 sets it on every INSERT
        # This message reports (and claims) every notice held back since the channel's last report.
        cur = await conn.execute(
            "UPDATE alert_deliveries SET held_reported = ? WHERE channel = ? AND status = 'held' AND held_reported = 0",
            (delivery_id, ch.name),
        )
        held = max(cur.rowcount, 0)
        if held:
            await conn.execute("UPDATE alert_deliveries SET held_back = ? WHERE id = ?", (held, delivery_id))
        return ch, delivery_id, alert, row["event"], dict(row), held

    async def _orphans(self, conn: Any, now: float) -> list[Job]:
        """Deliveries left `sending` by a process that stopped mid-way: send them again."""
        async with conn.execute(
            "SELECT d.id, d.alert_id, d.channel, d.event, d.updated_at, d.held_back, o.id AS outbox_id, "
            "o.at, o.actor, o.detail FROM alert_deliveries d LEFT JOIN alert_outbox o ON o.id = d.outbox_id "
            "WHERE d.status = 'sending' ORDER BY d.id"
        ) as cur:
            rows = [dict(r) for r in await cur.fetchall()]
        jobs: list[Job] = []
        for r in rows:
            if r["id"] in self._inflight:
                continue
            ch = self.channels.get(r["channel"])
            if ch is None:
                await conn.execute(
                    "UPDATE alert_deliveries SET status = 'failed', updated_at = ?, error = ? WHERE id = ?",
                    (now, "channel no longer configured", r["id"]),
                )
                continue
            if now - r["updated_at"] < longest_delivery_s(ch) + ORPHAN_MARGIN_S:
                continue  # perhaps still running in the process that started it
            alert = await self.engine._load_or_none(conn, r["alert_id"])
            if alert is None:
                continue
            await conn.execute("UPDATE alert_deliveries SET updated_at = ? WHERE id = ?", (now, r["id"]))
            outbox = {
                "id": r["outbox_id"],
                "at": r["at"] if r["at"] is not None else now,
                "actor": r["actor"] or "auto",
                "detail": r["detail"],
            }
            jobs.append((ch, r["id"], alert, r["event"], outbox, r["held_back"]))
        return jobs

    def _start(
        self, ch: ChannelConfig, delivery_id: int, alert: Alert, event: str, outbox: Mapping[str, Any], held: int
    ) -> None:
        self._inflight.add(delivery_id)
        task = asyncio.get_running_loop().create_task(
            self._deliver(ch, delivery_id, alert, event, outbox, held), name=f"alert-delivery-{delivery_id}-{ch.name}"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for deliveries in flight (at shutdown, or in tests) and record their outcomes."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)
        await self.record_outcomes()

    async def record_outcomes(self) -> int:
        """Write finished deliveries: status, attempts, the redacted reason of a failure (also as a
        `delivery_failed` transition on the alert, so it shows in its history)."""
        if not self._outcomes:
            return 0
        outcomes, self._outcomes = self._outcomes, []
        try:
            async with self.store.transaction() as conn:
                for o in outcomes:
                    await conn.execute(
                        "UPDATE alert_deliveries SET status = ?, attempts = ?, updated_at = ?, error = ? WHERE id = ?",
                        (o.status, o.attempts, o.finished_at, o.error, o.delivery_id),
                    )
                    if o.status == "failed":
                        # The held-back count this message carried was not heard: the next message says it.
                        await conn.execute(
                            "UPDATE alert_deliveries SET held_reported = 0 WHERE held_reported = ?", (o.delivery_id,)
                        )
                        await AlertEngine._transition(
                            conn,
                            o.alert_id,
                            o.finished_at,
                            "delivery_failed",
                            o.alert_state,
                            o.alert_state,
                            "auto",
                            f"{o.channel}: {o.error}",
                        )
        except BaseException:
            self._outcomes[:0] = outcomes  # written next time
            raise
        for o in outcomes:
            self._inflight.discard(o.delivery_id)
            if o.status == "failed":  # on-call must see in the log that a page did not go out
                log.warning(
                    "alert #%d: notice to %s failed after %d attempt(s): %s",
                    o.alert_id,
                    o.channel,
                    o.attempts,
                    o.error,
                )
        return len(outcomes)

    # -- one delivery ------------------------------------------------------------------------------
    async def _deliver(
        self, ch: ChannelConfig, delivery_id: int, alert: Alert, event: str, outbox: Mapping[str, Any], held: int
    ) -> None:
        error: str | None = None
        attempts = 0
        for attempt in range(ch.retries + 1):
            attempts = attempt + 1
            wait = ch.backoff * (2**attempt)
            try:
                await asyncio.wait_for(self._send(ch, alert, event, outbox, held), timeout=ch.timeout)
                error = None
                break
            except TimeoutError:
                error = f"no answer within {ch.timeout:g}s"
            except PermanentDeliveryError as exc:
                error = str(exc)
                break
            except RetryAfter as exc:
                error = str(exc)
                wait = max(wait, min(exc.seconds, MAX_RETRY_AFTER_S))
            except DeliveryError as exc:
                error = str(exc)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt < ch.retries:
                await asyncio.sleep(wait)
        self._outcomes.append(
            _Outcome(
                delivery_id,
                alert.id,
                alert.state,
                ch.name,
                "sent" if error is None else "failed",
                attempts,
                _clip(redact(error) or "", 500) if error is not None else None,
                self.clock.now(),
            )
        )

    async def _send(self, ch: ChannelConfig, alert: Alert, event: str, outbox: Mapping[str, Any], held: int) -> None:
        if ch.type == "email":
            await asyncio.to_thread(self._send_email, ch, alert, event, held)
            return
        if ch.type == "alertmanager":
            await self._send_alertmanager(ch, alert, event, outbox)
            return
        if ch.type == "pagerduty":
            key = self.env.get(ch.routing_key_env or "")
            if not key:
                raise PermanentDeliveryError(
                    f"{ch.routing_key_env} is not set; expected the PagerDuty integration (routing) key in that variable"
                )
            async with httpx.AsyncClient(timeout=ch.timeout) as client:
                raise_for_status(
                    await fetch(
                        client,
                        "POST",
                        limit=REPLY_BYTES,
                        url=str(ch.url),
                        json=pagerduty_payload(alert, event, outbox, key),
                    )
                )
            return
        url = self.env.get(ch.url_env or "")
        if not url:
            raise PermanentDeliveryError(f"{ch.url_env} is not set; expected the {ch.type} URL in that variable")
        if ch.type == "slack":
            body = slack_payload(alert, event, held)
        elif ch.type == "discord":
            body = discord_payload(alert, event, held)
        else:
            body = webhook_payload(alert, event, outbox, held)
        async with httpx.AsyncClient(timeout=ch.timeout) as client:
            raise_for_status(await fetch(client, "POST", limit=REPLY_BYTES, url=url, json=body))

    def _send_email(self, ch: ChannelConfig, alert: Alert, event: str, held: int) -> None:
        msg = email_message(ch, alert, event, held)
        password = self.env.get(ch.password_env or "")
        if ch.host is None:  # the config requires one for email; a channel built by hand may lack it
            raise PermanentDeliveryError(f"{ch.name}: no SMTP host")
        try:
            if ch.ssl:
                server: smtplib.SMTP = smtplib.SMTP_SSL(
                    ch.host, ch.port, timeout=ch.timeout, context=ssl.create_default_context()
                )
            else:
                server = smtplib.SMTP(ch.host, ch.port, timeout=ch.timeout)
            with server:
                if ch.starttls and not ch.ssl:
                    server.starttls(context=ssl.create_default_context())
                if ch.username:
                    server.login(ch.username, password or "")
                server.send_message(msg)
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
            raise PermanentDeliveryError(f"{type(exc).__name__}: {exc}") from None
