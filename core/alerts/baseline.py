"""Each provider's learned latency baseline, kept in `alert_latency_samples`.

A sample (the provider's recent median latency) is stored at most every `latency_sample_every` per
provider and kept for `latency_baseline`. The baseline a round is judged against leaves out the
current health window, so a slowdown that is happening now does not pull its own baseline up; a
slowdown that lasts longer than that becomes the new normal, which is what "learned" means here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llmpulse.core.alerts.config import AlertsConfig
from llmpulse.core.alerts.rules import LatencyBaseline, baseline_from_samples, recent_latency_ms
from llmpulse.core.store import Store


async def record_latency_samples(store: Store, health: Iterable[Any], cfg: AlertsConfig, now: float) -> int:
    """Store one sample per provider that has a latency now and none stored recently; prune old ones."""
    rows = await store.fetchall("SELECT provider_id, MAX(at) AS last FROM alert_latency_samples GROUP BY provider_id")
    last = {r["provider_id"]: r["last"] for r in rows}
    new = []
    for h in health:
        pid = getattr(h, "provider_id", None)
        latency = recent_latency_ms(h)
        if pid is None or latency is None or getattr(h, "status", None) in ("failed", "unknown"):
            continue
        if pid in last and now - last[pid] < cfg.latency_sample_every:
            continue
        new.append((pid, now, latency))
    if new:
        await store.executemany("INSERT INTO alert_latency_samples (provider_id, at, latency_ms) VALUES (?, ?, ?)", new)
    await store.execute("DELETE FROM alert_latency_samples WHERE at < ?", (now - cfg.latency_baseline,))
    return len(new)


async def load_latency_baselines(
    store: Store, cfg: AlertsConfig, now: float, exclude_recent: float
) -> dict[str, LatencyBaseline]:
    """Baseline per provider from samples in [now - latency_baseline, now - exclude_recent)."""
    rows = await store.fetchall(
        "SELECT provider_id, latency_ms FROM alert_latency_samples WHERE at >= ? AND at < ? ORDER BY provider_id",
        (now - cfg.latency_baseline, now - exclude_recent),
    )
    values: dict[str, list[float]] = {}
    for r in rows:
        values.setdefault(r["provider_id"], []).append(float(r["latency_ms"]))
    out = {}
    for pid, vals in values.items():
        baseline = baseline_from_samples(pid, vals)
        if baseline is not None:
            out[pid] = baseline
    return out
