"""Strict, typed reading of config tables.

Every error names the file, the dotted key, what was found and what is expected, on one line,
because the person reading it is usually fixing a config over SSH with no traceback to go on.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any, TypeVar, overload

from llmpulse.core.durations import MAX_DURATION_S, DurationError, format_duration, parse_duration
from llmpulse.core.errors import LlmpulseError
from llmpulse.core.redact import redact


class ConfigError(LlmpulseError):
    """A config value that is missing, unknown or of the wrong shape."""

    label = "config error"
    exit_code = 2

    def __init__(self, source: str, key: str, found: str, expected: str):
        self.source, self.key, self.found, self.expected = source, key, found, expected
        super().__init__(f"{source}: {key}: found {found}; expected {expected}")


def describe(value: Any) -> str:
    """How a found value is shown in an error: its type and a short repr."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"a list {value!r}"[:80]
    text = redact(repr(value))  # redact first, then cut: a cut must not leave a secret's first characters
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


_MISSING = object()

# A getter's default comes back as given (often None): the result is the key's type or the default's.
_D = TypeVar("_D")
# A string limited to `choices` is one of them (a Literal when the choices are a Literal's values).
_S = TypeVar("_S", bound=str)


class Section:
    """One TOML table; getters record which keys were read so `done()` can reject the rest."""

    def __init__(self, data: dict[str, Any], source: str, prefix: str = ""):
        self.data = data
        self.source = source
        self.prefix = prefix
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, found: Any, expected: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), describe(found), expected)

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        self._seen.add(name)
        if name not in self.data:
            if default is _MISSING:
                raise ConfigError(self.source, self.key(name), "nothing", "this key to be set")
            return default
        return self.data[name]

    @overload
    def string(self, name: str) -> str: ...
    @overload
    def string(self, name: str, default: _D) -> str | _D: ...
    @overload
    def string(self, name: str, *, choices: Iterable[_S]) -> _S: ...
    @overload
    def string(self, name: str, default: None, choices: Iterable[_S]) -> _S | None: ...
    @overload
    def string(self, name: str, default: _S, choices: Iterable[_S]) -> _S: ...
    def string(self, name: str, default: Any = _MISSING, choices: Iterable[str] | None = None) -> Any:
        value = self.raw(name, default)
        if value is default and name not in self.data:
            return value
        if not isinstance(value, str):
            raise self.error(name, value, "a string")
        if choices is not None:
            allowed = list(choices)
            if value not in allowed:
                raise self.error(name, value, "one of " + ", ".join(allowed))
        return value

    @overload
    def boolean(self, name: str) -> bool: ...
    @overload
    def boolean(self, name: str, default: _D) -> bool | _D: ...
    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if name in self.data and not isinstance(value, bool):
            raise self.error(name, value, "true or false")
        return value

    @overload
    def number(self, name: str, *, minimum: float | None = 0.0, maximum: float | None = None) -> float: ...
    @overload
    def number(
        self, name: str, default: _D, minimum: float | None = 0.0, maximum: float | None = None
    ) -> float | _D: ...
    def number(
        self, name: str, default: Any = _MISSING, minimum: float | None = 0.0, maximum: float | None = None
    ) -> Any:
        value = self.raw(name, default)
        if name not in self.data:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, value, "a number")
        if not math.isfinite(value):  # TOML allows nan and inf; no setting means them
            raise self.error(name, value, "a finite number")
        if minimum is not None and value < minimum:
            raise self.error(name, value, f"a number >= {minimum:g}")
        if maximum is not None and value > maximum:
            raise self.error(name, value, f"a number <= {maximum:g}")
        return float(value)

    @overload
    def integer(self, name: str, *, minimum: int | None = 0) -> int: ...
    @overload
    def integer(self, name: str, default: _D, minimum: int | None = 0) -> int | _D: ...
    def integer(self, name: str, default: Any = _MISSING, minimum: int | None = 0) -> Any:
        value = self.raw(name, default)
        if name not in self.data:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, value, "a whole number")
        if minimum is not None and value < minimum:
            raise self.error(name, value, f"a whole number >= {minimum}")
        return value

    @overload
    def duration(self, name: str, *, minimum: float = 0.0, maximum: float = MAX_DURATION_S) -> float: ...
    @overload
    def duration(self, name: str, default: _D, minimum: float = 0.0, maximum: float = MAX_DURATION_S) -> float | _D: ...
    def duration(
        self, name: str, default: Any = _MISSING, minimum: float = 0.0, maximum: float = MAX_DURATION_S
    ) -> Any:
        """Seconds, from a string like "30s"; a bare number is taken as seconds. Between minimum and
        maximum (nan, inf and 400-digit numbers are refused, naming the bounds)."""
        bounds = f"from {format_duration(minimum) if minimum else '0s'} to {format_duration(maximum)}"
        expected = f'a duration like "500ms", "30s", "5m", "1h", "7d", {bounds}'
        value = self.raw(name, default)
        if name not in self.data:
            return value
        if isinstance(value, bool):
            raise self.error(name, value, expected)
        if isinstance(value, (int, float)):
            seconds = float(value)
        elif isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except DurationError:
                raise self.error(name, value, expected) from None
        else:
            raise self.error(name, value, expected)
        if not (minimum <= seconds <= maximum):  # also false for nan
            raise self.error(name, value, f"a duration {bounds}")
        return seconds

    @overload
    def date(self, name: str) -> dt.date: ...
    @overload
    def date(self, name: str, default: _D) -> dt.date | _D: ...
    def date(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if name not in self.data:
            return value
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise self.error(name, value, "a date like 2025-07-14")

    @overload
    def string_list(self, name: str) -> list[str]: ...
    @overload
    def string_list(self, name: str, default: _D) -> list[str] | _D: ...
    def string_list(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if name not in self.data:
            return value
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, value, "a list of strings")
        return list(value)

    @overload
    def number_list(self, name: str, *, minimum: float = 0.0) -> list[float]: ...
    @overload
    def number_list(self, name: str, default: _D, minimum: float = 0.0) -> list[float] | _D: ...
    def number_list(self, name: str, default: Any = _MISSING, minimum: float = 0.0) -> Any:
        value = self.raw(name, default)
        if name not in self.data:
            return value
        if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise self.error(name, value, "a list of numbers")
        if any(v < minimum for v in value):
            raise self.error(name, value, f"numbers >= {minimum:g}")
        return [float(v) for v in value]

    def table(self, name: str) -> Section:
        """A sub-table; an absent one reads as empty so defaults apply."""
        value = self.raw(name, {})
        if not isinstance(value, dict):
            raise self.error(name, value, "a table")
        return Section(value, self.source, self.key(name))

    def tables(self, name: str) -> list[Section]:
        """An array of tables ([[name]])."""
        value = self.raw(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(name, value, f"an array of tables ([[{self.key(name)}]])")
        return [Section(v, self.source, f"{self.key(name)}[{i}]") for i, v in enumerate(value)]

    def done(self) -> None:
        """Reject any key nobody read: a typo must not silently fall back to a default."""
        unknown = [k for k in self.data if k not in self._seen]
        if unknown:
            known = sorted(self._seen)
            raise ConfigError(
                self.source,
                self.key(unknown[0]),
                "an unknown key",
                "one of " + ", ".join(known) if known else "no keys here",
            )
