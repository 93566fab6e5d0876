"""The one root of every failure llmpulse expects: bad input, a refused request, an unusable file.

Anything deriving from `LlmpulseError` is something the person running llmpulse can fix; the CLI's
`main()` catches the root once and prints its message as one line, exiting with the error's
`exit_code`. Anything else reaching `main()` is a bug and is reported as an internal error.
"""

from __future__ import annotations


class LlmpulseError(Exception):
    """An expected failure, told in one line that names what was wrong and what is expected."""

    # How the CLI labels the line ("llmpulse: <label>: <message>") and the exit status it ends with.
    label: str = "error"
    exit_code: int = 1
