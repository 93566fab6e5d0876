"""Where settings come from: the TOML file, the environment (and `.env`), and the command line.

Precedence, each first match wins:
- config file: --config PATH, LLMPULSE_CONFIG, ./llmpulse.toml, <user config dir>/llmpulse.toml (none needed)
- secrets: the real environment, then the env file (--env-file PATH, else ./.env)
- database: --db PATH, LLMPULSE_DB, [storage] path, <user data dir>/llmpulse.db
"""

from __future__ import annotations

import difflib
import io
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
from dotenv import dotenv_values
from dotenv.parser import parse_stream

import llmpulse.core.alerts.config
import llmpulse.core.migration
import llmpulse.core.server.config
import llmpulse.core.statuspage
import llmpulse.core.usage.config
from llmpulse.core.alerts.config import AlertsConfig
from llmpulse.core.catalog import CATALOG, Provider, ProviderOverride, ProviderSpec, resolve_providers
from llmpulse.core.health_settings import HealthSettings, parse_health_settings
from llmpulse.core.migration import MigrationConfig
from llmpulse.core.probe_settings import ProbeSettings, parse_probe_settings
from llmpulse.core.provider_kinds import AUTH_STYLES, KIND_FACTS, KINDS
from llmpulse.core.server.config import ServerConfig
from llmpulse.core.statuspage import StatusPageSettings
from llmpulse.core.usage.config import UsageConfig
from llmpulse.core.validate import ConfigError, Section
from llmpulse.core.vocabulary import counted

APP_NAME = "llmpulse"
CONFIG_FILENAME = "llmpulse.toml"


@dataclass(frozen=True)
class StorageSettings:
    path: str | None = None
    retention: float = 90 * 86400.0  # raw usage records; roll-ups are kept


@dataclass
class Config:
    source: str = "defaults"
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    specs: dict[str, ProviderSpec] = field(default_factory=lambda: {s.id: s for s in CATALOG})
    provider_overrides: dict[str, ProviderOverride] = field(default_factory=dict)
    # Feature sections, parsed by their own modules (see load_config).
    usage: UsageConfig = field(default_factory=UsageConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    migrations: list[MigrationConfig] = field(default_factory=list)
    server: ServerConfig = field(default_factory=ServerConfig)
    status_pages: StatusPageSettings = field(default_factory=StatusPageSettings)


def _parse_storage(root: Section) -> StorageSettings:
    sec = root.table("storage")
    d = StorageSettings()
    out = StorageSettings(
        path=sec.string("path", d.path), retention=sec.duration("retention", d.retention, minimum=3600.0)
    )
    sec.done()
    return out


def _parse_providers(root: Section, specs: dict[str, ProviderSpec]) -> dict[str, ProviderOverride]:
    providers = root.table("providers")
    overrides: dict[str, ProviderOverride] = {}
    for pid in list(providers.data):
        sec = providers.table(pid)
        base = specs.get(pid)
        if base is None and not sec.has("kind") and not sec.has("base_url"):
            # Neither a catalog id nor a custom provider: most likely a typo of one we know.
            raise ConfigError(
                sec.source,
                sec.prefix,
                f"an unknown provider id {pid!r}",
                f"a provider id llmpulse knows ({_known_id_hint(pid, specs)}), or a custom provider with kind "
                "and base_url",
            )
        if sec.has("base_url"):
            _check_base_url(sec, sec.raw("base_url"))
        if base is None:
            kind = sec.string("kind", "openai-compatible", choices=KINDS)
            base_url = sec.string("base_url")
            key_env = sec.string("api_key_env", None)
            facts = KIND_FACTS[kind]
            base = ProviderSpec(
                id=pid,
                name=pid,
                kind=kind,
                base_url=base_url,
                # a bearer endpoint named without a key variable is a keyless local one
                auth="none" if facts.auth == "bearer" and not key_env else facts.auth,
                probe_path=facts.probe_path,
                priority=60,
            )
        spec = replace(
            base,
            name=sec.string("name", base.name),
            kind=sec.string("kind", base.kind, choices=KINDS),
            auth=sec.string("auth", base.auth, choices=AUTH_STYLES),
            probe_path=sec.string("probe_path", base.probe_path),
            priority=sec.integer("priority", base.priority, minimum=0),
            enabled=sec.boolean("enabled", base.enabled),
            local=sec.boolean("local", base.local),
            price_provider=sec.string("price_provider", base.price_provider),
            api_version=sec.string("api_version", base.api_version),
            timeout=sec.duration("timeout", base.timeout, minimum=0.01, maximum=600.0),
        )
        overrides[pid] = ProviderOverride(
            base_url=sec.string("base_url", None),
            api_key_env=sec.string("api_key_env", None),
            admin_key_env=sec.string("admin_key_env", None),
        )
        sec.done()
        specs[pid] = spec
    return overrides


def _known_id_hint(found: str, known: Mapping[str, Any]) -> str:
    """ "did you mean 'openai'?" for a near miss, else the ids there are."""
    close = difflib.get_close_matches(found, list(known), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "one of " + ", ".join(sorted(known))


def _check_base_url(sec: Section, value: Any) -> None:
    """A base URL must be http(s) with a host: anything else would only show up later as a probe that
    cannot connect — an outage that is really a typo."""
    if not isinstance(value, str):
        raise sec.error("base_url", value, "a string")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise sec.error("base_url", value, 'an http(s) URL like "https://api.example.com/v1"')


def _check_budget_scopes(cfg: Config, source: str) -> None:
    """A budget on a provider llmpulse does not know would silently stay at $0 forever."""
    for i, budget in enumerate(cfg.usage.budgets if cfg.usage is not None else ()):
        if budget.dim == "provider" and budget.key not in cfg.specs:
            raise ConfigError(
                source,
                f"budgets[{i}].scope",
                f"{budget.scope!r}, an unknown provider",
                f"provider:<a provider id> ({_known_id_hint(budget.key, cfg.specs)})",
            )


def _one_meaning_of_slow(
    data: Mapping[str, Any], source: str, probe: ProbeSettings, health: HealthSettings
) -> tuple[ProbeSettings, HealthSettings]:
    """`[probe] slow` (a probe slower than this is degraded) and the top of `[health] latency_bands`
    (a p95 above it is `slow`) are one threshold: apart, a row read "degraded (slow)" beside "1.4s
    acceptable". Set one and the other follows; set both, and they must agree."""
    slow_set = isinstance(data.get("probe"), Mapping) and "slow" in data["probe"]
    bands_set = isinstance(data.get("health"), Mapping) and "latency_bands" in data["health"]
    top = health.latency_bands[2]
    if slow_set and bands_set and probe.slow != top:
        raise ConfigError(
            source,
            "probe.slow",
            f"{probe.slow:g}s while health.latency_bands calls a p95 slow above {top:g}s",
            "the same threshold in both (or set only one: the other follows it)",
        )
    if slow_set and not bands_set:
        s = probe.slow
        health = replace(health, latency_bands=(min(health.latency_bands[0], s), min(health.latency_bands[1], s), s))
    elif bands_set and not slow_set:
        probe = replace(probe, slow=top)
    return probe, health


def parse_config(data: Mapping[str, Any], source: str) -> Config:
    """Build a Config from parsed TOML; raise ConfigError on the first thing that is wrong."""
    root = Section(dict(data), source)
    cfg = Config(source=source)
    cfg.probe = parse_probe_settings(root)
    cfg.health = parse_health_settings(root)
    cfg.probe, cfg.health = _one_meaning_of_slow(data, source, cfg.probe, cfg.health)
    cfg.storage = _parse_storage(root)
    cfg.provider_overrides = _parse_providers(root, cfg.specs)
    # Feature sections: each module owns and validates its own keys.
    cfg.usage = llmpulse.core.usage.config.parse(root)
    _check_budget_scopes(cfg, source)
    cfg.alerts = llmpulse.core.alerts.config.parse(root)
    cfg.migrations = llmpulse.core.migration.parse_config(root)
    cfg.server = llmpulse.core.server.config.parse(root)
    cfg.status_pages = llmpulse.core.statuspage.parse_settings(root)
    root.done()
    return cfg


def find_config_path(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    """The config file to read, or None for all defaults. An asked-for file that is missing is an error."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(str(path), "--config", "no such file", "a readable TOML file")
        return path
    if env.get("LLMPULSE_CONFIG"):
        path = Path(env["LLMPULSE_CONFIG"]).expanduser()
        if not path.is_file():
            raise ConfigError(str(path), "LLMPULSE_CONFIG", "no such file", "a readable TOML file")
        return path
    for path in (Path.cwd() / CONFIG_FILENAME, Path(platformdirs.user_config_dir(APP_NAME)) / CONFIG_FILENAME):
        if path.is_file():
            return path
    return None


def load_config(path: Path | None) -> Config:
    if path is None:
        return parse_config({}, "defaults")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "file", exc.strerror or "unreadable", "a readable TOML file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "syntax", str(exc), "valid TOML") from None
    return parse_config(data, str(path))


# A name a shell could export: what every variable llmpulse reads looks like (OPENAI_API_KEY, LLMPULSE_DB).
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class EnvLineProblem:
    """A line of an env file that is not KEY=VALUE. Only where it is: the line itself may hold a secret
    (a key pasted without its name), so its content is never kept, shown or logged."""

    path: Path
    line: int

    def __str__(self) -> str:
        return (
            f"{self.path} line {self.line}: not KEY=VALUE; line skipped (expected NAME=value, e.g. OPENAI_API_KEY=...)"
        )

    def error(self, more: int = 0) -> ConfigError:
        """The config error for a command that stops at a bad line; `more`: how many other bad lines."""
        also = f" (and {counted(more, 'other line')})" if more else ""
        return ConfigError(
            str(self.path),
            f"line {self.line}{also}",
            "a line that is not KEY=VALUE (not shown: it may hold a secret)",
            "NAME=value lines, e.g. OPENAI_API_KEY=...; '#' starts a comment",
        )


class _OwnEnvWarnings(logging.Filter):
    """python-dotenv logs "could not parse statement starting at line N" on its own; llmpulse says it
    itself (EnvLineProblem: file, line and what is expected), once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "could not parse statement" not in str(record.msg)


logging.getLogger("dotenv.main").addFilter(_OwnEnvWarnings())


@dataclass(frozen=True)
class EnvSecrets:
    """The environment a command runs with, and the lines of the env file that could not be read."""

    values: dict[str, str]
    problems: tuple[EnvLineProblem, ...] = ()


def read_env_file(path: Path) -> tuple[dict[str, str], tuple[EnvLineProblem, ...]]:
    """An env file's good KEY=VALUE lines (python-dotenv's syntax: quotes, `export`, ${VAR} interpolation)
    and where its other lines are. A bad line costs only itself: the lines after it are still read."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(str(path), f"line {line}", "bytes that are not UTF-8", "a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(str(path), "file", exc.strerror or "unreadable", "a readable .env file") from None
    bad: dict[int, EnvLineProblem] = {}
    bad_keys: set[str] = set()
    for binding in parse_stream(io.StringIO(text)):
        # An unparsable statement, a name alone (no '='; often a key pasted on its own line) or a name no
        # shell could export (a stray quote): none is KEY=VALUE.
        if not binding.error and binding.key is None:
            continue  # a comment or a blank line
        if binding.error or binding.value is None or not _ENV_NAME.fullmatch(binding.key or ""):
            bad.setdefault(binding.original.line, EnvLineProblem(path, binding.original.line))
            if binding.key is not None:
                bad_keys.add(binding.key)
    values = {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None and k not in bad_keys}
    return values, tuple(sorted(bad.values(), key=lambda p: p.line))


def load_env(env_file: str | None, environ: Mapping[str, str] | None = None) -> EnvSecrets:
    """Secrets: the env file's values under the real environment (which wins). Nothing is exported."""
    environ = dict(os.environ if environ is None else environ)
    if env_file:
        path = Path(env_file).expanduser()
        if not path.is_file():
            raise ConfigError(str(path), "--env-file", "no such file", "a readable .env file")
    else:
        path = Path.cwd() / ".env"
        if not path.is_file():
            return EnvSecrets(environ)
    file_values, problems = read_env_file(path)
    return EnvSecrets({**file_values, **environ}, problems)


def resolve_db_path(explicit: str | None, env: Mapping[str, str], cfg: Config) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if env.get("LLMPULSE_DB"):
        return Path(env["LLMPULSE_DB"]).expanduser()
    if cfg.storage.path:
        return Path(cfg.storage.path).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME)) / "llmpulse.db"


@dataclass
class Context:
    """Everything a command needs: settings, secrets, the resolved providers and the database path."""

    config: Config
    env: dict[str, str]
    db_path: Path
    providers: list[Provider]
    # Lines of the env file that are not KEY=VALUE (skipped): each command decides whether to go on.
    env_problems: tuple[EnvLineProblem, ...] = ()

    def provider(self, provider_id: str) -> Provider | None:
        return next((p for p in self.providers if p.id == provider_id), None)


def load_context(
    config_path: str | None = None,
    db_path: str | None = None,
    env_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Context:
    secrets = load_env(env_file, environ)
    env = secrets.values
    cfg = load_config(find_config_path(config_path, env))
    providers = resolve_providers(cfg.specs, env, cfg.provider_overrides)
    return Context(
        config=cfg,
        env=env,
        db_path=resolve_db_path(db_path, env, cfg),
        providers=providers,
        env_problems=secrets.problems,
    )
