"""`[server]`: the HTTP server the daemon runs for usage coming in (OTLP, JSON Lines) and scrapers.

    [server]
    listen = "127.0.0.1:4318"            # absent: no server; `llmpulse daemon --listen ADDR` overrides
    token_env = "LLMPULSE_INGEST_TOKEN"  # set: every request but GET /healthz needs Authorization: Bearer <token>
    max_body_mb = 16                     # a request body, before and after gzip, at most this many MiB
    queue_records = 100000               # records accepted but not yet stored; beyond: 503 + Retry-After
    flush_interval = "500ms"             # accepted records are written at least this often (and per 5,000)

Binding anything but a loopback address without a token is refused: an open ingest port lets anyone on
the network write spend into the budgets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from llmpulse.core.validate import ConfigError, Section

DEFAULT_PORT = 4318  # OTLP/HTTP's registered port: exporters' default endpoint is http://localhost:4318
LISTEN_EXPECTED = 'HOST:PORT like "127.0.0.1:4318", "[::1]:4318" or "0.0.0.0:4318"'


@dataclass(frozen=True)
class Attribution:
    """Which OTLP attribute fills each attribution field of a record: the first one present wins, span
    attributes before resource attributes."""

    agent: tuple[str, ...] = ("service.name",)
    department: tuple[str, ...] = ()
    user: tuple[str, ...] = ("user.id", "enduser.id")
    task_type: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerConfig:
    listen: str | None = None
    token_env: str | None = None
    max_body_mb: float = 16.0
    queue_records: int = 100_000
    flush_interval: float = 0.5  # accepted records are written at least this often (and per 5,000)
    attribution: Attribution = field(default_factory=Attribution)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


def split_listen(text: str, source: str = "config", key: str = "server.listen") -> tuple[str, int]:
    """("host", port) from "host:port", "[v6]:port" or ":port" (loopback); ConfigError otherwise, naming
    where the address came from (the config file's key, or the command line's --listen)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ConfigError(source, key, repr(text), LISTEN_EXPECTED)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(source, key, repr(text), LISTEN_EXPECTED) from None
    if not 0 <= port <= 65535:
        raise ConfigError(source, key, repr(text), "a port between 0 and 65535")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def parse(root: Section) -> ServerConfig:
    sec = root.table("server")
    d = ServerConfig()
    listen = sec.string("listen", None)
    if listen is not None:
        try:
            split_listen(listen)
        except ConfigError:
            raise sec.error("listen", listen, LISTEN_EXPECTED) from None
    attrs = sec.table("attributes")
    a = Attribution()
    attribution = Attribution(
        agent=tuple(attrs.string_list("agent", list(a.agent))),
        department=tuple(attrs.string_list("department", list(a.department))),
        user=tuple(attrs.string_list("user", list(a.user))),
        task_type=tuple(attrs.string_list("task_type", list(a.task_type))),
    )
    attrs.done()
    out = ServerConfig(
        listen=listen,
        token_env=sec.string("token_env", None),
        max_body_mb=sec.number("max_body_mb", d.max_body_mb, minimum=0.001, maximum=1024),
        queue_records=sec.integer("queue_records", d.queue_records, minimum=1),
        flush_interval=sec.duration("flush_interval", d.flush_interval, minimum=0.01),
        attribution=attribution,
    )
    sec.done()
    return out


@dataclass(frozen=True)
class Listener:
    """Where to listen and the token to require: the config checked against the environment."""

    host: str
    port: int
    token: str | None


def resolve_listener(cfg: ServerConfig, env: Mapping[str, str], source: str, listen: str | None = None) -> Listener:
    """The address (the --listen override first) and token; ConfigError for a token variable that is
    named but empty, or a non-loopback address without a token."""
    text = listen if listen is not None else cfg.listen
    if text is None:
        raise ConfigError(source, "server.listen", "nothing", LISTEN_EXPECTED)
    # An address given as --listen is the command line's mistake, not the config file's.
    where, key = ("command line", "--listen") if listen is not None else (source, "server.listen")
    host, port = split_listen(text, where, key)
    token = None
    if cfg.token_env:
        token = env.get(cfg.token_env) or None
        if token is None:
            raise ConfigError(
                source, "server.token_env", f"{cfg.token_env} unset or empty", f"{cfg.token_env} set to the token"
            )
    if token is None and not is_loopback(host):
        raise ConfigError(
            where,
            key,
            f"{text!r} (not loopback) and no token",
            'a loopback address, or token_env = "LLMPULSE_INGEST_TOKEN" with that variable set',
        )
    return Listener(host, port, token)
