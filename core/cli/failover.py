"""`llmpulse failover [--json]`: the failover chain as it stands, and how often it was used."""

from __future__ import annotations

import argparse
import time
from typing import Any

from llmpulse.core.cli.common import context_from, open_store, print_json, render_table, require_database

WINDOWS = (("24h", 86400.0), ("7d", 7 * 86400.0))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "failover",
        help="the failover chain (order, each provider's state) and fallback statistics",
        description="The providers a failover client would try, in order: enabled, configured, "
        "circuit not open and latest probe not failed, by priority. Then how often "
        "requests fell back, and from which provider to which, over 24h and 7d.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(handler=failover_command)


async def failover_command(args: argparse.Namespace) -> int:
    ctx = context_from(args)
    now = time.time()
    require_database(ctx)  # only reads: a missing database is said, not created empty
    store = await open_store(ctx)
    try:
        # per command: the CLI starts without httpx
        from llmpulse.core.failover import current_chain
        from llmpulse.core.usage.queries import fallback_pairs, total

        _, chain = await current_chain(store, ctx, now)
        stats: dict[str, dict[str, Any]] = {}
        for label, seconds in WINDOWS:
            overall = await total(store, now - seconds, now)
            stats[label] = {
                "requests": overall.requests,
                "fallbacks": overall.fallbacks,
                "fallback_rate": overall.fallbacks / overall.requests if overall.requests else None,
                "pairs": [
                    {"from": a, "to": b, "requests": n} for a, b, n in await fallback_pairs(store, now - seconds, now)
                ],
            }
    finally:
        await store.close()
    rows = [entry.to_json() for entry in chain]
    if args.json:
        print_json({"chain": rows, "fallbacks": stats})
        return 0
    if not rows:
        print("no configured providers: set their keys (see .env.example)")
    else:
        print(
            render_table(
                ("#", "PROVIDER", "PRIORITY", "STATUS", "CIRCUIT", "IN CHAIN"),
                [
                    (
                        r["position"] or "-",
                        r["id"],
                        r["priority"],
                        r["status"],
                        r["circuit"],
                        "yes" if r["skipped"] is None else f"no: {r['skipped']}",
                    )
                    for r in rows
                ],
                right=(0, 2),
            )
        )
    for label, s in stats.items():
        rate = "-" if s["fallback_rate"] is None else f"{s['fallback_rate']:.1%}"
        pairs = ", ".join(f"{p['from']}→{p['to']} {p['requests']}" for p in s["pairs"]) or "none"
        print(f"\nfallbacks {label}: {s['fallbacks']} of {s['requests']} requests ({rate}); {pairs}")
    return 0
