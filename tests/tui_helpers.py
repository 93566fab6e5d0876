"""What the dashboard tests share: waiting until the app has reached the state a test needs.

Every wait here is for a condition, never for a time. `pilot.press` returns once the process *looks*
idle (Textual compares CPU time with wall time), which on a loaded machine can be before the key has
been handled; so a test waits for what the key should have done. The limit only decides how long a
failing test takes to say so: it is long enough that no load makes a passing test fail."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

# Seconds a condition may take before the test fails. Only a failing test ever waits this long.
WAIT_LIMIT = 30.0


async def wait_for(pilot: Any, condition: Callable[[], object], seconds: float = WAIT_LIMIT) -> bool:
    """True as soon as `condition()` holds; False if it still does not after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return bool(condition())
        await pilot.pause(0.01)
    return True


async def settle(pilot: Any, app: Any, polls: int = 1) -> None:
    """Wait until the app has drawn `polls` snapshots, then let the screen catch up."""
    assert await wait_for(pilot, lambda: app.polls >= polls), f"the app drew {app.polls} of {polls} snapshots"
    await pilot.pause()
    await pilot.pause()


async def ready(pilot: Any) -> None:
    """Wait until the app has drawn its first snapshot."""
    await settle(pilot, pilot.app)


def shown(app: Any, selector: str) -> str:
    """What the widget `selector` on the current screen shows; "" while that screen is not up yet."""
    found = app.screen.query(selector)
    return str(found.first().render()) if found else ""
