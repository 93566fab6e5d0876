"""Catalog resolution: keys, base-URL precedence, what counts as configured."""

from llmpulse.core.catalog import CATALOG, ProviderOverride, resolve_providers
from llmpulse.core.config import load_context, parse_config


def by_id(providers):
    return {p.id: p for p in providers}


def test_catalog_has_the_thirteen_providers():
    ids = {s.id for s in CATALOG}
    assert ids == {
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
    }


def test_keys_come_from_env_and_google_wins_over_gemini():
    specs = {s.id: s for s in CATALOG}
    ps = by_id(resolve_providers(specs, {"GEMINI_API_KEY": "g1", "GOOGLE_API_KEY": "g2", "OPENAI_API_KEY": "o"}))
    assert ps["gemini"].api_key.reveal() == "g2" and ps["gemini"].key_env == "GOOGLE_API_KEY"
    assert ps["openai"].configured and not ps["anthropic"].configured
    assert ps["anthropic"].key_env == "ANTHROPIC_API_KEY"


def test_base_url_precedence_config_then_sdk_variable_then_default():
    specs = {s.id: s for s in CATALOG}
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "ANTHROPIC_BASE_URL": "http://127.0.0.1:2"}
    ps = by_id(resolve_providers(specs, env, {"openai": ProviderOverride(base_url="http://127.0.0.1:9000/v1")}))
    assert ps["openai"].base_url == "http://127.0.0.1:9000/v1"
    assert ps["anthropic"].base_url == "http://127.0.0.1:2"
    assert ps["mistral"].base_url == "https://api.mistral.ai/v1"


def test_local_providers_are_probed_only_when_asked_for():
    specs = {s.id: s for s in CATALOG}
    assert not by_id(resolve_providers(specs, {}))["ollama"].configured
    ollama = by_id(resolve_providers(specs, {"OLLAMA_HOST": "0.0.0.0:11434"}))["ollama"]
    assert ollama.configured and ollama.base_url == "http://127.0.0.1:11434"


def test_azure_needs_its_endpoint():
    specs = {s.id: s for s in CATALOG}
    assert not by_id(resolve_providers(specs, {"AZURE_OPENAI_API_KEY": "k"}))["azure"].configured
    az = by_id(
        resolve_providers(
            specs, {"AZURE_OPENAI_API_KEY": "k", "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com/"}
        )
    )["azure"]
    assert az.configured and az.base_url == "https://res.openai.azure.com"


def test_config_overrides_and_custom_endpoint():
    cfg = parse_config(
        {
            "providers": {
                "openai": {
                    "base_url": "http://127.0.0.1:9000/v1",
                    "api_key_env": "MY_OPENAI_KEY",
                    "priority": 1,
                    "enabled": True,
                },
                "my-vllm": {
                    "kind": "openai-compatible",
                    "base_url": "http://10.0.0.5:8000/v1",
                    "api_key_env": "VLLM_KEY",
                    "local": True,
                },
            }
        },
        "t.toml",
    )
    ps = by_id(
        resolve_providers(cfg.specs, {"MY_OPENAI_KEY": "k1", "OPENAI_API_KEY": "ignored"}, cfg.provider_overrides)
    )
    assert ps["openai"].api_key.reveal() == "k1" and ps["openai"].priority == 1
    vllm = ps["my-vllm"]
    assert vllm.local and vllm.spec.auth == "bearer" and vllm.spec.probe_path == "/models"
    assert vllm.configured and vllm.api_key is None  # the key is optional for a custom endpoint
    assert next(iter(ps)) == "openai"  # priority 1 sorts first


def test_env_file_loses_to_real_environment(tmp_path):
    env_file = tmp_path / "x.env"
    env_file.write_text("OPENAI_API_KEY=from-file\nGROQ_API_KEY=groq-file\n")
    ctx = load_context(env_file=str(env_file), environ={"OPENAI_API_KEY": "from-env"}, db_path=str(tmp_path / "x.db"))
    ps = by_id(ctx.providers)
    assert ps["openai"].api_key.reveal() == "from-env"
    assert ps["groq"].api_key.reveal() == "groq-file"
    assert ctx.db_path == tmp_path / "x.db"
