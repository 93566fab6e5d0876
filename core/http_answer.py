"""Reading a peer's answer — a provider's probe or billing answer, a status page, a webhook's reply —
with a fixed cap on the bytes kept, counted after decompression.

A peer is not trusted to be small: a 1 GiB error body, an answer that never ends or a 5 MB gzip bomb
(gigabytes once inflated) must cost at most `limit` bytes of memory. gzip and deflate are inflated here
with zlib's max_length, so not even one network chunk inflates past the cap; other encodings go through
httpx's decoders chunk by chunk. The caller keeps its own deadline around the call (asyncio.timeout):
reading stops at the cap or the deadline, whichever comes first.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only the caller's client sends: importing this module must not bring httpx in
    import httpx

MAX_ANSWER_BYTES = 1 << 20  # what any answer llmpulse reads needs, many times over


@dataclass(frozen=True)
class Answer:
    """The start of an answer: status, headers and at most `limit` bytes of the (decoded) body."""

    status_code: int
    headers: httpx.Headers
    body: bytes
    truncated: bool  # the peer sent more than the cap; what is here is only its start

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def _inflater(encoding: str) -> Any | None:
    """A zlib decompressor for gzip/deflate (None: identity, or an encoding httpx must decode)."""
    if encoding == "gzip":
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib-wrapped or raw: detected from the header
    return None


async def read_capped(chunks: AsyncIterator[bytes], encoding: str, limit: int) -> tuple[bytes, bool]:
    """(at most `limit` bytes of the answer, truncated) from its raw chunks, gzip/deflate inflated (any
    other content-encoding must be decoded by the caller before). Stops reading at the cap."""
    body = bytearray()
    inflater = _inflater(encoding)
    async for raw in chunks:
        data = raw if inflater is None else inflater.decompress(raw, limit + 1 - len(body))
        body += data
        if len(body) > limit or (inflater is not None and inflater.unconsumed_tail):
            return bytes(body[:limit]), True
    return bytes(body), False


async def fetch(
    client: httpx.AsyncClient, method: str, url: str, *, limit: int = MAX_ANSWER_BYTES, **kwargs: Any
) -> Answer:
    """Send a request and read at most `limit` bytes of the decoded answer; stop reading there."""
    # llmpulse.core.http_client's client sends a plain request straight through its aiohttp pool (httpx's
    # own layers were half the CPU of a probe); None: it needs httpx's whole path.
    bounded = getattr(client, "fetch_bounded", None)
    if bounded is not None:
        answer: Answer | None = await bounded(method, url, limit=limit, **kwargs)
        if answer is not None:
            return answer
    async with client.stream(method, url, **kwargs) as response:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if _inflater(encoding) is not None or encoding in ("", "identity"):
            body, truncated = await read_capped(response.aiter_raw(), encoding, limit)
        else:
            body, truncated = await read_capped(response.aiter_bytes(), "identity", limit)
        return Answer(response.status_code, response.headers, body, truncated)
