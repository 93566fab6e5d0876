"""The providers' own status pages: summary.json documents served on 127.0.0.1, read by the collector in
the background, shown in the snapshot and judged by the `provider_incident` rule — with a page that
hangs, one that answers garbage and one that answers too much.

tests/fixtures/statuspage holds Statuspage's full documented shape around what the real pages said:
Anthropic's components and indicator as captured on 2026-07-30 and its 2026-09-29 incident (as quoted
in public code), and OpenAI's API component names."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import tomllib
from pathlib import Path

import pytest

from llmpulse.core.clock import ManualClock
from llmpulse.core.collector import Collector
from llmpulse.core.config import load_context
from llmpulse.core.simulator.fleet import FakeProvider, Fleet
from llmpulse.core.snapshot import build_snapshot
from llmpulse.core.statuspage import MAX_PAGE_BYTES, PageConfig, parse_settings, parse_summary
from llmpulse.core.store import Store
from llmpulse.core.validate import ConfigError, Section

FIXTURES = Path(__file__).parent / "fixtures" / "statuspage"
KEY = "sk-proj-StatusPageSecret0123456789ab"


def doc(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class Pages:
    """summary.json per path prefix: bytes to serve, or "hang"."""

    def __init__(self) -> None:
        self.serve: dict[str, bytes | str] = {}
        self.port = 0
        self.hits: list[str] = []

    async def __aenter__(self) -> Pages:
        self._tasks: set[asyncio.Task[None]] = set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            _method, path, _ = (await reader.readline()).decode().split(" ", 2)
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            name, _, rest = path.lstrip("/").partition("/")
            self.hits.append(name)
            body = self.serve.get(name, b"")
            if body == "hang" or rest != "api/v2/summary.json":
                await asyncio.sleep(3600)
            assert isinstance(body, bytes)
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


def test_summary_judged_for_the_components_llmpulse_uses():
    anthropic = parse_summary(json.loads(doc("anthropic_incident.json")), ("Claude API",))
    assert anthropic.worst == "partial_outage" and anthropic.components == ("Claude API (api.anthropic.com)",)
    assert anthropic.incident == "Elevated errors on claude.ai, Claude Code, Claude Cowork and the Claude API"
    assert anthropic.impact == "major" and anthropic.link == "https://stspg.io/br61xzj05pp5"
    assert anthropic.since == dt.datetime(2026, 9, 29, 14, 21, 37, 188000, tzinfo=dt.UTC).timestamp()
    # The page's own indicator says only "minor" while the API is in partial outage: components decide.
    assert anthropic.indicator == "minor"
    # OpenAI's incident is on Login (ChatGPT), not on an API component: nothing declared for us.
    openai = parse_summary(json.loads(doc("openai_login_incident.json")), ("Chat Completions", "Responses"))
    assert (openai.worst, openai.incident, openai.components) == ("operational", None, ())
    assert openai.indicator == "minor"  # the page as a whole is not all well, but not for what we use
    # Every component counts when none are named.
    assert (
        parse_summary(json.loads(doc("openai_login_incident.json")), ()).incident
        == "Increased login errors for ChatGPT"
    )


def test_config_per_provider_override_off_and_refusals():
    def parse(text: str):
        return parse_settings(Section(tomllib.loads(text), "t.toml"))

    s = parse(
        '[status_pages]\ninterval = "5m"\n[status_pages.openai]\nenabled = false\n[status_pages.mine]\nurl = "https://status.example.com/"\ncomponents = ["API"]\n'
    )
    assert s.interval == 300 and s.pages["openai"] is None
    assert s.pages["mine"] == PageConfig("https://status.example.com", ("API",))
    with pytest.raises(ConfigError, match="status_pages.mine.url"):
        parse("[status_pages.mine]\ncomponents = []\n")
    with pytest.raises(ConfigError, match="http:// or https://"):
        parse('[status_pages.mine]\nurl = "status.example.com"\n')
    with pytest.raises(ConfigError, match="status_pages.anthropic.compnents"):
        parse('[status_pages.anthropic]\ncompnents = ["API"]\n')


def headline_expected() -> str:
    """The line the dashboard shows, built here from the fixture's own values."""
    data = json.loads(doc("anthropic_incident.json"))
    inc = data["incidents"][0]
    since = dt.datetime.fromisoformat(inc["created_at"].replace("Z", "+00:00")).strftime("%H:%M")
    api = next(c["name"] for c in data["components"] if "Claude API" in c["name"])
    return f"Anthropic reports: partial outage — {api} (since {since} UTC): {inc['name']}"


async def test_collector_reads_pages_in_the_background_and_alerts_on_declared_incidents(tmp_path):
    async with Pages() as pages:
        pages.serve = {
            "anthropic": doc("anthropic_incident.json"),
            "openai": doc("openai_login_incident.json"),
            "groq": "hang",
            "deepseek": b"<html>Service Unavailable</html>",
            "mistral": b'{"components": [' + b'{"name": "API", "status": "operational"},' * 60_000 + b"{}]}",
        }
        with Fleet(
            [
                FakeProvider("openai", key=KEY),
                FakeProvider("anthropic", kind="anthropic", key=KEY),
                FakeProvider("groq", kind="groq", key=KEY),
                FakeProvider("deepseek", kind="deepseek", key=KEY),
                FakeProvider("mistral", kind="mistral", key=KEY),
            ]
        ) as fleet:
            lines = ["[probe]", 'interval = "30s"', 'timeout = "1s"', "[status_pages]", 'timeout = "1s"']
            for pid in fleet.providers:
                lines += [f"[providers.{pid}]", f'base_url = "{fleet.base_url(pid)}"']
                lines += [f"[status_pages.{pid}]", f'url = "{pages.url(pid)}"']
            lines += ['components = ["API"]']  # mistral's: the big page is made of "API" components
            (tmp_path / "llmpulse.toml").write_text("\n".join(lines) + "\n")
            env = {f"{p.upper()}_API_KEY": KEY for p in fleet.providers}
            ctx = load_context(str(tmp_path / "llmpulse.toml"), str(tmp_path / "s.db"), environ=env)
            store = await Store.open(ctx.db_path)
            clock = ManualClock(time.time())
            collector = Collector(ctx, store, clock, on_event=lambda _: None)
            try:
                await collector.run_round()
                # The round is over while the hanging page is still being waited for: it never held it up.
                assert collector.status_pages._task is not None and not collector.status_pages._task.done()
                assert (await build_snapshot(store, ctx, clock.now())).incidents == {}
                await collector.status_pages.settle(10)
                clock.advance(30)
                report = await collector.run_round()  # writes the finished readings, judges them
                assert report.errors == []
                snap = await build_snapshot(store, ctx, clock.now())
                inc = snap.incidents
                assert inc["anthropic"].headline() == headline_expected()
                assert inc["openai"].headline() == "" and inc["openai"].error is None
                assert inc["groq"].declared is None and inc["groq"].error == "no answer within 1s"
                assert inc["deepseek"].error == "answer is not JSON"
                assert inc["mistral"].error == f"answer larger than {MAX_PAGE_BYTES // 1000} KB"
                pages.serve["groq"] = doc("anthropic_resolved.json")  # later reads need not wait for a hang
                [alert] = [a for a in snap.alerts if a.rule == "provider_incident"]
                assert (alert.subject, alert.severity, alert.message) == ("anthropic", "warning", headline_expected())

                # The page stops answering sense: the alert stays, the line says the reading is stale.
                pages.serve["anthropic"] = b"garbage"
                clock.advance(121)
                await collector.run_round()
                await collector.status_pages.settle(10)
                clock.advance(400)  # past three intervals since the last good reading
                await collector.run_round()
                snap = await build_snapshot(store, ctx, clock.now())
                assert snap.incidents["anthropic"].error == "answer is not JSON"
                assert (
                    snap.incidents["anthropic"]
                    .headline()
                    .startswith(headline_expected() + " [stale: page not read since")
                )
                assert [a.rule for a in snap.alerts if a.subject == "anthropic"] == ["provider_incident"]

                # Resolved on the page: the alert resolves.
                pages.serve["anthropic"] = doc("anthropic_resolved.json")
                await collector.status_pages.settle(10)  # the read the last round started
                clock.advance(121)
                await collector.run_round()
                await collector.status_pages.settle(10)
                clock.advance(30)
                await collector.run_round()
                snap = await build_snapshot(store, ctx, clock.now())
                assert snap.incidents["anthropic"].headline() == "" and snap.incidents["anthropic"].error is None
                assert not [a for a in snap.alerts if a.rule == "provider_incident"]
            finally:
                await collector.status_pages.stop()
                await collector.notifier.drain(5)
                await store.close()


async def test_catalog_pages_only_for_providers_at_their_catalog_address(tmp_path):
    """A provider pointed at a fake, a proxy or the simulator gets no vendor page (and no test reaches out)."""
    with Fleet([FakeProvider("openai", key=KEY)]) as fleet:
        (tmp_path / "llmpulse.toml").write_text(f'[providers.openai]\nbase_url = "{fleet.base_url("openai")}"\n')
        ctx = load_context(str(tmp_path / "llmpulse.toml"), str(tmp_path / "s.db"), environ={"OPENAI_API_KEY": KEY})
        store = await Store.open(ctx.db_path)
        try:
            collector = Collector(ctx, store, on_event=lambda _: None)
            assert collector.status_pages.pages(ctx.providers) == {}
            catalog = load_context(None, str(tmp_path / "t.db"), environ={"OPENAI_API_KEY": KEY})
            pages = collector.status_pages.pages(catalog.providers)
            assert pages == {"openai": PageConfig("https://status.openai.com", pages["openai"].components)}
        finally:
            await store.close()
