"""The terminal going away (an SSH session dropped: SIGHUP, SIGTERM, or a pty that is hung up).

The dashboard must then stop collecting, close the database and leave quickly instead of spinning on
a stdin that reads EOF forever. Restoring a terminal that is gone can block inside Textual's writer (its
queue fills with nowhere to write), so a watchdog ends the process if the orderly exit has not happened
within a grace period; by then the database is closed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import termios
import threading
from collections.abc import Awaitable, Callable

from textual.app import App

TERMINAL_GONE_GRACE_S = 2.0  # after a hang-up, the longest an orderly exit may take
CHECK_INTERVAL_S = 1.0  # how often the terminal is checked for being hung up


class HangupGuard:
    """Watches `app`'s terminal; when it goes, runs `leave()` (stop work, close) and exits the app.

    `stop_now()` is called first, synchronously: it must stop every worker that could keep the app busy.
    """

    def __init__(
        self,
        app: App[int],
        stop_now: Callable[[], None],
        leave: Callable[[], Awaitable[None]],
        last_words: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.stop_now = stop_now
        self.leave = leave
        self.last_words = last_words  # run even when the watchdog has to end the process (temp files)
        self.leaving = False

    def install(self) -> None:
        """Handle SIGHUP/SIGTERM on the running loop, and check the terminal every second."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.terminal_gone)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or a platform without these signals
        self.app.set_interval(CHECK_INTERVAL_S, self.check_terminal, name="terminal-watch")

    def terminal_gone(self) -> None:
        if self.leaving:
            return
        self.leaving = True
        self.stop_now()
        watchdog = threading.Timer(TERMINAL_GONE_GRACE_S, self._forced_exit)
        watchdog.daemon = True
        watchdog.start()
        asyncio.get_running_loop().create_task(self._close_and_exit())

    def _forced_exit(self) -> None:
        """The orderly exit did not finish in time: say the last words (nothing else runs after
        os._exit, not even atexit) and end the process."""
        try:
            if self.last_words is not None:
                self.last_words()
        finally:
            os._exit(0)

    async def _close_and_exit(self) -> None:
        try:
            await self.leave()
        except Exception:
            pass  # leaving anyway: the terminal is gone and the watchdog is running
        self.app.exit(0)

    def check_terminal(self) -> None:
        """After an SSH drop stdin reads EOF forever: exit instead of spinning."""
        if self.app.is_headless:
            return
        try:
            if sys.__stdin__ is None or sys.__stdout__ is None:
                raise OSError("no terminal")
            termios.tcgetattr(sys.__stdin__.fileno())  # EIO once the pty is hung up
            os.get_terminal_size(sys.__stdout__.fileno())
        except (OSError, ValueError, AttributeError, termios.error):
            self.terminal_gone()
