"""Rate-limit headroom and provider balances, read from what a provider already tells us for free.

Every provider answers with its own headers: OpenAI/Groq `x-ratelimit-{limit,remaining}-{requests,tokens}`
with Go-style reset durations ("6m0s"), Anthropic `anthropic-ratelimit-{requests,tokens,input-tokens,
output-tokens}-*` with RFC 3339 resets, Together a bare `x-ratelimit-{limit,remaining,reset}` for requests
and `x-tokenlimit-{limit,remaining}` for tokens, Azure `x-ratelimit-remaining-*`, and anyone `retry-after`
(seconds or an HTTP date) or `retry-after-ms`. `parse_rate_limit` folds them into one `RateLimit`, whose
headroom is the tightest of every limit reported: the one that will refuse the next request first.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclass(frozen=True)
class RateLimit:
    requests_limit: int | None = None
    requests_remaining: int | None = None
    tokens_limit: int | None = None
    tokens_remaining: int | None = None
    reset_s: float | None = None  # seconds until the (requests) window resets
    retry_after_s: float | None = None
    # Anthropic limits input and output tokens apart from its (total) tokens limit.
    input_tokens_limit: int | None = None
    input_tokens_remaining: int | None = None
    output_tokens_limit: int | None = None
    output_tokens_remaining: int | None = None

    @property
    def headroom(self) -> float | None:
        """The smallest remaining/limit share over every limit reported, 0..1; None when nothing is known."""
        pairs = (
            (self.requests_limit, self.requests_remaining),
            (self.tokens_limit, self.tokens_remaining),
            (self.input_tokens_limit, self.input_tokens_remaining),
            (self.output_tokens_limit, self.output_tokens_remaining),
        )
        shares = [min(1.0, max(0.0, rem / lim)) for lim, rem in pairs if lim and rem is not None and lim > 0]
        return min(shares) if shares else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "headroom": self.headroom}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RateLimit:
        fields: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**fields)


@dataclass(frozen=True)
class Balance:
    amount: float | None = None  # what is left to spend
    currency: str | None = None
    limit: float | None = None  # a credit limit, where the provider has one
    used: float | None = None
    source: str = ""  # which endpoint said so

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Balance:
        fields: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**fields)


# A header value is a provider's claim, not ours: anything not a finite number in these bounds (`inf`,
# `nan`, 400 digits) is treated as absent, so one provider's odd header never breaks a probe round.
MAX_COUNT = 10**15
MAX_SECONDS = 366 * 86400.0


def _seconds(value: float) -> float | None:
    return max(0.0, value) if math.isfinite(value) and value <= MAX_SECONDS else None


def parse_reset(value: str | None, now: float | None = None) -> float | None:
    """Seconds until a reset given as plain seconds, a Go duration ("1m30s", "250ms") or an RFC 3339 time."""
    if not value:
        return None
    value = value.strip()[:64]
    try:
        return _seconds(float(value))
    except ValueError:
        pass
    matches = _GO_DURATION.findall(value)
    if matches and "".join(n + u for n, u in matches) == value:
        return _seconds(sum(float(n) * _GO_UNITS[u] for n, u in matches))
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return _seconds(at.timestamp() - (time.time() if now is None else now))


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return _seconds(float(ms[:64]) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return _seconds(float(value[:64]))
    except ValueError:
        pass
    # An HTTP date is rare (seconds are the norm): the email package is imported only for one, since
    # `llmpulse check` and every reader of probe results load this module at start-up.
    from email.utils import parsedate_to_datetime

    try:
        return _seconds(parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now))
    except (TypeError, ValueError, OverflowError):
        return None


def _int(headers: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            try:
                number = float(value[:64])
            except ValueError:
                continue
            if math.isfinite(number) and 0 <= number <= MAX_COUNT:
                return int(number)
    return None


def parse_rate_limit(headers: Mapping[str, str], now: float | None = None) -> RateLimit | None:
    """A RateLimit from response headers (any provider's names; lookups are case-insensitive when
    `headers` is an httpx.Headers), or None when the answer carried none."""
    h = {k.lower(): v for k, v in headers.items()}
    rl = RateLimit(
        requests_limit=_int(h, "x-ratelimit-limit-requests", "anthropic-ratelimit-requests-limit", "x-ratelimit-limit"),
        requests_remaining=_int(
            h, "x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining", "x-ratelimit-remaining"
        ),
        tokens_limit=_int(h, "x-ratelimit-limit-tokens", "anthropic-ratelimit-tokens-limit", "x-tokenlimit-limit"),
        tokens_remaining=_int(
            h, "x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining", "x-tokenlimit-remaining"
        ),
        input_tokens_limit=_int(h, "anthropic-ratelimit-input-tokens-limit"),
        input_tokens_remaining=_int(h, "anthropic-ratelimit-input-tokens-remaining"),
        output_tokens_limit=_int(h, "anthropic-ratelimit-output-tokens-limit"),
        output_tokens_remaining=_int(h, "anthropic-ratelimit-output-tokens-remaining"),
        reset_s=parse_reset(
            h.get("x-ratelimit-reset-requests")
            or h.get("anthropic-ratelimit-requests-reset")
            or h.get("x-ratelimit-reset"),
            now,
        ),
        retry_after_s=parse_retry_after(h, now),
    )
    return None if rl == RateLimit() else rl
