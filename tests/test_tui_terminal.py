"""When the terminal goes away (SSH dropped: SIGHUP, the pty hung up), the app exits cleanly and fast
instead of spinning. The app runs for real in a pseudo-terminal here."""

import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHILD = (
    f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
    "from tests.snapshot_apps.fixed import fixed_app\n"
    "app = fixed_app(watch_terminal=True)\n"
    "app.run()\n"
    "sys.exit(app.return_code or 0)\n"
)


def start_in_pty():
    pid, fd = pty.fork()
    if pid == 0:  # the child: the dashboard on a real (pseudo) terminal
        os.environ["TERM"] = "xterm-256color"
        os.environ.pop("NO_COLOR", None)
        os.execv(sys.executable, [sys.executable, "-c", CHILD])
    # Wait until it has drawn something.
    drawn, deadline = b"", time.monotonic() + 10
    while time.monotonic() < deadline and b"Providers" not in drawn:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                drawn += os.read(fd, 65536)
            except OSError:
                break
    assert b"Providers" in drawn, "the dashboard never drew"
    return pid, fd


def wait_exit(pid, timeout, fd=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if fd is not None:  # keep reading, as a live terminal would
            ready, _, _ = select.select([fd], [], [], 0.02)
            if ready:
                try:
                    os.read(fd, 65536)
                except OSError:
                    fd = None
        else:
            time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"still running {timeout}s after the terminal went away")


def test_sighup_exits_cleanly():
    pid, fd = start_in_pty()
    try:
        started = time.monotonic()
        os.kill(pid, signal.SIGHUP)
        status = wait_exit(pid, 3.0, fd)
        # Killed by the signal would be WIFSIGNALED; we want our handler's clean exit.
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        assert time.monotonic() - started < 2.0
    finally:
        os.close(fd)


def test_hung_up_terminal_exits():
    pid, fd = start_in_pty()
    started = time.monotonic()
    os.close(fd)  # the SSH connection drops: the pty's other end is gone
    status = wait_exit(pid, 5.0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    # Right after the first frame Textual may block restoring the dead terminal; the watchdog (2s)
    # ends it then. Later hang-ups exit in a fraction of a second.
    assert time.monotonic() - started < 4.0


def test_hang_up_while_running_exits_at_once():
    pid, fd = start_in_pty()
    deadline = time.monotonic() + 0.5  # running a while, terminal read as it would be
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            os.read(fd, 65536)
    started = time.monotonic()
    os.close(fd)
    status = wait_exit(pid, 5.0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    # Bounded by the watchdog, not a stopwatch: on a loaded machine "at once" can take a second or two.
    assert time.monotonic() - started < 4.0
