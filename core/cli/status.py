"""`llmpulse status [--json]`: the dashboard's verdicts as text or JSON, for scripts and one-line SSH checks.

It reads only — the database is opened read-only and nothing is probed: what it prints is what the
collector last judged, with who collects and how old the data is. The first line is a summary fit for
`ssh host llmpulse status | head -1`.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from llmpulse.core.cli.common import context_from, print_json, render_table, usd

if TYPE_CHECKING:
    from llmpulse.core.health import ProviderHealth
    from llmpulse.core.snapshot import Snapshot


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="every provider's verdict, budgets, open alerts, migrations and how old the data is (reads only)",
        description="What the dashboard shows, as text or JSON: every watched provider with its status and "
        "the reason, error and latency bands, p50/p95 (from traffic or probes, as labelled; '≈' before an "
        "estimate, p95_exact in JSON), error rate and "
        "circuit; budgets; open alerts; migrations; which process collects and how old the data is. It never "
        "probes and never writes: the database is opened read-only.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(handler=status_command)


async def status_command(args: argparse.Namespace) -> int:
    from llmpulse.core.snapshot import build_snapshot
    from llmpulse.core.store import Store

    ctx = context_from(args)
    # Not even a missing database is created: "nothing has collected there yet" is the answer.
    store = await Store.open(ctx.db_path, readonly=True)
    try:
        snap = await build_snapshot(store, ctx, time.time())
    finally:
        await store.close()
    watched = [h for h in snap.providers if h.watched]
    if args.json:
        print_json(
            {
                "generated_at": snap.refreshed_at,
                "summary": headline(snap),
                "collector": snap.collector.to_json(),
                "providers": [provider_json(h) for h in watched],
                "budgets": [b.to_json() for b in snap.budgets],
                # providers whose usage report the budgets count but that llmpulse does not know this month
                "spend_unknown": [{"provider": p, "reason": r} for p, r in snap.usage.spend_unknown.items()],
                "alerts": [a.to_json() for a in snap.alerts],
                "migrations": [m.to_json() for m in snap.migrations],
            }
        )
        return 0
    print(headline(snap))
    if watched:
        print()
        print(render_table(PROVIDER_HEADERS, [provider_row(h) for h in watched], right=(3, 5, 6)))
    if snap.budgets:
        print()
        print(
            render_table(
                ("BUDGET", "SPENT", "LIMIT", "USED"),
                [
                    (
                        b.name,
                        ("≥" if b.partial else "") + usd(b.spent_usd),
                        usd(b.limit_usd),
                        ("≥" if b.partial else "") + f"{b.utilization:.0%}",
                    )
                    for b in snap.budgets
                ],
                right=(1, 2, 3),
            )
        )
    for pid, reason in snap.usage.spend_unknown.items():
        print(f"{pid}: spend unknown ({reason}): budgets with it show ≥ what is known")
    if snap.alerts:
        print()
        print(
            render_table(
                ("ALERT", "SEVERITY", "STATE", "MESSAGE"),
                [(f"#{a.id}", a.severity, a.state, a.message) for a in snap.alerts],
            )
        )
    if snap.migrations:
        print()
        print(
            render_table(
                ("MIGRATION", "PHASE", "SHARE", "RISK"),
                [
                    (
                        m.name,
                        m.phase,
                        "-" if m.share_requests is None else f"{m.share_requests:.1%}",
                        m.risk,
                    )
                    for m in snap.migrations
                ],
            )
        )
    return 0


def headline(snap: Snapshot) -> str:
    """One line: providers by verdict, open alerts, and who collects / how old the data is."""
    h = snap.header
    alerts = ", ".join(f"{n} {sev}" for sev, n in h.alerts_by_severity.items() if n) or "no open alerts"
    return f"{h.providers_healthy}/{h.providers_total} healthy, {alerts} — {snap.collector.summary}"


PROVIDER_HEADERS = ("PROVIDER", "STATUS", "REASON", "ERRORS", "ERROR BAND", "P50", "P95", "LATENCY BAND", "CIRCUIT")


def _ms(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:,.0f}ms"


def _error_rate(h: ProviderHealth) -> str:
    """The rate, and when it is over too few calls to be judged, its counts and so."""
    if h.error_rate is None:
        return "-"
    if not h.error_rate_judged:
        return f"{h.error_rate:.1%} ({h.errors}/{h.samples}, too few)"
    return f"{h.error_rate:.1%}"


def _estimate(h: ProviderHealth, text: str) -> str:
    """A percentile that is the histogram's estimate, not the exact nearest rank, says so: "≈1,200ms"."""
    return text if h.p95_exact or text == "-" else f"≈{text}"


def provider_row(h: ProviderHealth) -> tuple[Any, ...]:
    source = f" ({h.latency_source})" if h.latency_source else ""
    return (
        h.provider_id,
        h.status + (" (stale)" if h.stale else ""),
        h.reason or "",
        _error_rate(h),
        h.error_band or "-",
        _estimate(h, _ms(h.p50_ms)),
        _estimate(h, _ms(h.p95_ms)) + source,
        h.latency_band or "-",
        h.circuit,
    )


def provider_json(h: ProviderHealth) -> dict[str, Any]:
    keep = (
        "provider_id",
        "name",
        "status",
        "reason",
        "probe_status",
        "stale",
        "verdict_at",
        "error_rate",
        "error_rate_judged",
        "errors",
        "samples_needed",
        "error_source",
        "error_band",
        "samples",
        "requests",
        "p50_ms",
        "p95_ms",
        "p95_exact",
        "latency_source",
        "latency_band",
        "circuit",
        "consecutive_failures",
        "configured",
        "setup_gap",
    )
    full = h.to_json()
    return {k: full[k] for k in keep}
