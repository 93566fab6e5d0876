"""Notifications against real receivers on 127.0.0.1: an asyncio HTTP server written here (webhook, Slack,
Discord shapes; 500s, 4xx, 429 with Retry-After, hangs) and a tiny asyncio SMTP server. ManualClock for
the hourly rate limit and escalation; real (short) time only for timeouts and backoff."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import tomllib
from dataclasses import dataclass, field

import pytest

from llmpulse.core.alerts.config import parse as parse_alerts
from llmpulse.core.alerts.engine import AlertEngine
from llmpulse.core.alerts.notify import ORPHAN_MARGIN_S, Notifier, longest_delivery_s
from llmpulse.core.alerts.rules import Condition
from llmpulse.core.clock import ManualClock
from llmpulse.core.store import Store
from llmpulse.core.validate import Section

T0 = 1_795_000_000.0
DOWN = Condition("provider_down", "groq", "critical", "Groq down: 3 failed probes in a row (timeout)")
SLOW = Condition("latency_p95", "anthropic", "warning", "Anthropic p95 latency 6.20s")


# -- a webhook receiver ---------------------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    body: dict
    headers: dict
    at: float  # loop time of arrival


@dataclass
class Receiver:
    """HTTP/1.1 on 127.0.0.1. `answers[path]` is a list of what to do per request, in order (the last one
    repeats): a status code, (status, headers, body), or "hang"."""

    answers: dict[str, list] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    port: int = 0

    async def __aenter__(self) -> Receiver:
        self._handlers: set[asyncio.Task] = set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[dict]:
        return [h.body for h in self.hits if h.path == path]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            _method, path, _ = (await reader.readline()).decode().split(" ", 2)
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, value = line.decode().split(":", 1)
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            seen = sum(1 for h in self.hits if h.path == path)
            self.hits.append(Hit(path, json.loads(body or b"{}"), headers, asyncio.get_running_loop().time()))
            plan = self.answers.get(path, [200])
            answer = plan[min(seen, len(plan) - 1)]
            if answer == "hang":
                await asyncio.sleep(3600)
            status, extra, text = answer if isinstance(answer, tuple) else (answer, {}, "ok")
            head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(text.encode())}\r\nConnection: close\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
            writer.write((head + "\r\n" + text).encode())
            await writer.drain()
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)


def channels(*specs: dict) -> str:
    out = ""
    for spec in specs:
        out += "[[alerts.channels]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in spec.items())
    return out


def hook(name: str, **kw) -> dict:
    return {
        "name": name,
        "type": "webhook",
        "url_env": name.upper() + "_URL",
        "min_severity": "info",
        "retries": 0,
        **kw,
    }


@pytest.fixture
async def setup(tmp_path):
    """(make, receiver): make(toml, env=None) -> (store, engine, notifier, clock) on a fresh database."""
    made = []
    async with Receiver() as receiver:

        async def make(text: str, env: dict | None = None):
            cfg = parse_alerts(Section(tomllib.loads(text), "t.toml"))
            store = await Store.open(tmp_path / "n.db")
            clock = ManualClock(T0)
            notifier = Notifier(cfg, store, clock, env or {})
            made.append((store, notifier))
            return store, AlertEngine(store, cfg, clock), notifier, clock

        yield make, receiver
        for store, notifier in made:
            for task in notifier.tasks:
                task.cancel()
            await store.close()


async def deliveries(store) -> dict:
    rows = await store.fetchall("SELECT * FROM alert_deliveries ORDER BY id")
    return {(r["channel"], r["alert_id"], r["event"]): dict(r) for r in rows}


# -- tests ---------------------------------------------------------------------------------------------


async def test_payload_shapes_min_severity_and_escalation_channel(setup):
    make, rx = setup
    text = '[alerts]\nescalate_after = "15m"\n' + channels(
        hook("hook"),
        {"name": "slack", "type": "slack", "url_env": "SLACK_URL", "min_severity": "critical"},
        {"name": "discord", "type": "discord", "url_env": "DISCORD_URL", "escalation": True},
    )
    env = {"HOOK_URL": rx.url("/hook"), "SLACK_URL": rx.url("/slack"), "DISCORD_URL": rx.url("/discord")}
    rx.answers["/discord"] = [204]
    store, engine, notifier, clock = await make(text, env)
    await engine.process([DOWN, SLOW])
    assert await notifier.dispatch() == 3  # hook x2, slack x1 (warning is below its minimum)
    await notifier.drain(5)
    first = rx.bodies("/hook")[0]
    assert first == {
        "source": "llmpulse",
        "event": "firing",
        "held_back": 0,
        "alert": first["alert"],
        "transition": first["transition"],
    }
    assert first["alert"]["rule"] == "provider_down" and first["alert"]["state"] == "firing"
    assert first["transition"] == {"event": "firing", "at": T0, "actor": "auto", "detail": DOWN.message}
    [slack] = rx.bodies("/slack")
    assert list(slack) == ["text"] and slack["text"].startswith("🔴 *FIRING* `provider_down` groq: Groq down")
    assert rx.bodies("/discord") == []  # escalation channel: nothing until an escalation

    clock.advance(15 * 60)
    await engine.process([DOWN, SLOW])
    await notifier.dispatch()
    await notifier.drain(5)
    [discord] = rx.bodies("/discord")
    assert discord == {
        "content": "ESCALATED: groq",
        "embeds": [{"title": "critical · provider_down · groq", "description": DOWN.message, "color": 0xD0021B}],
    }
    await engine.process([], covered={"provider_down", "latency_p95"})
    await notifier.dispatch()
    await notifier.drain(5)
    assert [b["content"] for b in rx.bodies("/discord")][-1] == "RESOLVED: groq"  # its resolved notice too
    assert rx.bodies("/discord")[-1]["embeds"][0]["color"] == 0x7ED321
    assert [b["event"] for b in rx.bodies("/hook")] == ["firing", "firing", "escalated", "resolved", "resolved"]
    assert all(d["status"] == "sent" for d in (await deliveries(store)).values())


async def test_a_hanging_channel_stalls_nothing(setup):
    make, rx = setup
    rx.answers["/hang"] = ["hang"]
    # The hanging channel's timeout is long enough that, even on a loaded machine, the other channel's
    # notices must arrive while it still hangs: what is checked is the order, not a stopwatch.
    text = channels(hook("hang", timeout="4s"), hook("hook"))
    store, engine, notifier, clock = await make(text, {"HANG_URL": rx.url("/hang"), "HOOK_URL": rx.url("/hook")})

    async def until(what: str, check) -> None:
        for _ in range(600):
            if check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}")

    await engine.process([DOWN])
    await notifier.dispatch()
    await until("the other channel's notice", lambda: len(rx.bodies("/hook")) == 1)
    hanging = [t for t in notifier.tasks if not t.done()]
    assert hanging, "the hanging delivery should still be waiting for an answer"
    # and the next round goes through while the first one still hangs
    clock.advance(60)
    await engine.process([DOWN, SLOW])
    await notifier.dispatch()
    await until("the next round's notice", lambda: len(rx.bodies("/hook")) == 2)
    assert any(not t.done() for t in hanging)
    await notifier.drain(15)
    hung = (await deliveries(store))[("hang", 1, "firing")]
    assert (hung["status"], hung["attempts"], hung["error"]) == ("failed", 1, "no answer within 4s")
    failed = [t for t in await engine.transitions(1) if t.event == "delivery_failed"]
    assert [t.detail for t in failed] == ["hang: no answer within 4s"]


async def test_500_is_retried_with_backoff_and_4xx_is_not(setup):
    make, rx = setup
    rx.answers["/broken"] = [(500, {}, "upstream exploded")]
    rx.answers["/flaky"] = [503, 200]
    rx.answers["/gone"] = [(404, {}, "no such webhook")]
    rx.answers["/busy"] = [(429, {"Retry-After": "0.3"}, "slow down"), 200]
    text = channels(*(hook(n, retries=2, backoff="50ms") for n in ("broken", "flaky", "gone", "busy")))
    env = {f"{n.upper()}_URL": rx.url(f"/{n}") for n in ("broken", "flaky", "gone", "busy")}
    store, engine, notifier, _ = await make(text, env)
    await engine.process([DOWN])
    await notifier.dispatch()
    await notifier.drain(5)
    d = await deliveries(store)
    assert (d["broken", 1, "firing"]["status"], d["broken", 1, "firing"]["attempts"]) == ("failed", 3)
    assert d["broken", 1, "firing"]["error"] == "HTTP 500: upstream exploded"
    times = [h.at for h in rx.hits if h.path == "/broken"]
    assert times[1] - times[0] >= 0.045 and times[2] - times[1] >= 0.095  # 50 ms, then doubled
    assert (d["flaky", 1, "firing"]["status"], d["flaky", 1, "firing"]["attempts"]) == ("sent", 2)
    assert (d["gone", 1, "firing"]["status"], d["gone", 1, "firing"]["attempts"]) == ("failed", 1)
    assert d["gone", 1, "firing"]["error"] == "HTTP 404: no such webhook"
    busy = [h.at for h in rx.hits if h.path == "/busy"]
    assert d["busy", 1, "firing"]["status"] == "sent" and busy[1] - busy[0] >= 0.29  # Retry-After honoured


async def test_rate_limit_holds_back_and_the_next_message_says_how_many(setup):
    make, rx = setup
    rx.answers["/slack"] = [200, 200, (400, {}, "invalid_payload"), 200]
    text = channels(
        {
            "name": "slack",
            "type": "slack",
            "url_env": "SLACK_URL",
            "min_severity": "info",
            "rate_limit_per_hour": 2,
            "retries": 0,
        }
    )
    store, engine, notifier, clock = await make(text, {"SLACK_URL": rx.url("/slack")})
    subjects = [Condition("budget_warning", f"b{i}", "warning", f"budget b{i} passed 80%") for i in range(5)]
    await engine.process(subjects)
    await notifier.dispatch()
    await notifier.drain(5)
    assert len(rx.bodies("/slack")) == 2
    held = [r for r in (await deliveries(store)).values() if r["status"] == "held"]
    assert len(held) == 3 and held[0]["error"] == "held back: rate limit 2/hour reached"

    clock.advance(1800)  # still inside the hour: b4 clears, and its resolved notice goes out all the same
    await engine.process(subjects[:4], covered={"budget_warning"})
    await notifier.dispatch()
    await notifier.drain(5)
    assert len(rx.bodies("/slack")) == 3
    third = rx.bodies("/slack")[2]
    assert "RESOLVED" in third["text"] and third["text"].endswith("_3 more notices were held back by the rate limit_")
    # ...but that message was refused (400), so the count goes to the message after it
    assert (await deliveries(store))[("slack", 5, "resolved")]["status"] == "failed"

    clock.advance(1801)  # the hour has passed
    await engine.resolve(1, "ops")
    await notifier.dispatch()
    await notifier.drain(5)
    fourth = rx.bodies("/slack")[3]
    assert "RESOLVED" in fourth["text"] and fourth["text"].endswith("_3 more notices were held back by the rate limit_")
    assert (await deliveries(store))[("slack", 1, "resolved")]["held_back"] == 3


async def test_silenced_alert_sends_no_notices_but_still_its_resolved_notice(setup):
    make, rx = setup
    _store, engine, notifier, clock = await make(
        '[alerts]\nrepeat_interval = "1h"\n' + channels(hook("hook")), {"HOOK_URL": rx.url("/hook")}
    )
    await engine.process([SLOW])
    await notifier.dispatch()  # the firing notice
    await engine.silence(1, 3 * 3600 + 600, "ops")
    for _ in range(3):  # repeats are due every hour, but it is silenced
        clock.advance(3600)
        await engine.process([SLOW])
        await notifier.dispatch()
    clock.advance(60)
    await engine.process([], covered={"latency_p95"})
    await notifier.dispatch()
    await notifier.drain(5)
    assert [b["event"] for b in rx.bodies("/hook")] == ["firing", "resolved"]
    assert rx.bodies("/hook")[1]["alert"]["silenced_until"] == T0 + 3 * 3600 + 600


async def test_missing_variable_and_secrets_in_urls_never_reach_the_database(setup, tmp_path):
    make, rx = setup
    token = "/services/T0SECRET/B0SECRET/xoxSECRETTOKEN"
    rx.answers[token] = [(500, {}, f"cannot post to {token}")]
    text = channels(hook("leaky", retries=0), {"name": "slack", "type": "slack", "url_env": "NOT_SET_URL"})
    store, engine, notifier, _ = await make(text, {"LEAKY_URL": rx.url(token)})
    await engine.process([DOWN])
    await notifier.dispatch()
    await notifier.drain(5)
    d = await deliveries(store)
    assert d["slack", 1, "firing"]["error"] == "NOT_SET_URL is not set; expected the slack URL in that variable"
    assert d["leaky", 1, "firing"]["error"] == "HTTP 500: cannot post to ***"
    await store.close()
    raw = (tmp_path / "n.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("n.db-*"))
    assert b"SECRET" not in raw


async def test_a_delivery_orphaned_by_a_stopped_process_is_sent_again(setup):
    make, rx = setup
    rx.answers["/hook"] = ["hang", 200]
    text = channels(hook("hook", timeout="5s"))
    store, engine, first, clock = await make(text, {"HOOK_URL": rx.url("/hook")})
    await engine.process([DOWN])
    await first.dispatch()
    for _ in range(500):  # until the hanging request has arrived (a fixed sleep loses the race on a busy machine)
        if rx.hits:
            break
        await asyncio.sleep(0.01)
    for task in first.tasks:  # the process stops mid-delivery
        task.cancel()
    await asyncio.sleep(0)
    second = Notifier(first.cfg, store, clock, {"HOOK_URL": rx.url("/hook")})
    assert await second.dispatch() == 0  # too recent: the first process may still be at it
    clock.advance(longest_delivery_s(first.cfg.channels[0]) + ORPHAN_MARGIN_S + 1)
    assert await second.dispatch() == 1
    await second.drain(5)
    [row] = (await deliveries(store)).values()
    assert row["status"] == "sent" and len(rx.bodies("/hook")) == 2


# -- email ---------------------------------------------------------------------------------------------


class SmtpServer:
    """Just enough SMTP (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to receive a message."""

    def __init__(self, password: str = "s3cret-pass"):
        self.password = password
        self.messages: list[bytes] = []
        self.logins: list[str] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def handle(self, reader, writer):
        writer.write(b"220 test ESMTP\r\n")
        data, buf = False, b""
        while line := await reader.readline():
            if data:
                if line == b".\r\n":
                    self.messages.append(buf)
                    data = False
                    writer.write(b"250 queued\r\n")
                else:
                    buf += line
            else:
                cmd = line.split(b" ")[0].strip().upper()
                if cmd == b"EHLO":
                    writer.write(b"250-test\r\n250 AUTH PLAIN\r\n")
                elif cmd == b"AUTH":
                    user, password = base64.b64decode(line.split()[2]).split(b"\0")[1:]
                    self.logins.append(user.decode())
                    writer.write(b"235 ok\r\n" if password.decode() == self.password else b"535 bad login\r\n")
                elif cmd == b"DATA":
                    data, buf = True, b""
                    writer.write(b"354 go\r\n")
                elif cmd == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


def email_channel(port: int, **kw) -> dict:
    return {
        "name": "mail",
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "starttls": False,
        "username": "llmpulse",
        "password_env": "SMTP_PASSWORD",
        "from": "llmpulse@example.com",
        "to": ["oncall@example.com", "lead@example.com"],
        "min_severity": "critical",
        "retries": 0,
        **kw,
    }


async def test_email_over_smtp(setup):
    make, _ = setup
    async with SmtpServer() as smtp:
        text = channels(email_channel(smtp.port), email_channel(smtp.port, name="wrong", password_env="WRONG"))
        store, engine, notifier, _ = await make(text, {"SMTP_PASSWORD": "s3cret-pass", "WRONG": "nope-nope"})
        await engine.process([DOWN, SLOW])
        await notifier.dispatch()
        await notifier.drain(10)
        d = await deliveries(store)
        assert d["mail", 1, "firing"]["status"] == "sent", d["mail", 1, "firing"]["error"]
        assert ("mail", 2, "firing") not in d  # warning: below the channel's minimum
        wrong = d["wrong", 1, "firing"]
        assert (wrong["status"], wrong["attempts"]) == ("failed", 1) and "SMTPAuthenticationError" in wrong["error"]
        assert "nope-nope" not in wrong["error"]
        [msg] = smtp.messages
        assert smtp.logins == ["llmpulse", "llmpulse"]
        parsed = email.message_from_bytes(msg, policy=email.policy.default)
        assert parsed["Subject"] == f"[FIRING] critical · groq: {DOWN.message}"
        assert parsed["To"] == "oncall@example.com, lead@example.com"
        assert "rule: provider_down" in parsed.get_content() and "count: 1" in parsed.get_content()
