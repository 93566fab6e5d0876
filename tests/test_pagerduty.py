"""The pagerduty channel against a local Events API v2 receiver on 127.0.0.1 that checks the documented
schema (developer.pagerduty.com "Send an Alert Event"): routing_key of 32 characters, event_action,
dedup_key up to 255, and for a trigger payload.summary (up to 1024) / source / severity (critical, error,
warning, info). It answers as PagerDuty does: 202 {"status": "success", "message": "Event processed",
"dedup_key": ...}, 400 {"status": "invalid event", "message": "Event object is invalid", "errors": [...]},
and 429 when asked to (PagerDuty says: retry after some time)."""

from __future__ import annotations

import asyncio
import json
import tomllib
from dataclasses import dataclass, field

import pytest

from llmpulse.core.alerts.config import PAGERDUTY_EVENTS_URL
from llmpulse.core.alerts.config import parse as parse_alerts
from llmpulse.core.alerts.engine import AlertEngine
from llmpulse.core.alerts.notify import Notifier
from llmpulse.core.alerts.rules import Condition
from llmpulse.core.clock import ManualClock
from llmpulse.core.store import Store
from llmpulse.core.validate import ConfigError, Section

T0 = 1_795_000_000.0
KEY = "R0123456789abcdef0123456789abcd"  # 31 characters: the receiver refuses it
GOOD_KEY = "e93facc04764012d7bfb002500d5d1a6"
DOWN = Condition("provider_down", "groq", "critical", "Groq down: 3 failed probes in a row (timeout)")
SLOW = Condition("latency_p95", "anthropic", "warning", "Anthropic p95 latency 6.20s")
SEVERITIES = {"critical", "error", "warning", "info"}


def problems(event: dict) -> list[str]:
    """What PagerDuty's Events API v2 would refuse in this event (its documented rules)."""
    errors = []
    if len(str(event.get("routing_key", ""))) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    if event.get("event_action") not in ("trigger", "acknowledge", "resolve"):
        errors.append("'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')")
    dedup = event.get("dedup_key")
    if event.get("event_action") in ("acknowledge", "resolve") and not dedup:
        errors.append("'dedup_key' is missing or blank")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        errors.append("'dedup_key' is too long (maximum is 255 characters)")
    if event.get("event_action") == "trigger":
        payload = event.get("payload") or {}
        for name in ("summary", "source", "severity"):
            if not payload.get(name):
                errors.append(f"'payload.{name}' is missing or blank")
        if len(str(payload.get("summary", ""))) > 1024:
            errors.append("'payload.summary' is too long (maximum is 1024 characters)")
        if payload.get("severity") and payload["severity"] not in SEVERITIES:
            errors.append("'payload.severity' is invalid (must be one of: critical, error, warning, info)")
    return errors


@dataclass
class EventsApi:
    events: list[dict] = field(default_factory=list)
    throttle: int = 0  # answer this many requests with 429 first
    port: int = 0

    async def __aenter__(self) -> EventsApi:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/enqueue"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, _ = (await reader.readline()).decode().split(" ", 2)
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, value = line.decode().split(":", 1)
                headers[name.strip().lower()] = value.strip()
            raw = await reader.readexactly(int(headers.get("content-length", 0)))
            if self.throttle > 0:
                self.throttle -= 1
                status, body = (
                    429,
                    {
                        "status": "throttle event",
                        "message": "Requests for this service are arriving too quickly. Please retry later.",
                    },
                )
            else:
                try:
                    event = json.loads(raw)
                except ValueError:
                    event = None
                errors = ["Event object is not JSON"] if not isinstance(event, dict) else problems(event)
                if (
                    method != "POST"
                    or path != "/v2/enqueue"
                    or "application/json" not in headers.get("content-type", "")
                ):
                    errors.append("expected POST /v2/enqueue with a JSON body")
                if errors:
                    status, body = (
                        400,
                        {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
                    )
                else:
                    self.events.append(event)
                    status, body = (
                        202,
                        {"status": "success", "message": "Event processed", "dedup_key": event["dedup_key"]},
                    )
            text = json.dumps(body)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(text)}\r\n"
                f"Connection: close\r\n\r\n{text}".encode()
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def setup(tmp_path, api: EventsApi, key: str, **extra: object):
    text = (
        f'[[alerts.channels]]\ntype = "pagerduty"\nname = "pd"\nrouting_key_env = "PD_ROUTING_KEY"\n'
        f'url = "{api.url}"\nmin_severity = "warning"\nretries = 1\nbackoff = "10ms"\n'
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items())
    )
    cfg = parse_alerts(Section(tomllib.loads(text), "t.toml"))
    store = await Store.open(tmp_path / "pd.db")
    clock = ManualClock(T0)
    notifier = Notifier(cfg, store, clock, {"PD_ROUTING_KEY": key})
    return store, AlertEngine(store, cfg, clock, notifier), notifier, clock


async def test_trigger_acknowledge_resolve_share_one_dedup_key(tmp_path):
    async with EventsApi() as api:
        store, engine, notifier, clock = await setup(tmp_path, api, GOOD_KEY)
        try:
            await engine.process([DOWN, SLOW])
            await notifier.drain(5)
            down, slow = (e for e in api.events)  # one event each, in order
            assert down["event_action"] == slow["event_action"] == "trigger"
            assert down["routing_key"] == GOOD_KEY and down["dedup_key"] != slow["dedup_key"]
            assert down["payload"]["severity"] == "critical" and slow["payload"]["severity"] == "warning"
            assert DOWN.message in down["payload"]["summary"] and down["payload"]["source"] == "llmpulse/groq"
            await engine.ack(1, "kim", "on it")
            clock.advance(60)
            await engine.process([SLOW])  # groq recovered: resolved; anthropic still firing (no new event)
            await notifier.drain(5)
            assert [(e["event_action"], e["dedup_key"]) for e in api.events[2:]] == [
                ("acknowledge", down["dedup_key"]),
                ("resolve", down["dedup_key"]),
            ]
            assert "payload" not in api.events[2]  # acknowledge and resolve carry only the key
            # The next alert on the same fingerprint is a new PagerDuty alert.
            clock.advance(60)
            await engine.process([DOWN, SLOW])
            await notifier.drain(5)
            assert api.events[-1]["event_action"] == "trigger" and api.events[-1]["dedup_key"] != down["dedup_key"]
            rows = await store.fetchall("SELECT event, status FROM alert_deliveries ORDER BY id")
            assert [tuple(r) for r in rows] == [
                ("firing", "sent"),
                ("firing", "sent"),
                ("acknowledged", "sent"),
                ("resolved", "sent"),
                ("firing", "sent"),
            ]
        finally:
            await notifier.drain(5)
            await store.close()


async def test_400_is_final_429_is_retried_and_the_key_never_shows(tmp_path):
    async with EventsApi() as api:
        store, engine, notifier, _clock = await setup(tmp_path, api, KEY)
        try:
            await engine.process([DOWN])
            await notifier.drain(5)
            [row] = await store.fetchall("SELECT status, attempts, error FROM alert_deliveries")
            assert (row["status"], row["attempts"]) == ("failed", 1)  # a 400 is not retried
            assert "HTTP 400" in row["error"] and "should be 32 characters" in row["error"]
        finally:
            await store.close()
        dump = (tmp_path / "pd.db").read_bytes()
        assert KEY.encode() not in dump and api.events == []

    async with EventsApi(throttle=1) as api:
        (tmp_path / "pd.db").unlink()
        store, engine, notifier, _clock = await setup(tmp_path, api, GOOD_KEY)
        try:
            await engine.process([DOWN])
            await notifier.drain(5)
            [row] = await store.fetchall("SELECT status, attempts FROM alert_deliveries")
            assert (row["status"], row["attempts"]) == ("sent", 2) and len(api.events) == 1
        finally:
            await store.close()
        assert GOOD_KEY.encode() not in (tmp_path / "pd.db").read_bytes()


async def test_missing_key_variable_is_named_not_guessed(tmp_path):
    async with EventsApi() as api:
        store, engine, notifier, _clock = await setup(tmp_path, api, "")
        try:
            await engine.process([DOWN])
            await notifier.drain(5)
            [row] = await store.fetchall("SELECT status, error FROM alert_deliveries")
            assert row["status"] == "failed" and "PD_ROUTING_KEY is not set" in row["error"] and api.events == []
        finally:
            await store.close()


def test_config_defaults_and_refusals():
    def parse(body: str):
        return parse_alerts(Section(tomllib.loads('[[alerts.channels]]\ntype = "pagerduty"\n' + body), "t.toml"))

    assert parse('routing_key_env = "PD_KEY"\n').channels[0].url == PAGERDUTY_EVENTS_URL
    with pytest.raises(ConfigError, match="routing_key_env"):
        parse("")
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        parse(f'routing_key_env = "{GOOD_KEY}"\n')  # the key itself pasted where its variable's name goes
