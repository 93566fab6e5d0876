"""`llmpulse check [--json] [--provider ID ...]`: probe once, print, store, exit like a Nagios plugin.

Exit codes (for cron and monitoring systems, the Nagios convention): 0 every probed provider healthy,
1 some degraded, 2 some failed, 3 UNKNOWN — nothing configured to probe, or llmpulse could not check at all
(a config error, an unusable database, an unknown --provider): a typo must not page anyone as CRITICAL. Results are stored, so the dashboard and the alert rules
see a check run from cron exactly like a collector round.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from llmpulse.core.cli.common import CliError, context_from, open_store, print_json, render_table
from llmpulse.core.errors import LlmpulseError
from llmpulse.core.vocabulary import PROVIDER_STATUSES

if TYPE_CHECKING:
    from llmpulse.core.probe import ProbeResult

EXIT_OK, EXIT_DEGRADED, EXIT_FAILED, EXIT_UNKNOWN = 0, 1, 2, 3
EXIT_NOTHING = EXIT_UNKNOWN  # nothing configured to probe
GLYPH = {"healthy": "✓", "degraded": "▲", "failed": "✗", "unknown": "?"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="probe every configured provider once; exit 0 ok, 1 degraded, 2 failed, 3 unknown",
        description="Probe every configured provider once with a free request (model list, key info or "
        "balance: no tokens are spent), print status, latency, error and rate-limit headroom, "
        "store the results, and exit 0 when all are healthy, 1 when some are degraded, 2 when "
        "some failed, 3 (UNKNOWN) when nothing is configured or llmpulse could not check at all: a config "
        "error, an unusable database or an unknown --provider.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--provider", action="append", metavar="ID", default=None, help="probe only this provider (repeatable)"
    )
    p.set_defaults(handler=check_command)


def exit_code(results: list[ProbeResult]) -> int:
    statuses = {r.status for r in results}
    if statuses <= {"unknown"}:
        return EXIT_NOTHING
    if "failed" in statuses:
        return EXIT_FAILED
    if "degraded" in statuses:
        return EXIT_DEGRADED
    return EXIT_OK


def summary(results: list[ProbeResult]) -> dict[str, int]:
    return {s: sum(1 for r in results if r.status == s) for s in PROVIDER_STATUSES}


def _headroom(r: ProbeResult) -> str:
    h = r.rate_limit.headroom if r.rate_limit else None
    return "-" if h is None else f"{h:.0%}"


def _latency(r: ProbeResult) -> str:
    return "-" if r.latency_ms is None else f"{r.latency_ms:.0f} ms"


async def check_command(args: argparse.Namespace) -> int:
    try:
        return await _check(args)
    except LlmpulseError as exc:
        # Could not check at all: UNKNOWN, never the CRITICAL that a failed provider is.
        exc.exit_code = EXIT_UNKNOWN
        raise


async def _check(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `llmpulse --help` and the other commands start without httpx.
    from llmpulse.core.enablement import apply_enablement
    from llmpulse.core.health import record_probe_results
    from llmpulse.core.probe import probe_all

    ctx = context_from(args, bad_env_lines="refuse")  # a skipped key would read as "not configured"
    store = await open_store(ctx)
    try:
        providers = await apply_enablement(store, ctx.providers)
        if args.provider:
            known = {p.id for p in providers}
            unknown = [pid for pid in args.provider if pid not in known]
            if unknown:
                raise CliError(f"unknown provider {unknown[0]!r}; expected one of: {', '.join(sorted(known))}")
            providers = [p for p in providers if p.id in set(args.provider)]
        now = time.time()
        results = await probe_all(providers, ctx.config.probe, now=now)
        await record_probe_results(store, results, ctx.config.health, now)
    finally:
        await store.close()
    code = exit_code(results)
    counts = summary(results)
    if args.json:
        print_json(
            {"checked_at": now, "providers": [r.to_json() for r in results], "summary": counts, "exit_code": code}
        )
        return code
    shown = results if args.provider else [r for r in results if r.error_kind not in ("not_configured",)] or results
    rows = [
        (
            f"{GLYPH[r.status]} {r.status}",
            r.provider_id,
            _latency(r),
            r.http_status or "-",
            _headroom(r),
            (r.error_kind + ": " + (r.error or "")) if r.error_kind else "",
        )
        for r in shown
    ]
    print(render_table(("STATUS", "PROVIDER", "LATENCY", "HTTP", "HEADROOM", "ERROR"), rows, right=(2, 3, 4)))
    hidden = len(results) - len(shown)
    tail = f" ({hidden} not configured: `llmpulse providers` lists them)" if hidden else ""
    print(
        f"\n{counts['healthy']} healthy, {counts['degraded']} degraded, {counts['failed']} failed, "
        f"{counts['unknown']} unknown{tail}"
    )
    return code
