"""`llmpulse migration [NAME] [--json]`, `llmpulse migration advance NAME [--to PHASE] [--by WHO]`."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmpulse.core.cli.common import CliError, context_from, open_reader, open_store, print_json, render_table
from llmpulse.core.durations import format_duration
from llmpulse.core.migration import find_config

if TYPE_CHECKING:
    from llmpulse.core.migration import MigrationStatus, SideStats

MIGRATION_USAGE = "llmpulse migration [NAME] [--json]\n       llmpulse migration advance NAME [--to PHASE] [--by WHO]"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "migration",
        usage=MIGRATION_USAGE,
        help="model migrations: phase, traffic share on the new model, deadline risk, before/after",
        description="Without NAME: every configured migration. With NAME: that one in detail (phases, "
        "share of requests and tokens, trend, old vs new cost, p95 and error rate, history). "
        "'advance NAME' moves it to its next phase by hand (or --to a named phase).",
    )
    p.add_argument("words", nargs="*", metavar="NAME", help="a migration name, or: advance NAME")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--to", metavar="PHASE", help="with advance: the phase to move to (default: the next one)")
    p.add_argument("--by", metavar="WHO", help="with advance: who made the change (recorded in the history)")
    p.set_defaults(handler=migration_command)


async def migration_command(args: argparse.Namespace) -> int:
    words = list(args.words)
    if words and words[0] == "advance":
        if len(words) != 2:
            raise CliError("usage: llmpulse migration advance NAME [--to PHASE] [--by WHO]", 2)
        return await _advance(args, words[1])
    if len(words) > 1:
        raise CliError(f"expected at most one migration NAME, got {len(words)}: {' '.join(words)}", 2)
    if args.to or args.by:
        raise CliError("--to and --by go with 'migration advance NAME'", 2)
    ctx = context_from(args)
    name = words[0] if words else None
    if name is not None:
        find_config(ctx.config, name)  # an unknown name is a MigrationError: main() prints its one line
    if name is None and not ctx.config.migrations and not args.json:
        # Nothing configured: the config's answer, whether or not a database exists yet.
        where = "the config file (llmpulse.toml)" if ctx.config.source == "defaults" else ctx.config.source
        print(f"no migrations configured (add a [[migrations]] table to {where})")
        return 0
    store = await open_reader(ctx)
    try:
        from llmpulse.core.migration import migration_statuses  # per command: the CLI starts without it

        statuses = await migration_statuses(store, ctx.config, time.time())
    finally:
        await store.close()
    if name is not None:
        status = next(s for s in statuses if s.name == name)
        if args.json:
            print_json(status.to_json())
        else:
            print(render_detail(status))
        return 0
    if args.json:
        print_json({"migrations": [s.to_json() for s in statuses]})
    elif not statuses:
        # With no config file the source is "defaults": name the file to create instead.
        where = "the config file (llmpulse.toml)" if ctx.config.source == "defaults" else ctx.config.source
        print(f"no migrations configured (add a [[migrations]] table to {where})")
    else:
        print(render_list(statuses))
    return 0


async def _advance(args: argparse.Namespace, name: str) -> int:
    ctx = context_from(args)
    cause = "by hand" + (f" ({args.by})" if args.by else "")
    store = await open_store(ctx)
    try:
        from llmpulse.core.migration import advance

        change = await advance(store, name, time.time(), cause, cfg=ctx.config, to_phase=args.to)
    finally:
        await store.close()
    if args.json:
        print_json(change.to_json())
    else:
        print(f"{name}: {change.from_phase} -> {change.to_phase} ({cause})")
    return 0


# ----------------------------------------------------------------------------------------- rendering


def pct(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def days(value: float) -> str:
    return f"{-value:.1f}d over" if value < 0 else f"{value:.1f}d"


def stamp(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_list(statuses: list[MigrationStatus]) -> str:
    rows = [
        (
            s.name,
            f"{s.phase_index + 1}/{len(s.phases)} {s.phase}",
            pct(s.share_requests),
            pct(s.share_tokens),
            s.requests_in_window,
            days(s.days_left),
            s.risk,
            pct(s.projected_share_at_deadline),
        )
        for s in statuses
    ]
    return render_table(
        ("NAME", "PHASE", "REQ SHARE", "TOKEN SHARE", "REQUESTS", "LEFT", "RISK", "AT DEADLINE"),
        rows,
        right=(2, 3, 4, 5, 7),
    )


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


def render_detail(s: MigrationStatus) -> str:
    lines = [
        f"{s.name}: {', '.join(s.from_models)} -> {s.to_model}",
        f"  start {s.start}  deadline {s.deadline}  ({days(s.days_left)} left)  risk: {s.risk}",
        "  phases: "
        + "  ".join(
            (f"[{n} {sh:.0%}]" if i == s.phase_index else f"{n} {sh:.0%}")
            for i, (n, sh) in enumerate(zip(s.phases, s.phase_shares))
        ),
        f"  share over the last {format_duration(s.window_s)}: {pct(s.share_requests, 1)} of requests, "
        f"{pct(s.share_tokens, 1)} of tokens ({s.requests_in_window} old+new requests)",
    ]
    for t in s.phase_targets:
        if t.state == "reached":
            when = "in time" if t.late_by_days is None else f"{t.late_by_days:.1f} days late"
            lines.append(f"  phase {t.name} ({t.share:.0%}) due {t.by}: reached {when}")
        elif t.state == "late":
            lines.append(f"  phase {t.name} ({t.share:.0%}) due {t.by}: LATE by {t.late_by_days:.1f} days")
        else:
            lines.append(f"  phase {t.name} ({t.share:.0%}) due {t.by}: {t.state}")
    trend = "-" if s.trend_per_day is None else f"{s.trend_per_day * 100:+.2f} points/day"
    lines.append(
        f"  trend {trend}; projected at deadline {pct(s.projected_share_at_deadline)}; "
        f"target reached {stamp(s.projected_completion_at) if s.projected_completion_at else 'never at this pace'}"
    )
    lines.append(f"  old vs new over the last {format_duration(s.compare_s)}:")

    def cell(side: SideStats | None, attr: str, fmt: Callable[[Any], str]) -> str:
        return "-" if side is None else fmt(getattr(side, attr))

    table = render_table(
        ("", "OLD", "NEW"),
        [
            ("requests", cell(s.before, "requests", str), cell(s.after, "requests", str)),
            (
                "$ per 1k tokens",
                cell(s.before, "cost_per_1k_tokens", _money),
                cell(s.after, "cost_per_1k_tokens", _money),
            ),
            ("p95 latency", cell(s.before, "p95_ms", _ms), cell(s.after, "p95_ms", _ms)),
            (
                "error rate",
                cell(s.before, "error_rate", lambda v: pct(v, 1)),
                cell(s.after, "error_rate", lambda v: pct(v, 1)),
            ),
        ],
        right=(1, 2),
    )
    lines.extend("    " + line for line in table.splitlines())
    lines.append("  history:" if s.history else "  history: no phase change yet")
    for h in s.history:
        lines.append(f"    {stamp(h.at)}  {h.from_phase or '-'} -> {h.to_phase}  {h.cause}")
    return "\n".join(lines)
