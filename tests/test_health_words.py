"""The core's health words that the dashboard, `status` and JSON show (issues 13 §6 and 18 §2): an
error rate over too few calls is never judged (no band, its counts and "too few"), and a provider this
process cannot probe says what it lacks — a local one that needs no key never says "no key"."""

from __future__ import annotations

from llmpulse.core.catalog import CATALOG, CATALOG_BY_ID, resolve_providers
from llmpulse.core.health import MIN_PROBES, load_health, record_probe_results
from llmpulse.core.health_settings import HealthSettings
from llmpulse.core.probe import ProbeResult, probe_provider
from llmpulse.core.probe_settings import ProbeSettings
from llmpulse.core.store import Store

SETTINGS = HealthSettings(window=900, failure_threshold=3, cooldown=60)
T0 = 1_800_000_000.0


def probe(pid: str, at: float, ok: bool) -> ProbeResult:
    if ok:
        return ProbeResult(pid, pid, at, "healthy", None, None, 120.0, 200)
    return ProbeResult(pid, pid, at, "failed", "server_error", "HTTP 500", 90.0, 500)


async def judged_after(tmp_path, outcomes: list[bool]):
    providers = resolve_providers({"openai": CATALOG_BY_ID["openai"]}, {"OPENAI_API_KEY": "k"})
    store = await Store.open(tmp_path / "w.db")
    try:
        for i, ok in enumerate(outcomes):
            at = T0 + i * 30
            await record_probe_results(store, [probe("openai", at, ok)], SETTINGS, at)
        now = T0 + len(outcomes) * 30
        return (await load_health(store, providers, SETTINGS, now))[0]
    finally:
        await store.close()


async def test_an_error_rate_over_too_few_probes_is_not_judged(tmp_path):
    # One failure among three probes, the last of them a success: 33% would be "critical" if judged.
    h = await judged_after(tmp_path, [False, True, True])
    assert (h.errors, h.samples) == (1, 3)
    assert abs(h.error_rate - 1 / 3) < 1e-9
    assert not h.error_rate_judged and h.error_band is None and h.samples_needed == MIN_PROBES
    assert h.status == "healthy"  # the latest probe's word, not weighed by a rate that says nothing yet
    assert "1 of 3 probes failed (too few to judge: 5 needed)" in (h.reason or ""), h.reason
    as_json = h.to_json()
    assert as_json["error_band"] is None and as_json["error_rate_judged"] is False


async def test_the_same_rate_over_enough_probes_is_judged_and_banded(tmp_path):
    # Two failures in six probes: enough calls, so 33% is critical and makes the provider degraded.
    h = await judged_after(tmp_path, [False, True, True, False, True, True])
    assert (h.errors, h.samples) == (2, 6)
    assert h.error_rate_judged and h.samples_needed is None and h.error_band == "critical"
    assert h.status == "degraded" and "33% of probes failed" in (h.reason or "")


def test_what_an_unconfigured_provider_lacks():
    by_id = {p.id: p for p in resolve_providers({s.id: s for s in CATALOG}, {})}
    # Keyless local providers need no key: they lack being asked for, and say where.
    for pid, variable in (("ollama", "OLLAMA_HOST"), ("localai", "LOCALAI_BASE_URL")):
        gap = by_id[pid].setup_gap
        assert gap is not None and gap.word == "not set up", gap
        assert "needs no key" in gap.hint and variable in gap.hint and f"[providers.{pid}]" in gap.hint
    assert by_id["openai"].setup_gap.word == "no key" and "OPENAI_API_KEY" in by_id["openai"].setup_gap.hint
    # Azure has no public endpoint: its base URL is what it lacks first.
    assert by_id["azure"].setup_gap.word == "no base URL" and "AZURE_OPENAI_ENDPOINT" in by_id["azure"].setup_gap.hint
    # Asked for, a local provider is configured, with no key at all.
    asked = {p.id: p for p in resolve_providers({"ollama": CATALOG_BY_ID["ollama"]}, {"OLLAMA_HOST": "localhost"})}
    assert asked["ollama"].configured and asked["ollama"].setup_gap is None and asked["ollama"].api_key is None


async def test_health_and_status_say_what_is_missing(tmp_path):
    providers = resolve_providers({i: CATALOG_BY_ID[i] for i in ("ollama", "openai")}, {})
    store = await Store.open(tmp_path / "g.db")
    try:
        health = {h.provider_id: h for h in await load_health(store, providers, SETTINGS, T0)}
    finally:
        await store.close()
    reason = health["ollama"].reason or ""
    assert health["ollama"].setup_gap == "not set up" and reason.startswith("not judged here: not set up (")
    assert "needs no key" in reason and "OLLAMA_HOST" in reason
    assert health["openai"].setup_gap == "no key" and "OPENAI_API_KEY" in (health["openai"].reason or "")


async def test_the_probe_of_an_unconfigured_provider_is_not_run():
    # The probe and the verdict agree on what is missing (no request is sent: there is no client here).
    ollama = resolve_providers({"ollama": CATALOG_BY_ID["ollama"]}, {})[0]
    result = await probe_provider(None, ollama, ProbeSettings(), T0)  # type: ignore[arg-type]
    assert result.status == "unknown" and result.error_kind == "not_configured"
    assert "no key:" not in (result.error or "")
