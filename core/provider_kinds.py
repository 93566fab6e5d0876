"""What each kind of provider API is, written once: the free probe endpoint, how the key is sent, the
JSON shape a healthy probe answer has, and where the API sits under its host.

The catalog (real providers), the config file's custom providers, the probe and the simulator all read
these facts from here, so a kind cannot be probed one way and simulated another.
Facts come from ../shared/PROVIDERS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

# Probe kinds: which endpoint proves key + service for free, and which JSON shape a 2xx must have.
ProviderKind = Literal[
    "openai",
    "azure",
    "anthropic",
    "gemini",
    "together",
    "openrouter",
    "moonshot",
    "deepseek",
    "xai",
    "mistral",
    "groq",
    "ollama",
    "localai",
    "openai-compatible",
]

# How the key is sent. Gemini's key goes in a header, never `?key=`: URLs end up in logs.
AuthStyle = Literal["bearer", "x-api-key", "x-goog-api-key", "api-key", "none"]

# The JSON a healthy probe answer has (see llmpulse.core.probe for the check of each).
ProbeShape = Literal[
    "model_list",  # {"data": [...]}: OpenAI and the APIs that copy it
    "model_list_or_array",  # Together: a bare JSON array (or {"data": [...]})
    "gemini_models",  # {"models": [...]}
    "ollama_version",  # {"version": ...} (or {"models": [...]})
    "any",  # LocalAI's /readyz: any 2xx body
    "openrouter_key",  # {"data": {"usage", "limit", "limit_remaining", ...}}
    "moonshot_balance",  # {"data": {"available_balance", ...}}
    "deepseek_balance",  # {"is_available", "balance_infos": [...]}
    "xai_key",  # {"redacted_api_key", "api_key_blocked", ...}
]

ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True)
class KindFacts:
    probe_path: str  # relative to the provider's base URL
    auth: AuthStyle
    shape: ProbeShape
    base_prefix: str  # the path of the base URL under the host (".../v1"), as the real provider lays it out
    extra_headers: dict[str, str] = field(default_factory=dict)  # sent with every request besides the key


# Keyed by the kind's name as config and tests spell it (a str); every ProviderKind has an entry.
KIND_FACTS: dict[str, KindFacts] = {
    "openai": KindFacts("/models", "bearer", "model_list", "/v1"),
    "azure": KindFacts("/openai/models", "api-key", "model_list", ""),
    "anthropic": KindFacts(
        "/v1/models", "x-api-key", "model_list", "", extra_headers={"anthropic-version": ANTHROPIC_VERSION}
    ),
    "gemini": KindFacts("/models", "x-goog-api-key", "gemini_models", "/v1beta"),
    "together": KindFacts("/models", "bearer", "model_list_or_array", "/v1"),
    "openrouter": KindFacts("/key", "bearer", "openrouter_key", "/api/v1"),
    "moonshot": KindFacts("/users/me/balance", "bearer", "moonshot_balance", "/v1"),
    "deepseek": KindFacts("/user/balance", "bearer", "deepseek_balance", ""),
    "xai": KindFacts("/api-key", "bearer", "xai_key", "/v1"),
    "mistral": KindFacts("/models", "bearer", "model_list", "/v1"),
    "groq": KindFacts("/models", "bearer", "model_list", "/openai/v1"),
    "ollama": KindFacts("/api/version", "none", "ollama_version", ""),
    "localai": KindFacts("/readyz", "none", "any", ""),
    "openai-compatible": KindFacts("/models", "bearer", "model_list", "/v1"),
}

KINDS: tuple[ProviderKind, ...] = get_args(ProviderKind)
AUTH_STYLES: tuple[AuthStyle, ...] = get_args(AuthStyle)
