"""The providers llmpulse knows, and how config and the environment turn them into probe targets.

Facts come from ../shared/PROVIDERS.md. A spec is static data; a `Provider` is a spec resolved against
config and environment (base URL, the key if any, enabled, priority).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmpulse.core.provider_kinds import KIND_FACTS, AuthStyle, ProviderKind


@dataclass(frozen=True)
class ProviderSpec:
    id: str
    name: str
    kind: ProviderKind
    base_url: str
    key_envs: tuple[str, ...] = ()  # first one set wins
    base_url_envs: tuple[str, ...] = ()  # the variable the provider's own SDK reads
    admin_key_envs: tuple[str, ...] = ()  # billing/usage APIs (reconcile)
    local: bool = False  # costs nothing, needs no key
    priority: int = 50  # failover order, lower first
    enabled: bool = True
    price_provider: str | None = None  # genai-prices provider id
    api_version: str | None = None  # Azure only
    timeout: float | None = None  # per-provider probe timeout; None: [probe] timeout
    # How the key is sent and which endpoint the probe asks: the kind's (see spec_of_kind) unless a
    # [providers.ID] table says otherwise.
    auth: AuthStyle = field(kw_only=True)
    probe_path: str = field(kw_only=True)


def spec_of_kind(
    id: str,
    name: str,
    kind: ProviderKind,
    base_url: str,
    key_envs: tuple[str, ...] = (),
    base_url_envs: tuple[str, ...] = (),
    admin_key_envs: tuple[str, ...] = (),
    **more: Any,
) -> ProviderSpec:
    """A spec whose auth style and probe path are its kind's (llmpulse.core.provider_kinds)."""
    facts = KIND_FACTS[kind]
    more.setdefault("auth", facts.auth)
    more.setdefault("probe_path", facts.probe_path)
    return ProviderSpec(id, name, kind, base_url, key_envs, base_url_envs, admin_key_envs, **more)


CATALOG: tuple[ProviderSpec, ...] = (
    spec_of_kind(
        "openai",
        "OpenAI",
        "openai",
        "https://api.openai.com/v1",
        ("OPENAI_API_KEY",),
        ("OPENAI_BASE_URL",),
        ("OPENAI_ADMIN_KEY",),
        priority=20,
        price_provider="openai",
    ),
    spec_of_kind(
        "azure",
        "Azure OpenAI",
        "azure",
        "",
        ("AZURE_OPENAI_API_KEY",),
        ("AZURE_OPENAI_ENDPOINT",),
        priority=22,
        price_provider="azure",
        api_version="2024-10-21",
    ),
    spec_of_kind(
        "anthropic",
        "Anthropic",
        "anthropic",
        "https://api.anthropic.com",
        ("ANTHROPIC_API_KEY",),
        ("ANTHROPIC_BASE_URL",),
        ("ANTHROPIC_ADMIN_KEY",),
        priority=21,
        price_provider="anthropic",
    ),
    spec_of_kind(
        "gemini",
        "Google Gemini",
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta",
        ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
        priority=23,
        price_provider="google",
    ),
    spec_of_kind(
        "together",
        "Together",
        "together",
        "https://api.together.xyz/v1",
        ("TOGETHER_API_KEY",),
        ("TOGETHER_BASE_URL",),
        priority=30,
        price_provider="together",
    ),
    spec_of_kind(
        "openrouter",
        "OpenRouter",
        "openrouter",
        "https://openrouter.ai/api/v1",
        ("OPENROUTER_API_KEY",),
        (),
        ("OPENROUTER_MANAGEMENT_KEY",),
        priority=31,
        price_provider="openrouter",
    ),
    spec_of_kind(
        "moonshot",
        "Moonshot",
        "moonshot",
        "https://api.moonshot.ai/v1",
        ("MOONSHOT_API_KEY",),
        priority=36,
        price_provider="moonshotai",
    ),
    spec_of_kind(
        "deepseek",
        "DeepSeek",
        "deepseek",
        "https://api.deepseek.com",
        ("DEEPSEEK_API_KEY",),
        priority=32,
        price_provider="deepseek",
    ),
    spec_of_kind(
        "xai",
        "xAI",
        "xai",
        "https://api.x.ai/v1",
        ("XAI_API_KEY",),
        priority=35,
        price_provider="x-ai",
    ),
    spec_of_kind(
        "mistral",
        "Mistral",
        "mistral",
        "https://api.mistral.ai/v1",
        ("MISTRAL_API_KEY",),
        priority=34,
        price_provider="mistral",
    ),
    spec_of_kind(
        "groq",
        "Groq",
        "groq",
        "https://api.groq.com/openai/v1",
        ("GROQ_API_KEY",),
        ("GROQ_BASE_URL",),
        priority=33,
        price_provider="groq",
    ),
    spec_of_kind(
        "ollama",
        "Ollama",
        "ollama",
        "http://127.0.0.1:11434",
        (),
        ("OLLAMA_HOST",),
        local=True,
        priority=10,
    ),
    spec_of_kind(
        "localai",
        "LocalAI",
        "localai",
        "http://127.0.0.1:8080",
        ("LOCALAI_API_KEY",),
        ("LOCALAI_BASE_URL",),
        local=True,
        priority=11,
    ),
)

CATALOG_BY_ID: dict[str, ProviderSpec] = {spec.id: spec for spec in CATALOG}


class Secret:
    """An API key that cannot leak by accident: repr/str/format never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Provider:
    """A spec resolved against config and environment: what the probes and the failover client use."""

    spec: ProviderSpec
    base_url: str
    api_key: Secret | None
    key_env: str | None  # which variable held (or would hold) the key; shown instead of the key
    admin_key: Secret | None = None
    explicit: bool = False  # named in config, or its SDK's base-URL variable is set
    enabled: bool = True
    priority: int = 50

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def local(self) -> bool:
        return self.spec.local

    @property
    def configured(self) -> bool:
        """Can be probed: a remote provider needs its key and a base URL; a local one must be asked for."""
        return self.setup_gap is None

    @property
    def setup_gap(self) -> SetupGap | None:
        """What this process lacks to probe the provider, or None when it can. A local or keyless one
        needs no key: it lacks only being asked for (it is not probed on localhost uninvited)."""
        if not self.base_url:
            return SetupGap("no base URL", f"set {' or '.join(self.spec.base_url_envs) or self._table('base_url')}")
        if self.spec.local or self.spec.auth == "none":
            if self.explicit:
                return None
            where = " or ".join((*self.spec.base_url_envs, f"add [providers.{self.id}]"))
            return SetupGap(
                "not set up",
                f"a local provider that needs no key, probed only when asked for: set {where}; default {self.base_url}",
            )
        if self.api_key is None:
            return SetupGap("no key", f"set {self.key_env or self._table('api_key_env')}")
        return None

    def _table(self, key: str) -> str:
        return f"[providers.{self.id}] {key}"


@dataclass(frozen=True)
class SetupGap:
    """Why a provider cannot be probed from here: a short word for tables ("no key", "no base URL",
    "not set up") and what to set, for detail screens and `status`."""

    word: str
    hint: str


def normalise_base_url(url: str) -> str:
    """OLLAMA_HOST may be "0.0.0.0:11434" or "localhost"; probes need a full http URL."""
    url = url.strip().rstrip("/")
    if not url:
        return url
    if "://" not in url:
        url = "http://" + url
    return url.replace("://0.0.0.0", "://127.0.0.1")


@dataclass(frozen=True)
class ProviderOverride:
    """What a `[providers.ID]` table said about where and how to reach a provider."""

    base_url: str | None = None
    api_key_env: str | None = None
    admin_key_env: str | None = None


def resolve_providers(
    specs: Mapping[str, ProviderSpec], env: Mapping[str, str], overrides: Mapping[str, ProviderOverride] | None = None
) -> list[Provider]:
    """Turn specs into providers, reading keys and base URLs from `env`, ordered by priority.

    Base URL precedence: the config file's `base_url`, then the variable the provider's own SDK reads
    (OPENAI_BASE_URL, OLLAMA_HOST, ...), then the catalog default. A provider named in config, or whose
    SDK base-URL variable is set, is "explicit": that is what makes a keyless local provider worth probing.
    """
    overrides = overrides or {}
    out: list[Provider] = []
    for spec in specs.values():
        override = overrides.get(spec.id)
        explicit = override is not None
        base_url = spec.base_url
        if override is not None and override.base_url:
            base_url = override.base_url
        else:
            for var in spec.base_url_envs:
                if env.get(var):
                    base_url, explicit = env[var], True
                    break
        key_names = (override.api_key_env,) if override and override.api_key_env else spec.key_envs
        api_key, key_env = None, (key_names[0] if key_names else None)
        for var in key_names:
            if env.get(var):
                api_key, key_env = Secret(env[var]), var
                break
        admin_names = (override.admin_key_env,) if override and override.admin_key_env else spec.admin_key_envs
        admin_key = next((Secret(env[v]) for v in admin_names if env.get(v)), None)
        out.append(
            Provider(
                spec=spec,
                base_url=normalise_base_url(base_url),
                api_key=api_key,
                key_env=key_env,
                admin_key=admin_key,
                explicit=explicit,
                enabled=spec.enabled,
                priority=spec.priority,
            )
        )
    out.sort(key=lambda p: (p.priority, p.id))
    return out
