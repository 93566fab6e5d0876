"""Keep API keys, admin keys, webhook URLs and passwords out of the database, logs, screen, exports and
error text — and terminal control sequences off the screen.

Two nets: every secret llmpulse loaded is replaced wherever it appears, also as a provider may echo it
(URL-encoded, JSON-escaped); and anything shaped like a secret is masked even if we never loaded it:
provider keys (sk-..., sk-ant-..., AIza..., gsk_..., xai-..., Bearer ...), a webhook's token path
(Slack /services/T…/B…/…, Discord /api/webhooks/…/…), token-like query values (?token=, ?key=, …) and
the user:password part of a URL. Text is always redacted whole and only then cut, so a key echoed
across a cut cannot leak its first characters.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Iterable
from typing import overload
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"

_KEY_PATTERNS = re.compile(
    r"""(
        sk-ant-[A-Za-z0-9_\-]{8,}          # Anthropic
      | sk-(?:proj-|or-v1-|svcacct-)?[A-Za-z0-9_\-]{8,}   # OpenAI, OpenRouter, DeepSeek, Moonshot
      | AIza[0-9A-Za-z_\-]{20,}           # Google
      | gsk_[A-Za-z0-9]{16,}              # Groq
      | xai-[A-Za-z0-9]{16,}              # xAI
      | (?<=Bearer\ )[A-Za-z0-9._\-]{8,}  # any bearer token
      | (?P<keep>[?&](?i:key|token|access_token|api_key|apikey|secret|password|sig|signature|auth|code)=)[^&\s"'<>]{4,}
      | (?<=/services/)[A-Za-z0-9]+/[A-Za-z0-9]+/[A-Za-z0-9]+    # a Slack webhook's token path
      | (?<=/api/webhooks/)[0-9]+/[A-Za-z0-9_\-]+                # a Discord webhook's id and token
      | (?<=://)[^/\s:@"'<>]+:[^/\s@"'<>]+(?=@)                  # user:password in a URL
    )""",
    re.VERBOSE,
)
# ESC-started sequences (CSI "ESC [ … final", OSC "ESC ] … BEL|ST", and two-byte ones), C1 controls and C0
# controls other than tab and newline: an error body or an imported field must not retitle, clear or
# recolour the terminal of whoever reads it.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)

_known: set[str] = set()
_by_length: list[str] = []  # _known, longest first (a secret inside another is masked as part of it)


def _echoed_forms(value: str) -> set[str]:
    """The secret as a provider or a proxy may echo it back: URL-encoded, form-encoded, JSON-escaped."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value), json.dumps(value)[1:-1]}
    forms.add(json.dumps(value)[1:-1].replace("/", "\\/"))
    forms.add(json.dumps(value, ensure_ascii=True)[1:-1])
    return {f for f in forms if len(f) >= 4}


def register_secret(value: str | None) -> None:
    """Remember a loaded secret so it is masked wherever it shows up, whatever its shape or encoding.
    A URL's password and its token-like query values are remembered on their own too."""
    global _by_length
    if not value or len(value) < 4:
        return
    new = _echoed_forms(value)
    if "://" in value:
        parts = urlsplit(value)
        if parts.password:
            new |= _echoed_forms(unquote(parts.password))
            new |= _echoed_forms(parts.password)
    if new <= _known:
        return
    _known.update(new)
    _by_length = sorted(_known, key=len, reverse=True)


def register_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        register_secret(value)


def registered_secrets() -> list[str]:
    """Every form registered so far: handed to a worker process (the import's), so its messages are
    redacted, and only then cut, as this process's are."""
    return list(_known)


@overload
def redact(text: str, extra: Iterable[str] = ()) -> str: ...
@overload
def redact(text: None, extra: Iterable[str] = ()) -> None: ...
@overload
def redact(text: str | None, extra: Iterable[str] = ()) -> str | None: ...
def redact(text: str | None, extra: Iterable[str] = ()) -> str | None:
    if not text:
        return text
    secrets = _by_length
    if extra:
        secrets = sorted({*_known, *(f for e in extra if e for f in _echoed_forms(e))}, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return _KEY_PATTERNS.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    return (match.group("keep") or "") + MASK


def strip_control(text: str) -> str:
    """Text without terminal control sequences (tab and newline kept)."""
    return _CONTROL.sub("", text) if not text.isascii() or "\x1b" in text or _has_c0(text) else text


def _has_c0(text: str) -> bool:
    return any(ch < " " and ch not in "\t\n" for ch in text) or "\x7f" in text


def safe_text(text: str) -> str:
    """For any screen, log or file a person reads: secrets masked, control sequences gone."""
    return strip_control(redact(text))


def safe_cut(text: str, limit: int) -> str:
    """Redact first, then cut to `limit` characters (with "…"): a cut never splits a secret unmasked."""
    text = safe_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RedactingFilter(logging.Filter):
    """A log handler's last net: the formatted message redacted and stripped of control sequences."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = safe_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


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
    return safe_cut(" ".join(text.split()), limit)
