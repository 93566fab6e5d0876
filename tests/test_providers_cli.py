"""`llmpulse providers` list, enable/disable persisted in the database, and the enablement store."""

import json

import pytest

from llmpulse.core.catalog import CATALOG
from llmpulse.core.cli import main
from llmpulse.core.config import load_context
from llmpulse.core.enablement import apply_enablement, enablement_overrides, set_enabled
from llmpulse.core.store import Store

KEY = "sk-test-providerslist-0123456789abcdef"


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for spec in CATALOG:
        for var in (*spec.key_envs, *spec.base_url_envs):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("LLMPULSE_CONFIG", raising=False)
    monkeypatch.delenv("LLMPULSE_DB", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cfg = tmp_path / "llmpulse.toml"
    cfg.write_text(
        '[providers.openai]\nbase_url = "http://127.0.0.1:9/v1"\npriority = 3\n'
        '[providers.my-vllm]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:8000/v1"\n'
        "local = true\npriority = 5\n"
    )
    db = tmp_path / "p.db"
    return ["--config", str(cfg), "--db", str(db)], db


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_catalog_configured_base_url_priority_enabled(setup, capsys):
    argv, _ = setup
    code, out, err = run(capsys, [*argv, "providers", "--json"])
    assert code == 0, err
    rows = {r["id"]: r for r in json.loads(out)["providers"]}
    assert set(rows) == {s.id for s in CATALOG} | {"my-vllm"}
    assert rows["openai"] == {
        "id": "openai",
        "name": "OpenAI",
        "kind": "openai",
        "configured": True,
        "local": False,
        "base_url": "http://127.0.0.1:9/v1",
        "priority": 3,
        "enabled": True,
        "enabled_source": "config",
        "key_env": "OPENAI_API_KEY",
        "key_set": True,
    }
    assert rows["anthropic"]["configured"] is False and rows["anthropic"]["key_set"] is False
    assert rows["my-vllm"]["configured"] is True and rows["my-vllm"]["local"] is True
    # Ordered by failover priority.
    assert [r["id"] for r in json.loads(out)["providers"]][:2] == ["openai", "my-vllm"]
    code, text, _ = run(capsys, [*argv, "providers"])
    assert code == 0
    assert "http://127.0.0.1:9/v1" in text and "OPENAI_API_KEY set" in text
    assert KEY not in out and KEY not in text


def test_disable_and_enable_persist_in_the_database(setup, capsys):
    argv, _db = setup
    code, out, err = run(capsys, [*argv, "providers", "disable", "openai"])
    assert code == 0 and out.strip() == "openai: disabled", err
    code, out, _ = run(capsys, [*argv, "providers", "--json"])
    row = next(r for r in json.loads(out)["providers"] if r["id"] == "openai")
    assert row["enabled"] is False and row["enabled_source"] == "database"
    code, text, _ = run(capsys, [*argv, "providers"])
    assert "no (set by hand)" in text
    code, out, _ = run(capsys, [*argv, "providers", "enable", "openai"])
    assert code == 0 and out.strip() == "openai: enabled"
    code, out, _ = run(capsys, [*argv, "providers", "--json"])
    row = next(r for r in json.loads(out)["providers"] if r["id"] == "openai")
    assert row["enabled"] is True and row["enabled_source"] == "database"


def test_unknown_id_is_a_clear_error_exit_1(setup, capsys):
    argv, _db = setup
    run(capsys, [*argv, "providers", "disable", "openai"])
    code, out, err = run(capsys, [*argv, "providers", "disable", "open-ai"])
    assert code == 1
    assert err.count("\n") == 1
    assert "unknown provider 'open-ai'" in err and "openai" in err and "my-vllm" in err
    assert "Traceback" not in err
    # Nothing stored is lost.
    code, out, _ = run(capsys, [*argv, "providers", "--json"])
    assert next(r for r in json.loads(out)["providers"] if r["id"] == "openai")["enabled"] is False


async def test_apply_enablement_and_circuit_columns_untouched(setup, tmp_path):
    _argv, db = setup
    ctx = load_context(str(tmp_path / "llmpulse.toml"), str(db), environ={"OPENAI_API_KEY": KEY})
    async with await Store.open(db) as store:
        # A's health code keeps the circuit in the same row: an override must not reset it.
        await store.execute(
            "INSERT INTO provider_state (provider_id, circuit, consecutive_failures, updated_at) "
            "VALUES ('openai', 'open', 4, 1.0)"
        )
        await set_enabled(store, "openai", False, now=2.0)
        await set_enabled(store, "my-vllm", False, now=2.0)
        row = await store.fetchone(
            "SELECT circuit, consecutive_failures, enabled_override FROM provider_state WHERE provider_id = 'openai'"
        )
        assert tuple(row) == ("open", 4, 0)
        providers = await apply_enablement(store, ctx.providers)
        enabled = {p.id: p.enabled for p in providers}
        assert enabled["openai"] is False and enabled["my-vllm"] is False and enabled["anthropic"] is True
        await set_enabled(store, "openai", None, now=3.0)  # back to what config says
        assert await enablement_overrides(store) == {"my-vllm": False}
    # Persisted across opens (another process sees it).
    async with await Store.open(db) as store:
        assert await enablement_overrides(store) == {"my-vllm": False}
