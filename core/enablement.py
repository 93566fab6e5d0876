"""Turning a provider off (and on again) at run time, persisted in the database.

Config says whether a provider is enabled; `llmpulse providers disable ID` overrides that in
`provider_state.enabled_override` so every process sharing the database (daemon, TUIs, applications
using the failover client) sees the same decision without editing or reloading the config file.
NULL means "config decides".

Disabling closes the provider's open alerts in the same transaction (alerts.engine.close_provider_alerts):
nothing judges a disabled provider, so they would otherwise stay open forever — and they must not be
auto-resolved either, which would announce a recovery nobody saw. A provider disabled in the config file
is closed the same way by the collector's next round.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from llmpulse.core.catalog import Provider
from llmpulse.core.errors import LlmpulseError
from llmpulse.core.store import Store

if TYPE_CHECKING:
    from llmpulse.core.alerts.engine import AlertChange


class UnknownProviderError(LlmpulseError, ValueError):
    """An id that is neither in the catalog nor in the config."""

    def __init__(self, provider_id: str, known: Iterable[str]):
        self.provider_id = provider_id
        self.known = sorted(known)
        super().__init__(f"unknown provider {provider_id!r}; expected one of: {', '.join(self.known)}")


async def set_enabled(
    store: Store, provider_id: str, enabled: bool | None, now: float | None = None, by: str = "unknown"
) -> list[AlertChange]:
    """Persist the override for one provider; None clears it so config decides again. Disabling also
    closes the provider's open alerts (not as recovered), `by` saying who and where; returns those."""
    now = time.time() if now is None else now
    value = None if enabled is None else int(bool(enabled))
    async with store.transaction() as conn:
        # Upsert so the circuit-breaker columns A's health code keeps in the same row are left alone.
        await conn.execute(
            "INSERT INTO provider_state (provider_id, enabled_override, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(provider_id) DO UPDATE SET enabled_override = excluded.enabled_override, "
            "updated_at = excluded.updated_at",
            (provider_id, value, now),
        )
        if enabled is False:
            # Imported here: the failover client and `llmpulse providers` read overrides without the alert engine.
            from llmpulse.core.alerts.engine import close_provider_alerts

            return await close_provider_alerts(conn, provider_id, now, by)
    return []


async def enablement_overrides(store: Store) -> dict[str, bool]:
    """provider_id -> enabled, for every provider someone enabled or disabled by hand."""
    rows = await store.fetchall(
        "SELECT provider_id, enabled_override FROM provider_state WHERE enabled_override IS NOT NULL"
    )
    return {r["provider_id"]: bool(r["enabled_override"]) for r in rows}


async def apply_enablement(store: Store, providers: list[Provider]) -> list[Provider]:
    """The providers with the database's overrides applied (disabled ones have enabled=False)."""
    overrides = await enablement_overrides(store)
    return [replace(p, enabled=overrides[p.id]) if p.id in overrides else p for p in providers]
