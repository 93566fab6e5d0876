"""Sending alert notices to webhooks, Slack, Discord and email — without ever holding anything up.

`dispatch()` turns queued notices (alert_outbox) into one delivery per interested channel and returns at
once: each delivery runs as its own task with its own timeout, retries with exponential backoff, and
records its outcome (sent, or failed with the redacted reason). A channel that hangs or answers 500
delays neither the collector's next round nor any other channel. Each channel has a minimum severity
and an hourly rate limit; notices over the limit are held and counted, and the next message that goes
out says how many were held back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any, Mapping

import httpx

from core.alerts import SEVERITY_RANK
from core.alerts.config import AlertsConfig, ChannelConfig, alerts_config
from core.alerts.engine import Alert, AlertEngine, alert_summary
from core.clock import SYSTEM_CLOCK, Clock
from core.redact import redact, register_secret
from core.store import Store

SILENCEABLE = {"firing", "repeat", "severity", "escalated"}
EMOJI = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
DISCORD_COLOUR = {"critical": 0xD0021B, "warning": 0xF5A623, "info": 0x4A90E2}
WORDS = {"firing": "FIRING", "repeat": "STILL FIRING", "severity": "WORSE", "escalated": "ESCALATED",
         "resolved": "RESOLVED"}


def headline(alert: Alert, event: str) -> str:
    return f"[{WORDS.get(event, event.upper())}] {alert.severity} · {alert.subject}: {alert.message}"


def webhook_payload(alert: Alert, event: str, outbox: Mapping[str, Any], held_back: int) -> dict[str, Any]:
    return {"source": "llmpulse", "event": event, "alert": alert_summary(alert),
            "transition": {"event": event, "at": outbox["at"], "actor": outbox["actor"], "detail": outbox["detail"]},
            "held_back": held_back}


def slack_payload(alert: Alert, event: str, held_back: int) -> dict[str, Any]:
    text = f"{EMOJI.get(alert.severity, '')} *{WORDS.get(event, event)}* `{alert.rule}` {alert.subject}: {alert.message}"
    if held_back:
        text += f"\n_{held_back} more notices were held back by the rate limit_"
    return {"text": text}


def discord_payload(alert: Alert, event: str, held_back: int) -> dict[str, Any]:
    description = alert.message + (f"\n({held_back} more notices were held back by the rate limit)" if held_back else "")
    colour = 0x7ED321 if event == "resolved" else DISCORD_COLOUR.get(alert.severity, 0)
    return {"content": f"{WORDS.get(event, event)}: {alert.subject}",
            "embeds": [{"title": f"{alert.severity} · {alert.rule} · {alert.subject}", "description": description,
                        "color": colour}]}


class Notifier:
    def __init__(self, cfg: Any, store: Store, clock: Clock = SYSTEM_CLOCK, env: Mapping[str, str] | None = None):
        self.cfg: AlertsConfig = alerts_config(cfg)
        self.store = store
        self.clock = clock
        self.env = dict(env or {})
        self.engine = AlertEngine(store, self.cfg, clock)
        self.tasks: set[asyncio.Task] = set()
        for ch in self.cfg.channels:     # webhook URLs and SMTP passwords are secrets too
            for name in (ch.url_env, ch.password_env):
                if name and self.env.get(name):
                    register_secret(self.env[name])

    # -- which channels want a notice --------------------------------------------------------------
    def wants(self, ch: ChannelConfig, alert: Alert, event: str, at: float) -> bool:
        if SEVERITY_RANK[alert.severity] < SEVERITY_RANK[ch.min_severity]:
            return False
        if event in SILENCEABLE and alert.silenced(at):
            return False
        if ch.escalation:
            return event == "escalated" or (event in ("resolved", "repeat") and alert.escalated)
        return True

    # -- outbox -> deliveries ----------------------------------------------------------------------
    async def dispatch(self) -> int:
        """Start a delivery for every pending notice and return; the deliveries run on their own."""
        now = self.clock.now()
        rows = await self.store.fetchall("SELECT * FROM alert_outbox WHERE dispatched_at IS NULL ORDER BY id")
        started = 0
        for row in rows:
            alert = await self.engine.get(row["alert_id"])
            jobs: list[tuple[ChannelConfig, int, int]] = []
            async with self.store.transaction() as conn:
                async with conn.execute("SELECT dispatched_at FROM alert_outbox WHERE id = ?", (row["id"],)) as cur:
                    again = await cur.fetchone()
                if again is None or again["dispatched_at"] is not None:
                    continue        # another process took it
                await conn.execute("UPDATE alert_outbox SET dispatched_at = ? WHERE id = ?", (now, row["id"]))
                if alert is None:
                    continue
                for ch in self.cfg.channels:
                    if not self.wants(ch, alert, row["event"], row["at"]):
                        continue
                    async with conn.execute(
                            "SELECT COUNT(*) FROM alert_deliveries WHERE channel = ? AND created_at > ? "
                            "AND status != 'held'", (ch.name, now - 3600)) as cur:
                        sent_last_hour = (await cur.fetchone())[0]
                    if sent_last_hour >= ch.rate_limit_per_hour:
                        await conn.execute(
                            "INSERT INTO alert_deliveries (outbox_id, alert_id, channel, event, status, created_at, "
                            "updated_at, error) VALUES (?, ?, ?, ?, 'held', ?, ?, ?)",
                            (row["id"], alert.id, ch.name, row["event"], now, now,
                             f"rate limit {ch.rate_limit_per_hour}/hour reached"))
                        continue
                    async with conn.execute(
                            "SELECT COUNT(*) FROM alert_deliveries WHERE channel = ? AND status = 'held' "
                            "AND held_reported = 0", (ch.name,)) as cur:
                        held = (await cur.fetchone())[0]
                    await conn.execute("UPDATE alert_deliveries SET held_reported = 1 WHERE channel = ? "
                                       "AND status = 'held' AND held_reported = 0", (ch.name,))
                    cur = await conn.execute(
                        "INSERT INTO alert_deliveries (outbox_id, alert_id, channel, event, status, created_at, "
                        "updated_at, held_back) VALUES (?, ?, ?, ?, 'sending', ?, ?, ?)",
                        (row["id"], alert.id, ch.name, row["event"], now, now, held))
                    jobs.append((ch, cur.lastrowid, held))
            for ch, delivery_id, held in jobs:
                task = asyncio.get_running_loop().create_task(
                    self._deliver(ch, delivery_id, alert, row["event"], dict(row), held))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                started += 1
        return started

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for deliveries in flight (at shutdown, or in tests)."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)

    # -- one delivery ------------------------------------------------------------------------------
    async def _deliver(self, ch: ChannelConfig, delivery_id: int, alert: Alert, event: str,
                       outbox: Mapping[str, Any], held: int) -> None:
        error = None
        attempts = 0
        for attempt in range(ch.retries + 1):
            attempts = attempt + 1
            try:
                await asyncio.wait_for(self._send(ch, alert, event, outbox, held), timeout=ch.timeout)
                error = None
                break
            except asyncio.TimeoutError:
                error = f"no answer within {ch.timeout:g}s"
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt < ch.retries:
                await asyncio.sleep(ch.backoff * (2 ** attempt))
        status = "sent" if error is None else "failed"
        await self.store.execute(
            "UPDATE alert_deliveries SET status = ?, attempts = ?, updated_at = ?, error = ? WHERE id = ?",
            (status, attempts, self.clock.now(), redact(error) if error else None, delivery_id))
        if error is not None:
            await AlertEngine._transition(self.store.conn, alert.id, self.clock.now(), "delivery_failed",
                                          alert.state, alert.state, "auto", f"{ch.name}: {error}")

    async def _send(self, ch: ChannelConfig, alert: Alert, event: str, outbox: Mapping[str, Any], held: int) -> None:
        if ch.type == "email":
            await asyncio.to_thread(self._send_email, ch, alert, event, held)
            return
        url = self.env.get(ch.url_env or "")
        if not url:
            raise RuntimeError(f"{ch.url_env} is not set; expected the {ch.type} URL in that variable")
        if ch.type == "slack":
            body = slack_payload(alert, event, held)
        elif ch.type == "discord":
            body = discord_payload(alert, event, held)
        else:
            body = webhook_payload(alert, event, outbox, held)
        async with httpx.AsyncClient(timeout=ch.timeout) as client:
            response = await client.post(url, json=body)
        if not 200 <= response.status_code < 300:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")

    def _send_email(self, ch: ChannelConfig, alert: Alert, event: str, held: int) -> None:
        msg = EmailMessage()
        msg["Subject"] = headline(alert, event)[:200]
        msg["From"] = ch.sender
        msg["To"] = ", ".join(ch.to)
        when = dt.datetime.fromtimestamp(alert.first_seen, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        body = (f"{alert.message}\n\nrule: {alert.rule}\nsubject: {alert.subject}\nseverity: {alert.severity}\n"
                f"state: {alert.state}\nfirst seen: {when}\ncount: {alert.count}\n")
        if held:
            body += f"\n{held} more notices were held back by this channel's rate limit.\n"
        msg.set_content(body)
        password = self.env.get(ch.password_env or "")
        if ch.ssl:
            server: smtplib.SMTP = smtplib.SMTP_SSL(ch.host, ch.port, timeout=ch.timeout,
                                                    context=ssl.create_default_context())
        else:
            server = smtplib.SMTP(ch.host, ch.port, timeout=ch.timeout)
        with server:
            if ch.starttls and not ch.ssl:
                server.starttls(context=ssl.create_default_context())
            if ch.username:
                server.login(ch.username, password or "")
            server.send_message(msg)
