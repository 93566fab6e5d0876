"""Shared fixtures: a fake provider fleet on 127.0.0.1 (llmpulse.core.simulator.fleet) and providers resolved against it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from llmpulse.core.catalog import CATALOG_BY_ID, ProviderOverride, resolve_providers
from llmpulse.core.simulator.fleet import Fleet


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
