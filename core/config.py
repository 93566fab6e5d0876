"""Where settings come from: the TOML file, the environment (and `.env`), and the command line.

Precedence, each first match wins:
- config file: --config PATH, LLMPULSE_CONFIG, ./llmpulse.toml, <user config dir>/llmpulse.toml (none needed)
- secrets: the real environment, then the env file (--env-file PATH, else ./.env)
- database: --db PATH, LLMPULSE_DB, [storage] path, <user data dir>/llmpulse.db
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs
from dotenv import dotenv_values

import llmpulse.core.alerts.config
import llmpulse.core.migration
import llmpulse.core.server.config
import llmpulse.core.usage.config
from llmpulse.core.catalog import (
    AUTH_STYLES,
    CATALOG,
    KINDS,
    Provider,
    ProviderOverride,
    ProviderSpec,
    resolve_providers,
)
from llmpulse.core.validate import ConfigError, Section

APP_NAME = "llmpulse"
CONFIG_FILENAME = "llmpulse.toml"

# Probe path per kind for custom endpoints; the catalog entries carry their own.
_DEFAULT_PROBE_PATH = {
    "openai": "/models",
    "openai-compatible": "/models",
    "azure": "/openai/models",
    "anthropic": "/v1/models",
    "gemini": "/models",
    "together": "/models",
    "openrouter": "/key",
    "moonshot": "/users/me/balance",
    "deepseek": "/user/balance",
    "xai": "/api-key",
    "mistral": "/models",
    "groq": "/models",
    "ollama": "/api/version",
    "localai": "/readyz",
}
_DEFAULT_AUTH = {
    "anthropic": "x-api-key",
    "gemini": "x-goog-api-key",
    "azure": "api-key",
    "ollama": "none",
    "localai": "none",
}


@dataclass(frozen=True)
class ProbeSettings:
    interval: float = 30.0  # seconds between probe rounds
    timeout: float = 10.0  # per provider, the whole request
    slow: float = 3.0  # a 2xx slower than this is degraded
    concurrency: int = 256  # probes in flight at once (a round is one wave up to this many)


@dataclass(frozen=True)
class HealthSettings:
    window: float = 900.0  # rolling window of probes/requests, seconds
    error_bands: tuple[float, float, float] = (0.01, 0.05, 0.10)  # excellent < good < concerning < critical
    latency_bands: tuple[float, float, float] = (0.5, 1.0, 3.0)  # excellent < good < acceptable < slow
    failure_threshold: int = 3  # consecutive failures that open a circuit
    cooldown: float = 60.0  # open -> half_open after this long


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
    usage: Any = None
    alerts: Any = None
    migrations: Any = None
    server: Any = None
    tui: Any = None


def _parse_probe(root: Section) -> ProbeSettings:
    sec = root.table("probe")
    d = ProbeSettings()
    out = ProbeSettings(
        interval=sec.duration("interval", d.interval, minimum=0.1),
        timeout=sec.duration("timeout", d.timeout, minimum=0.01),
        slow=sec.duration("slow", d.slow, minimum=0.0),
        concurrency=sec.integer("concurrency", d.concurrency, minimum=1),
    )
    sec.done()
    return out


def _three_ascending(sec: Section, name: str, values: list[float], default: tuple) -> tuple:
    if len(values) != 3 or not (values[0] <= values[1] <= values[2]):
        raise sec.error(name, values, "three ascending thresholds")
    return tuple(values)


def _parse_health(root: Section) -> HealthSettings:
    sec = root.table("health")
    d = HealthSettings()
    error_bands = sec.number_list("error_bands", list(d.error_bands))
    latency_raw = sec.raw("latency_bands", None)
    latency = list(d.latency_bands)
    if latency_raw is not None:
        if not isinstance(latency_raw, list) or len(latency_raw) != 3:
            raise sec.error("latency_bands", latency_raw, 'three durations like ["500ms", "1s", "3s"]')
        tmp = Section({str(i): v for i, v in enumerate(latency_raw)}, sec.source, sec.key("latency_bands"))
        latency = [tmp.duration(str(i)) for i in range(3)]
    out = HealthSettings(
        window=sec.duration("window", d.window, minimum=1.0),
        error_bands=_three_ascending(sec, "error_bands", error_bands, d.error_bands),
        latency_bands=_three_ascending(sec, "latency_bands", latency, d.latency_bands),
        failure_threshold=sec.integer("failure_threshold", d.failure_threshold, minimum=1),
        cooldown=sec.duration("cooldown", d.cooldown),
    )
    sec.done()
    return out


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
        if base is None:
            kind = sec.string("kind", "openai-compatible", choices=KINDS)
            base_url = sec.string("base_url")
            key_env = sec.string("api_key_env", None)
            base = ProviderSpec(
                id=pid,
                name=pid,
                kind=kind,
                base_url=base_url,
                auth=_DEFAULT_AUTH.get(kind, "bearer" if key_env else "none"),
                probe_path=_DEFAULT_PROBE_PATH[kind],
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
            timeout=sec.duration("timeout", base.timeout, minimum=0.01),
        )
        overrides[pid] = ProviderOverride(
            base_url=sec.string("base_url", None),
            api_key_env=sec.string("api_key_env", None),
            admin_key_env=sec.string("admin_key_env", None),
        )
        sec.done()
        specs[pid] = spec
    return overrides


def parse_config(data: Mapping[str, Any], source: str) -> Config:
    """Build a Config from parsed TOML; raise ConfigError on the first thing that is wrong."""
    root = Section(dict(data), source)
    cfg = Config(source=source)
    cfg.probe = _parse_probe(root)
    cfg.health = _parse_health(root)
    cfg.storage = _parse_storage(root)
    cfg.provider_overrides = _parse_providers(root, cfg.specs)
    # Feature sections: each module owns and validates its own keys.
    cfg.usage = llmpulse.core.usage.config.parse(root)
    cfg.alerts = llmpulse.core.alerts.config.parse(root)
    cfg.migrations = llmpulse.core.migration.parse_config(root)
    cfg.server = llmpulse.core.server.config.parse(root)
    # (issue 6) cfg.tui = llmpulse.core.tuiconfig.parse(root)
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


def load_env(env_file: str | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Secrets: the env file's values under the real environment (which wins). Nothing is exported."""
    environ = dict(os.environ if environ is None else environ)
    if env_file:
        path = Path(env_file).expanduser()
        if not path.is_file():
            raise ConfigError(str(path), "--env-file", "no such file", "a readable .env file")
    else:
        path = Path.cwd() / ".env"
        if not path.is_file():
            return environ
    file_values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    return {**file_values, **environ}


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

    def provider(self, provider_id: str) -> Provider | None:
        return next((p for p in self.providers if p.id == provider_id), None)


def load_context(
    config_path: str | None = None,
    db_path: str | None = None,
    env_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Context:
    env = load_env(env_file, environ)
    cfg = load_config(find_config_path(config_path, env))
    providers = resolve_providers(cfg.specs, env, cfg.provider_overrides)
    return Context(config=cfg, env=env, db_path=resolve_db_path(db_path, env, cfg), providers=providers)
