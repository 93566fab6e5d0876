"""Human durations used in config and on the command line: "500ms", "30s", "5m", "1h", "7d", "1h30m"."""

from __future__ import annotations

import math
import re

from llmpulse.core.errors import LlmpulseError

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


# The longest duration any setting or command accepts: longer is a typo (99999999d) or an overflow
# (400 digits read as infinity), and would break every date computed from it.
MAX_DURATION_S = 3650 * 86400.0


class DurationError(LlmpulseError, ValueError):
    """A duration string that does not parse."""


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise DurationError naming what is expected."""
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned:
        raise DurationError("empty duration; expected e.g. 500ms, 30s, 5m, 1h, 7d")
    pos = 0
    total = 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(cleaned):
        raise DurationError(f"{text!r} is not a duration; expected e.g. 500ms, 30s, 5m, 1h, 7d")
    if not math.isfinite(total) or total > MAX_DURATION_S:
        raise DurationError(f"{text[:40]!r} is too long; expected a duration from 0s to 3650d")
    return total


def format_duration(seconds: float) -> str:
    """Compact form for screens and logs: 0.5s -> "500ms", 90 -> "1m30s", 7200 -> "2h"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
        if len(parts) == 2:
            break
    return "".join(parts)
