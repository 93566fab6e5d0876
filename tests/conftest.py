"""Shared fixtures: every test isolated from the developer's own settings; a fake provider fleet on
127.0.0.1 (llmpulse.core.simulator.fleet) and providers resolved against it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from llmpulse.core.catalog import CATALOG, CATALOG_BY_ID, ProviderOverride, resolve_providers
from llmpulse.core.simulator.fleet import Fleet

# Variables llmpulse reads besides LLMPULSE_*: every provider's key, admin key and base URL, and the
# suffixes custom providers and channels use for theirs.
_PROVIDER_VARIABLES = frozenset(v for s in CATALOG for v in (*s.key_envs, *s.base_url_envs, *s.admin_key_envs))
_SECRET_SUFFIXES = ("_API_KEY", "_ADMIN_KEY", "_MANAGEMENT_KEY", "_BASE_URL", "_WEBHOOK_URL", "_ROUTING_KEY")


def _developer_setting(name: str) -> bool:
    return name.startswith("LLMPULSE_") or name in _PROVIDER_VARIABLES or name.endswith(_SECRET_SUFFIXES)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A developer's own ~/.config/llmpulse/llmpulse.toml, data dir or $LLMPULSE_* / provider keys never
    change a test's outcome: HOME and the XDG dirs point into a fresh directory, those variables are
    removed, and the working directory is that fresh home. Subprocesses started from a test inherit this environment."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_CACHE_HOME", ".cache"),
    ):
        monkeypatch.setenv(name, str(home / sub))
    for name in list(os.environ):
        if _developer_setting(name):
            monkeypatch.delenv(name)
    # ./llmpulse.toml and ./.env are read from the working directory too: a checkout may hold a developer's.
    monkeypatch.chdir(home)
    # The dashboard picks its theme by the terminal's colours (16 colours: the terminal's own palette), so
    # screenshots and styles are compared on one kind of terminal whatever runs the tests; the colour
    # tests set their own.
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLORTERM", "truecolor")
    monkeypatch.delenv("NO_COLOR", raising=False)
    yield home


def providers_for(fleet: Fleet, keys: dict[str, str], ids: list[str] | None = None):
    """Providers pointed at the fleet's fakes, with `keys` as the environment. A fake whose id is not a
    catalog id gets the catalog spec of its kind under its own id (so several fakes can share a kind)."""
    ids = ids or list(fleet.providers)
    specs = {
        i: CATALOG_BY_ID[i] if i in CATALOG_BY_ID else replace(CATALOG_BY_ID[fleet.providers[i].kind], id=i)
        for i in ids
    }
    overrides = {i: ProviderOverride(base_url=fleet.base_url(i)) for i in ids}
    return resolve_providers(specs, keys, overrides)


@pytest.fixture
def fleet():
    with Fleet() as f:
        yield f
