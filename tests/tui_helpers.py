"""What the dashboard tests share: waiting until the app has drawn its snapshots."""

from __future__ import annotations

from typing import Any


async def settle(pilot: Any, app: Any, polls: int = 1) -> None:
    """Wait (up to 3 s) until the app has drawn `polls` snapshots, then let the screen catch up."""
    for _ in range(300):
        if app.polls >= polls:
            break
        await pilot.pause(0.01)
    await pilot.pause()
    await pilot.pause()
