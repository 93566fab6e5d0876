"""The collector's "a round is running" flag, which bulk writers in other processes yield to.

SQLite has one write lock and no queue: a writer that finds it taken sleeps and polls (1, 2, 5 ... 100 ms
apart), and one that writes batch after batch (the ingest server at tens of thousands of spans a
second) takes it again before a sleeping poller looks. A collector round — a few milliseconds of work
done every second — then waited behind the ingest for up to seconds (measured 1.7 s at 75k spans/s).

So the collector raises a flag for the length of its round: an exclusive `flock` on `<database>-round`,
beside the database's -wal and -shm files. A bulk writer looks at it before each of its transactions
(a non-blocking shared `flock`, a few microseconds) and holds back while it is raised: the round's
writes find the lock free, at the cost of the round's few milliseconds of ingest. Holding back is
bounded (`HOLD_BACK_MAX_S` per raise): a round stuck on a hanging provider never stops ingest.

Best effort by design: where the flag file cannot be created (a read-only directory) or `flock` does
not exist (Windows), nobody yields and writers simply queue on SQLite's busy timeout as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flag, nobody yields
    fcntl = None  # type: ignore[assignment]

HOLD_BACK_MAX_S = 0.2  # the longest a bulk writer waits for one raised flag (a round is ~10 ms)
HOLD_BACK_POLL_S = 0.001


def flag_path(db_path: str | Path) -> Path:
    return Path(str(db_path) + "-round")


def _open(path: Path) -> int | None:
    if fcntl is None:
        return None
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None


class RoundFlag:
    """The collector's side: `with RoundFlag(db_path):` around a round. The file is opened for each
    round and closed after it (two system calls a round; nothing held between rounds)."""

    def __init__(self, db_path: str | Path):
        self.path = flag_path(db_path)
        self._fd: int | None = None

    def __enter__(self) -> RoundFlag:
        self._fd = _open(self.path)
        if self._fd is not None and fcntl is not None:
            # A writer looking at the flag holds a shared lock for microseconds: try again a few times
            # rather than block the event loop.
            for _ in range(3):
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(0.0001)
                except OSError:
                    break
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing releases the lock
            self._fd = None


class RoundYield:
    """A bulk writer's side: `await yielding.wait()` before each transaction returns once no round is
    running, or once this raise of the flag has been waited for `max_s` in all."""

    def __init__(self, db_path: str | Path, *, max_s: float = HOLD_BACK_MAX_S, poll_s: float = HOLD_BACK_POLL_S):
        self.path = flag_path(db_path)
        self.max_s = max_s
        self.poll_s = poll_s
        self._fd: int | None = None
        self._opened = False
        self._waited = 0.0  # held back for the flag as last seen raised (reset when seen lowered)
        self.held_back_s = 0.0  # in all, for the logs and the benchmark

    def raised(self) -> bool:
        if not self._opened:
            self._opened = True
            self._fd = _open(self.path)
        if self._fd is None or fcntl is None:
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        with contextlib.suppress(OSError):
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return False

    async def wait(self) -> None:
        if not self.raised():
            self._waited = 0.0
            return
        started = time.monotonic()
        while self._waited + (time.monotonic() - started) < self.max_s:
            await asyncio.sleep(self.poll_s)
            if not self.raised():
                self.held_back_s += time.monotonic() - started
                self._waited = 0.0
                return
        # Raised for longer than a round should be (a probe hanging until its timeout): write anyway,
        # and keep writing until the flag is seen lowered.
        self.held_back_s += time.monotonic() - started
        self._waited = self.max_s

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
