"""Keep API keys out of the database, logs, screen, exports and error text.

Two nets: every key value llmpulse loaded is replaced wherever it appears, and anything shaped like a
provider key (sk-..., sk-ant-..., AIza..., gsk_..., xai-..., Bearer ...) is masked even if we never
loaded it, since providers echo keys back in error bodies ("Incorrect API key provided: sk-abc...").
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import overload

MASK = "***"

_KEY_PATTERNS = re.compile(
    r"""(
        sk-ant-[A-Za-z0-9_\-]{8,}          # Anthropic
      | sk-(?:proj-|or-v1-|svcacct-)?[A-Za-z0-9_\-]{8,}   # OpenAI, OpenRouter, DeepSeek, Moonshot
      | AIza[0-9A-Za-z_\-]{20,}           # Google
      | gsk_[A-Za-z0-9]{16,}              # Groq
      | xai-[A-Za-z0-9]{16,}              # xAI
      | (?<=Bearer\ )[A-Za-z0-9._\-]{8,}  # any bearer token
      | (?<=[?&]key=)[A-Za-z0-9._\-]{8,}  # a key in a query string
    )""",
    re.VERBOSE,
)

_known: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a loaded key so it is masked wherever it shows up, whatever its shape."""
    if value and len(value) >= 4:
        _known.add(value)


def register_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        register_secret(value)


@overload
def redact(text: str, extra: Iterable[str] = ()) -> str: ...
@overload
def redact(text: None, extra: Iterable[str] = ()) -> None: ...
@overload
def redact(text: str | None, extra: Iterable[str] = ()) -> str | None: ...
def redact(text: str | None, extra: Iterable[str] = ()) -> str | None:
    if not text:
        return text
    for secret in sorted({*_known, *(e for e in extra if e)}, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return _KEY_PATTERNS.sub(MASK, text)


_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_HTML_START = re.compile(r"\s*(<!doctype\s+html|<html|<head|<body|<\?xml|<[a-z]+[\s>])", re.IGNORECASE)


def body_line(text: str, limit: int = 300) -> str:
    """What of an answer's body may go into a log line or an alert: one line, redacted, at most `limit`
    characters. An HTML error page (a proxy's 502, a load balancer's 503) is cut to its <title> — its markup
    and scripts say nothing to on-call and would fill a log with one "line" of kilobytes."""
    if _HTML_START.match(text):
        title = _TITLE.search(text)
        text = html.unescape(title.group(1) if title else _TAG.sub(" ", text))
        text = f"HTML page: {' '.join(text.split()) or '(no title)'}"
    line = " ".join(text.split())
    if len(line) > limit:
        line = line[: limit - 1] + "…"
    return redact(line) or ""
