"""The client probes and failover chats send with (httpx's API over aiohttp's pool, llmpulse.core.http_client),
against a real misbehaving server on 127.0.0.1: each way a peer can break an exchange comes out as the httpx
error httpx's own transport raises for it, and so as the error kind a probe or a chat reports: a refused
or reset connection is never a "timeout"; long header lines are read; no cookie comes back; a proxy from
the environment is used."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from llmpulse.core.catalog import CATALOG_BY_ID, ProviderOverride, resolve_providers
from llmpulse.core.http_answer import fetch
from llmpulse.core.http_client import provider_client
from llmpulse.core.probe import probe_all
from llmpulse.core.probe_settings import ProbeSettings
from llmpulse.core.simulator.fleet import FakeProvider, Fleet

KEY = "sk-proj-HttpClientTest0123456789abcdef"
MODELS_BODY = b'{"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}'
SETTINGS = ProbeSettings(timeout=5.0, slow=5.0)


class Peer:
    """HTTP/1.1 on 127.0.0.1 that breaks the exchange as the first path segment says: /reset (hang up
    after the request, no answer), /garbage (not HTTP), /short (a body cut before its content-length),
    /gzip (a gzip-encoded model list), /longheader (a 20 KB header line, then a model list), /cookie (sets a cookie; answers whether the
    request carried one), /echo (the request's body and content type), /huge (a 2xx body that never
    ends), anything else a model list. Proxy requests (absolute URLs) are counted."""

    def __init__(self) -> None:
        self.proxied: list[str] = []
        self.port = 0
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                target = head.split(" ", 2)[1]
                fields = {
                    k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:])
                }
                sent = await reader.readexactly(int(fields.get("content-length", "0") or 0))
                if target.startswith("http://"):
                    self.proxied.append(target)
                    target = "/" + target.split("/", 3)[3]
                what = target.strip("/").split("/", 1)[0]
                if what == "reset":
                    return
                if what == "huge":  # a 2xx whose body never ends
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n"
                    )
                    while True:
                        writer.write(b" " * 65536)
                        await writer.drain()
                if what == "garbage":
                    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
                    return
                if what == "short":
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 900\r\n\r\n{")
                    return
                body, extra = MODELS_BODY, b""
                if what == "echo":  # what arrived: the body and its content type
                    body = json.dumps({"body": sent.decode(), "type": fields.get("content-type")}).encode()
                if what == "gzip":
                    body, extra = gzip.compress(MODELS_BODY), b"content-encoding: gzip\r\n"
                if what == "longheader":
                    extra = b"content-security-policy: " + b"a" * 20_000 + b"\r\n"
                if what == "cookie":
                    sent = b"yes" if "\r\ncookie:" in head.lower() else b"no"
                    body, extra = b'{"cookie": "%s", "data": []}' % sent, b"set-cookie: __cf_bm=abc; Path=/\r\n"
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s"
                    % (extra, len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    server = await asyncio.start_server(p.handle, "127.0.0.1", 0)
    p.port = server.sockets[0].getsockname()[1]
    try:
        yield p
    finally:
        server.close()


def provider_at(url: str):  # type: ignore[no-untyped-def]
    spec = replace(CATALOG_BY_ID["openai"], id="openai")
    [p] = resolve_providers({"openai": spec}, {"OPENAI_API_KEY": KEY}, {"openai": ProviderOverride(base_url=url)})
    return p


@pytest.mark.parametrize(
    ("path", "error", "kind"),
    [
        ("reset", httpx.RemoteProtocolError, "connect"),
        ("garbage", httpx.RemoteProtocolError, "connect"),
        ("short", httpx.RemoteProtocolError, "connect"),
    ],
)
async def test_a_broken_exchange_is_httpx_s_error_for_it_and_a_probe_calls_it_connect(path, error, kind):
    async with peer() as p, provider_client(timeout=5) as client:
        url = f"http://127.0.0.1:{p.port}/{path}/models"
        with pytest.raises(error) as raised:
            (await client.get(url)).raise_for_status()
        assert not isinstance(raised.value, httpx.TimeoutException)
        [r] = await probe_all([provider_at(f"http://127.0.0.1:{p.port}/{path}")], SETTINGS)
        assert (r.status, r.error_kind) == ("failed", kind)
        assert "no answer within" not in (r.error or "") and KEY not in (r.error or "")


async def test_a_refused_connection_is_a_connect_error_not_a_timeout():
    async with provider_client(timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(Fleet.closed_port_url() + "/models")
    [r] = await probe_all([provider_at(Fleet.closed_port_url())], SETTINGS)
    assert (r.status, r.error_kind) == ("failed", "connect") and r.error.startswith("cannot connect")


async def test_a_long_header_line_is_read_like_httpx_reads_it():
    async with peer() as p:
        [r] = await probe_all([provider_at(f"http://127.0.0.1:{p.port}/longheader")], SETTINGS)
        assert (r.status, r.error_kind) == ("healthy", None)
        async with httpx.AsyncClient() as plain, provider_client(timeout=5) as ours:
            url = f"http://127.0.0.1:{p.port}/longheader/models"
            a, b = await plain.get(url), await ours.get(url)
        assert b.headers["content-security-policy"] == a.headers["content-security-policy"] == "a" * 20_000


async def test_no_cookie_a_provider_sets_is_sent_back():
    async with peer() as p, provider_client(timeout=5) as client:
        url = f"http://127.0.0.1:{p.port}/cookie/models"
        first = await client.get(url)
        assert first.headers["set-cookie"].startswith("__cf_bm=")
        assert (await client.get(url)).json()["cookie"] == "no"
        assert not client.cookies
        async with httpx.AsyncClient() as plain:  # what httpx alone would do: the check above can fail
            await plain.get(url)
            assert (await plain.get(url)).json()["cookie"] == "yes"


async def test_a_proxy_from_the_environment_is_used(monkeypatch):
    async with peer() as proxy:
        with Fleet([FakeProvider("openai", kind="openai", key=KEY)]) as fleet:
            monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            # the peer answers proxied requests itself: what matters is that the request went to it
            [r] = await probe_all([provider_at(fleet.base_url("openai"))], SETTINGS)
            assert r.status == "healthy"
            assert proxy.proxied == [fleet.base_url("openai") + "/models"]
            assert fleet.requests("openai") == []
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            [r] = await probe_all([provider_at(fleet.base_url("openai"))], SETTINGS)
            assert r.status == "healthy" and len(proxy.proxied) == 1 and len(fleet.requests("openai")) == 1


async def chat_with_openai_at(peer_path: str, tmp_path, timeout: float):  # type: ignore[no-untyped-def]
    """A FailoverClient chat with OpenAI first, at the misbehaving peer's `peer_path`, and a healthy
    Mistral (the simulator) behind it: what the first attempt became and who answered."""
    from llmpulse.core.config import load_context
    from llmpulse.core.failover import FailoverClient
    from llmpulse.core.store import Store

    async with peer() as p:
        with Fleet([FakeProvider("mistral", kind="mistral", key=KEY)]) as fleet:
            (tmp_path / "llmpulse.toml").write_text(
                f'[providers.openai]\nbase_url = "http://127.0.0.1:{p.port}/{peer_path}/v1"\n'
                f'[providers.mistral]\nbase_url = "{fleet.base_url("mistral")}"\n'
            )
            env = {"OPENAI_API_KEY": KEY, "MISTRAL_API_KEY": KEY}
            ctx = load_context(config_path=str(tmp_path / "llmpulse.toml"), db_path=str(tmp_path / "f.db"), environ=env)
            store = await Store.open(ctx.db_path)
            try:
                async with FailoverClient(ctx, store, timeout=timeout) as client:
                    return await client.chat(
                        [{"role": "user", "content": "hi"}],
                        models={"openai": "gpt-4o-mini", "mistral": "mistral-small-latest"},
                    )
            finally:
                await store.close()


async def test_a_chat_to_a_provider_that_hangs_up_falls_through_as_a_connection_error(tmp_path):
    answer = await chat_with_openai_at("reset", tmp_path, timeout=5)
    assert answer.provider_id == "mistral"
    first = answer.attempts[0]
    assert (first.provider_id, first.error_kind) == ("openai", "connect")
    assert first.error.startswith("RemoteProtocolError") and KEY not in first.error


@pytest.mark.parametrize("path", ["models", "gzip", "longheader"])
async def test_a_bounded_read_through_the_pool_is_the_answer_httpx_reads(path, monkeypatch):
    """http_answer.fetch on this client skips httpx's layers (straight to the aiohttp pool): same status,
    body (inflated) and headers as plain httpx; a cap truncates both alike."""
    async with peer() as p, httpx.AsyncClient() as plain, provider_client(timeout=5) as ours:

        def not_through_httpx(*args, **kwargs):
            raise AssertionError("the bounded read went through httpx's stream()")

        monkeypatch.setattr(ours, "stream", not_through_httpx)
        url = f"http://127.0.0.1:{p.port}/{path}/models"
        for limit in (1 << 20, 10):
            a = await fetch(plain, "GET", url, limit=limit, headers={"accept": "application/json"})
            b = await fetch(ours, "GET", url, limit=limit, headers={"accept": "application/json"})
            assert (b.status_code, b.body, b.truncated) == (a.status_code, a.body, a.truncated)
            assert sorted(b.headers.multi_items()) == sorted(a.headers.multi_items())
        assert a.truncated and len(a.body) == 10 and a.body == MODELS_BODY[:10]


@pytest.mark.parametrize(("interval", "connections"), [(1.0, 1), (30.0, 2)])
async def test_the_collector_s_probe_client_keeps_a_connection_only_when_the_next_round_can_reuse_it(
    interval, connections
):
    """Rounds 1 s apart reuse the connection (within the 5 s keep-alive); rounds 30 s apart close it
    once answered instead of leaving it idle until it expires."""
    from llmpulse.core.probe import ProbeClients

    settings = replace(SETTINGS, interval=interval)
    async with peer() as p, ProbeClients(settings) as clients:
        provider = provider_at(f"http://127.0.0.1:{p.port}/fine")
        for _ in range(2):
            [r] = await probe_all([provider], settings, clients=clients)
            assert r.status == "healthy"
        assert p.connections == connections


async def test_a_json_body_is_sent_as_httpx_sends_it():
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "héllo ✓"}], "n": 1}
    async with peer() as p, httpx.AsyncClient() as plain, provider_client(timeout=5) as ours:
        url = f"http://127.0.0.1:{p.port}/echo/chat/completions"
        a = await fetch(plain, "POST", url, json=payload)
        b = await fetch(ours, "POST", url, json=payload, headers={"authorization": "Bearer x"})
    assert (
        b.json()
        == a.json()
        == {"body": json.dumps(payload, ensure_ascii=False, separators=(",", ":")), "type": "application/json"}
    )


async def test_a_chat_answer_that_never_ends_costs_a_capped_read_and_falls_through(tmp_path):
    from llmpulse.core.failover import CHAT_ANSWER_BYTES

    answer = await chat_with_openai_at("huge", tmp_path, timeout=30)
    assert answer.provider_id == "mistral"
    first = answer.attempts[0]
    assert (first.provider_id, first.error_kind, first.http_status) == ("openai", "bad_response", 200)
    assert f"{CHAT_ANSWER_BYTES:,} bytes" in first.error
