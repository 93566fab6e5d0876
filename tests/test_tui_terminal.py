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
    # Reached only by the orderly exit: the hang-up watchdog ends the process with os._exit before this.
    "import os; open(os.environ['ORDERLY_EXIT_MARKER'], 'w').close()\n"
    "sys.exit(app.return_code or 0)\n"
)


def start_in_pty(marker: Path):
    pid, fd = pty.fork()
    if pid == 0:  # the child: the dashboard on a real (pseudo) terminal
        os.environ["TERM"] = "xterm-256color"
        os.environ["ORDERLY_EXIT_MARKER"] = str(marker)
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


def test_sighup_exits_cleanly(tmp_path):
    marker = tmp_path / "orderly"
    pid, fd = start_in_pty(marker)
    try:
        os.kill(pid, signal.SIGHUP)
        status = wait_exit(pid, 10.0, fd)
        # Killed by the signal would be WIFSIGNALED; we want our handler's clean exit, and by the orderly
        # path (database closed, app.run returned), not the watchdog: order, not a stopwatch.
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        assert marker.exists(), "the watchdog ended it, not the orderly exit"
    finally:
        os.close(fd)


def test_hung_up_terminal_exits(tmp_path):
    pid, fd = start_in_pty(tmp_path / "orderly")
    os.close(fd)  # the SSH connection drops: the pty's other end is gone
    # Right after the first frame Textual may block restoring the dead terminal; the watchdog (2 s) ends
    # it then, so either path is fine here. The 10 s guard fails a process that keeps running.
    status = wait_exit(pid, 10.0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def test_hang_up_while_running_exits(tmp_path):
    pid, fd = start_in_pty(tmp_path / "orderly")
    deadline = time.monotonic() + 0.5  # running a while, terminal read as it would be
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            os.read(fd, 65536)
    os.close(fd)
    # Bounded by the watchdog (2 s), not a stopwatch: the 10 s guard fails a process that keeps running.
    status = wait_exit(pid, 10.0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
