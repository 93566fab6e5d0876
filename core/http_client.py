"""The client that sends to providers (probes and failover chats): httpx's API over aiohttp's connection pool.

httpx's own pool (httpcore) costs about 0.5 ms of CPU a request here and topped out at 560–720 requests/s
at concurrency 100 on a 2-core machine; the same httpx calls through httpx-aiohttp's transport (the one
the openai SDK's DefaultAioHttpClient uses) cost about half and sustain several thousand a second. The
callers keep speaking httpx: requests, streamed answers (llmpulse.core.http_answer's byte-capped reads),
`httpx.HTTPError`s, proxies from the environment (HTTPS_PROXY, NO_PROXY), TLS verification.

What this module adds to httpx-aiohttp:
- errors as httpx's own transport names them. httpx-aiohttp turns a refused or reset connection into
  `httpx.ConnectTimeout` (a "timeout" nobody waited for) and lets a malformed answer (a bad status line)
  out as a raw aiohttp error; a probe or a chat must report a refused connection as a connection error.
- no cookies: provider APIs authenticate by key, and nothing a provider or its CDN sets is sent back
  (reading every answer's Set-Cookie into httpx's jar cost 8% of a chat's CPU).
- httpx's tolerance of long header lines (aiohttp refuses more than 8 KiB in a line; a CDN's Set-Cookie or
  CSP header can be longer).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from json import dumps as json_dumps
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient

from llmpulse.core.http_answer import Answer, read_capped

# Longest header line / most header lines accepted in an answer (h11, httpx's parser, allows 100 KiB).
MAX_HEADER_LINE = 64 * 1024
MAX_HEADERS = 512
CHUNK = 64 * 1024  # bytes read at a time from an answer
KEEPALIVE_S = 5.0  # how long an idle connection is kept for the next request (httpx's default)

# aiohttp's error -> the httpx error httpx's own transport raises for the same event; most specific first.
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),  # SocketTimeoutError: no byte within the read timeout
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS handshake, certificate
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),  # hung up before (all of) the answer
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # body cut short or malformed
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # not HTTP: bad status line, broken headers
    (aiohttp.ClientOSError, httpx.ReadError),  # reset by peer mid-exchange
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientError, httpx.TransportError),
)


def aiohttp_cause(exc: BaseException) -> BaseException:
    """The aiohttp error behind httpx-aiohttp's translation of it (or `exc` itself)."""
    if isinstance(exc, httpx.TransportError) and isinstance(exc.__cause__, aiohttp.ClientError):
        return exc.__cause__
    return exc


def translated(exc: BaseException) -> httpx.TransportError:
    """The httpx error for what went wrong, from an aiohttp error or httpx-aiohttp's translation of one."""
    cause = aiohttp_cause(exc)
    for source, target in _ERRORS:
        if isinstance(cause, source):
            return target(_message(cause))
    if isinstance(exc, httpx.TransportError):
        return exc
    return httpx.TransportError(_message(cause))


def _message(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.message  # its str() would add the URL; the request headers (keys) stay out either way
    return str(exc) or type(exc).__name__


class _Body(httpx.AsyncByteStream):
    """The answer's bytes, with a failure mid-body raised as httpx's error for it."""

    def __init__(self, inner: httpx.AsyncByteStream):
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            raise translated(exc) from aiohttp_cause(exc)

    async def aclose(self) -> None:
        await self._inner.aclose()  # an answer not read to its end closes its connection (never reused)


class _NoCookies(httpx.Cookies):
    """Cookies that keep nothing from an answer. httpx reads every answer into its client's cookies
    (building urllib request and response wrappers for http.cookiejar, even when there is no Set-Cookie)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class ProviderTransport(AiohttpTransport):
    """httpx-aiohttp's transport with httpx's error names, no aiohttp cookie jar and long header lines."""

    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session (and its pool), made on first use inside the running event loop."""
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        return self.client

    def get_client(self) -> aiohttp.ClientSession:
        # httpx's max_keepalive_connections=0 (no connection kept once its answer is read) is aiohttp's
        # force_close; aiohttp refuses a keep-alive timeout beside it.
        limit = self.limits.max_connections or 0  # 0: no limit (the callers bound their concurrency)
        if self.limits.max_keepalive_connections == 0:
            connector = aiohttp.TCPConnector(limit=limit, force_close=True, ssl=self.ssl_context)
        else:
            keepalive = self.limits.keepalive_expiry or KEEPALIVE_S
            connector = aiohttp.TCPConnector(limit=limit, keepalive_timeout=keepalive, ssl=self.ssl_context)
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            max_line_size=MAX_HEADER_LINE,
            max_field_size=MAX_HEADER_LINE,
            max_headers=MAX_HEADERS,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            raise translated(exc) from aiohttp_cause(exc)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream)
        return response


class ProviderClient(HttpxAiohttpClient):
    """An `httpx.AsyncClient` whose requests go through `ProviderTransport` (proxies from the environment
    too: httpx mounts one transport per proxy through `_init_proxy_transport`). Keeps no cookies."""

    def __init__(self, **kwargs: Any) -> None:
        self._kept_none = _NoCookies()
        self._plain_headers: dict[str, str] | None = None
        super().__init__(**kwargs)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._kept_none

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        return None  # nothing is kept

    async def fetch_bounded(
        self,
        method: str,
        url: str,
        *,
        limit: int,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        json: Any = None,
        **kwargs: Any,
    ) -> Answer | None:
        """llmpulse.core.http_answer.fetch for a request without a body or with a JSON one, sent straight
        through the aiohttp session httpx would use for `url` (its proxy included): the same request,
        answer and errors at about half the CPU (httpx's request and response models, cookie and redirect
        steps skipped; a 5,000-provider probe round spent half its time there). None when the request
        needs httpx's whole path: another kind of body or option, redirects to follow, or a transport
        that is not ours."""
        # Without a proxy mounted (the usual case) no URL needs parsing to pick the transport.
        transport = self._transport_for_url(httpx.URL(url)) if self._mounts else self._transport
        if kwargs or self.follow_redirects or not isinstance(transport, ProviderTransport):
            return None
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        if self._plain_headers is None:  # the client's own headers as a dict, once (they never change)
            self._plain_headers = {k: v for k, v in self.headers.items() if k not in ("accept-encoding", "connection")}
        sent = {**self._plain_headers, **(headers or {})}
        sent["accept-encoding"] = "gzip, deflate"  # what read_capped inflates (httpx's own decoders too)
        content = None
        if json is not None:  # encoded as httpx encodes it
            content = json_dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            if not any(k.lower() == "content-type" for k in sent):
                sent["content-type"] = "application/json"
        limits = self.timeout if timeout is None else httpx.Timeout(timeout)
        proxy = transport.proxy
        try:
            async with transport.session().request(
                method,
                url,
                headers=sent,
                data=content,
                allow_redirects=False,
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(sock_connect=limits.connect, sock_read=limits.read, connect=limits.pool),
                proxy=str(proxy.url) if proxy else None,
                proxy_auth=aiohttp.BasicAuth(*proxy.auth) if proxy and proxy.auth else None,
                proxy_headers=proxy.headers if proxy else None,
            ) as response:
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                body, truncated = await read_capped(response.content.iter_chunked(CHUNK), encoding, limit)
                return Answer(response.status, httpx.Headers(response.raw_headers), body, truncated)
        except aiohttp.ClientError as exc:
            raise translated(exc) from exc

    def _init_transport(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),
        transport: httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> httpx.AsyncBaseTransport:
        if transport is not None:
            return transport
        return ProviderTransport(verify=verify, cert=cert, trust_env=trust_env, limits=limits)

    def _init_proxy_transport(
        self,
        proxy: httpx.Proxy,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),
        **kwargs: Any,
    ) -> httpx.AsyncBaseTransport:
        return ProviderTransport(verify=verify, cert=cert, trust_env=trust_env, limits=limits, proxy=proxy)


def provider_client(
    *,
    timeout: float,
    max_connections: int | None = None,
    keep_alive: bool = True,
    verify: ssl.SSLContext | bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ProviderClient:
    """A client for requests to providers. `max_connections` None: no pool limit (the caller bounds how
    many requests are in flight). `keep_alive` False: each connection is closed once its answer is read
    (nothing would reuse it within KEEPALIVE_S). `transport` replaces aiohttp (tests, custom transports)."""
    return ProviderClient(
        timeout=timeout,
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=None if keep_alive else 0,
            keepalive_expiry=KEEPALIVE_S,
        ),
        follow_redirects=False,
        verify=verify,
        transport=transport,
    )  # trust_env: HTTPS_PROXY / NO_PROXY honoured
