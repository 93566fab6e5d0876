"""The daemon's log: one line per event on stderr, redacted — for the collector and the HTTP server
process alike, so neither can print a secret, a control sequence or half an event."""

from __future__ import annotations

import logging
import sys

from llmpulse.core.redact import RedactingFilter

# Libraries that log a line per request at INFO: a probe round would bury the daemon's events (one line
# per event, as the README promises) under one "HTTP Request: GET ..." line per provider per round.
CHATTY_LOGGERS = ("httpx", "httpcore", "aiohttp.access", "aiosqlite", "asyncio")


class OneLineFormatter(logging.Formatter):
    """One event, one line: a message or a traceback that spans lines is joined with " | ", so a log
    reader (journald, grep, a line-based shipper) never sees half an event."""

    def format(self, record: logging.LogRecord) -> str:
        return " | ".join(part.strip() for part in super().format(record).splitlines() if part.strip())


DAEMON_LOG_FORMAT = "%(asctime)s llmpulse %(message)s"
DAEMON_LOG_DATEFMT = "%Y-%m-%dT%H:%M:%S%z"


def configure_daemon_log() -> None:
    """One line per event on stderr: llmpulse's own events at INFO, the libraries' only when they warn."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=DAEMON_LOG_FORMAT, datefmt=DAEMON_LOG_DATEFMT)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:  # the last net: no secret or control sequence in the log
        handler.addFilter(RedactingFilter())
        handler.setFormatter(OneLineFormatter(DAEMON_LOG_FORMAT, DAEMON_LOG_DATEFMT))
