"""The words the core and the dashboard share, each defined once: provider status, error kind, alert
severity and state, circuit state.

They are `Literal` types (the values stay plain strings: they are what the database, the JSON exports
and the config file hold) with a tuple of every value for validation and iteration. Nothing here
imports anything of llmpulse, so the TUI may use it as freely as the core.
"""

from __future__ import annotations

from typing import Literal, get_args

# A provider's state from its latest probe. "unknown": llmpulse cannot see it (never probed, disabled,
# not configured, or the data is stale) — never shown as recovered.
ProviderStatus = Literal["healthy", "degraded", "failed", "unknown"]
PROVIDER_STATUSES: tuple[ProviderStatus, ...] = get_args(ProviderStatus)

# Why a probe or a request did not succeed.
ErrorKind = Literal[
    "not_configured",
    "disabled",
    "auth",
    "quota",
    "rate_limited",
    "overloaded",
    "server_error",
    "timeout",
    "connect",
    "bad_response",
    "bad_request",  # the failover client only: the provider says the request itself is wrong (400/404/422)
    "slow",
]
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)
# Kinds that say this account cannot be served by this provider until someone acts (a key, a top-up):
# retrying soon will not help, so a circuit opens at the first one and failover moves on.
ACCOUNT_KINDS: frozenset[ErrorKind] = frozenset({"auth", "quota"})

# An alert's severity, least severe first; the one ranking everything sorts and filters by.
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
SEVERITY_RANK: dict[str, int] = {name: i for i, name in enumerate(SEVERITIES)}  # higher is more severe
MOST_SEVERE_FIRST: tuple[Severity, ...] = tuple(reversed(SEVERITIES))


def most_severe_first(severity: str) -> int:
    """Sort key: critical, then warning, then info; a severity llmpulse does not know sorts last."""
    return -SEVERITY_RANK.get(severity, -1)


# An alert's lifecycle.
AlertState = Literal["firing", "acknowledged", "resolved"]
ALERT_STATES: tuple[AlertState, ...] = get_args(AlertState)

# A provider's circuit breaker: closed (requests flow), open (skipped), half_open (one trial let through).
Circuit = Literal["closed", "open", "half_open"]
CIRCUITS: tuple[Circuit, ...] = get_args(Circuit)


# -- counted nouns ---------------------------------------------------------------------------------
def plural(n: float, one: str, many: str | None = None) -> str:
    """The noun that goes with a count: `one` for exactly 1, else `many` (default: `one` + "s").
    0, 2 and 1.5 take the plural; irregular ones say theirs (plural(n, "was", "were"))."""
    return one if n == 1 else (many if many is not None else one + "s")


def counted(n: int, one: str, many: str | None = None) -> str:
    """A count with its noun, the count grouped by thousands: "1 record", "0 records", "1,234 records"."""
    return f"{n:,} {plural(n, one, many)}"
