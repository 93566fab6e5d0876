"""`llmpulse alerts [--all] [--json]`, `alerts show ID` and `alerts ack|resolve|silence|unsilence ID`."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import TYPE_CHECKING

from llmpulse.core.cli.common import (
    CliError,
    context_from,
    default_actor,
    open_reader,
    open_store,
    period_seconds,
    print_json,
    render_table,
)
from llmpulse.core.durations import DurationError, format_duration, parse_duration
from llmpulse.core.vocabulary import counted

if TYPE_CHECKING:
    from llmpulse.core.alerts.engine import Alert
    from llmpulse.core.alerts.stats import AlertStats, DurationStats, GroupCount


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "alerts",
        help="open alerts (or all with --all); ack, resolve, silence, unsilence",
        description="List open alerts, or act on one: ack ID, resolve ID, silence ID --for 1h, "
        "unsilence ID. An unknown ID, or an action that does not fit the alert's state, "
        "is an error with exit code 1 and changes nothing. Notices go to the [[alerts.channels]] "
        "(webhook, slack, discord, email, alertmanager, pagerduty); an ack or silence is mirrored to "
        "PagerDuty (acknowledge) and Alertmanager (a silence).",
    )
    p.add_argument("--all", action="store_true", help="history too (resolved alerts)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=list_command)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    ack = actions.add_parser("ack", help="acknowledge: stops repeat notices and escalation")
    ack.add_argument("id", type=int, metavar="ID")
    ack.add_argument("--note", default=None, metavar="TEXT")
    ack.add_argument("--by", default=None, metavar="NAME", help="who (default: the login user)")
    ack.set_defaults(handler=action_command, verb="ack")
    res = actions.add_parser("resolve", help="resolve by hand (sends the resolved notice)")
    res.add_argument("id", type=int, metavar="ID")
    res.add_argument("--note", default=None, metavar="TEXT")
    res.add_argument("--by", default=None, metavar="NAME")
    res.set_defaults(handler=action_command, verb="resolve")
    sil = actions.add_parser("silence", help="no notices for a while; the alert stays visible")
    sil.add_argument("id", type=int, metavar="ID")
    sil.add_argument("--for", dest="duration", required=True, metavar="DURATION", help='e.g. "30m", "2h", "1d"')
    sil.add_argument("--by", default=None, metavar="NAME")
    sil.set_defaults(handler=action_command, verb="silence")
    uns = actions.add_parser("unsilence", help="end a silence early")
    uns.add_argument("id", type=int, metavar="ID")
    uns.add_argument("--by", default=None, metavar="NAME")
    uns.set_defaults(handler=action_command, verb="unsilence")
    show = actions.add_parser("show", help="one alert with its history and deliveries (failed ones with why)")
    show.add_argument("id", type=int, metavar="ID")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=show_command)
    stats = actions.add_parser(
        "stats",
        help="alerts by rule, severity and subject; time to ack/resolve; noisiest rules; deliveries per channel",
        description="Statistics of the alerts opened in the period: counts by rule, severity and subject, "
        "time to acknowledge and to resolve (median and p90, exact), the noisiest rules (most re-fires) and "
        "notices sent, failed and held per channel.",
    )
    stats.add_argument("--since", default="30d", metavar="DURATION", help="how far back, e.g. 24h, 7d (default 30d)")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(handler=stats_command)


def _age(seconds: float) -> str:
    return format_duration(max(0.0, seconds))


def state_word(alert: Alert, now: float) -> str:
    if alert.closed_reason:  # resolved because nothing judges its provider any more: not a recovery
        return "closed, not recovered"
    words = [alert.state if alert.state != "acknowledged" else f"acked by {alert.acked_by}"]
    if alert.escalated and alert.state == "firing":
        words.append("escalated")
    if alert.silenced(now) and alert.silenced_until is not None:
        words.append(f"silenced {_age(alert.silenced_until - now)}")
    return ", ".join(words)


async def list_command(args: argparse.Namespace) -> int:
    ctx = context_from(args)
    store = await open_reader(ctx)
    try:
        from llmpulse.core.alerts.engine import AlertEngine  # per command: the CLI starts without it

        engine = AlertEngine(store, ctx.config.alerts)
        alerts = await (engine.history() if args.all else engine.open_alerts())
    finally:
        await store.close()
    now = time.time()
    if args.json:
        print_json({"alerts": [a.to_json() for a in alerts]})
        return 0
    if not alerts:
        print("no open alerts" if not args.all else "no alerts yet")
        return 0
    rows = [(a.id, a.severity, state_word(a, now), _age(now - a.first_seen), a.subject, a.message) for a in alerts]
    print(render_table(("ID", "SEVERITY", "STATE", "AGE", "SUBJECT", "MESSAGE"), rows, right=(0, 3)))
    return 0


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


async def show_command(args: argparse.Namespace) -> int:
    ctx = context_from(args)
    store = await open_reader(ctx)
    try:
        from llmpulse.core.alerts.engine import AlertEngine  # per command: the CLI starts without it

        engine = AlertEngine(store, ctx.config.alerts)
        alert = await engine.get(args.id)
        if alert is None:
            raise CliError(f"no alert #{args.id}; `llmpulse alerts --all` lists them", 1)
        transitions = await engine.transitions(args.id)
        deliveries = [dict(r) for r in await engine.deliveries(args.id)]
    finally:
        await store.close()
    if args.json:
        print_json(
            {
                "alert": alert.to_json(),
                "transitions": [{**t.__dict__, "change": t.change} for t in transitions],
                "deliveries": deliveries,
            }
        )
        return 0
    now = time.time()
    print(f"alert #{alert.id} [{alert.severity}] {alert.rule} {alert.subject}: {alert.message}")
    print(
        f"state: {state_word(alert, now)}; first seen {_when(alert.first_seen)}, last seen {_when(alert.last_seen)}, "
        f"{counted(alert.count, 'time')}" + (f"; note: {alert.note}" if alert.note else "")
    )
    if alert.closed_reason:
        print(f"closed {_when(alert.resolved_at)}: {alert.closed_reason}")
    print()
    print(
        render_table(
            ("TIME", "CHANGE", "BY", "DETAIL"), [(_when(t.at), t.change, t.actor, t.detail or "") for t in transitions]
        )
    )
    if deliveries:
        print()
        print(
            render_table(
                ("TIME", "CHANNEL", "NOTICE", "STATUS", "TRIES", "REASON"),
                [
                    (_when(d["updated_at"]), d["channel"], d["event"], d["status"], d["attempts"], d["error"] or "")
                    for d in deliveries
                ],
                right=(4,),
            )
        )
    return 0


async def action_command(args: argparse.Namespace) -> int:
    ctx = context_from(args)
    by = args.by or default_actor()
    seconds = None
    if args.verb == "silence":
        try:
            seconds = parse_duration(args.duration)
        except DurationError:
            raise CliError(
                f"--for: found {args.duration[:40]!r}; expected a duration like 30m, 2h or 1d, from 1s to 3650d", 2
            ) from None
        if seconds <= 0:
            raise CliError(f"--for: found {args.duration!r}; expected a positive duration like 30m", 2)
    store = await open_store(ctx)
    try:
        from llmpulse.core.alerts.engine import AlertEngine  # per command: the CLI starts without it

        engine = AlertEngine(store, ctx.config.alerts)
        # An action that cannot be done raises AlertError: main() prints its one line (exit 1).
        if args.verb == "ack":
            alert = await engine.ack(args.id, by, args.note)
        elif args.verb == "resolve":
            alert = await engine.resolve(args.id, by, args.note)
        elif args.verb == "silence" and seconds is not None:
            alert = await engine.silence(args.id, seconds, by)
        else:
            alert = await engine.unsilence(args.id, by)
    finally:
        await store.close()
    until = ""
    if args.verb == "silence" and alert.silenced_until is not None:
        until = " until " + dt.datetime.fromtimestamp(alert.silenced_until).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    done = {"ack": "acknowledged", "resolve": "resolved", "silence": "silenced", "unsilence": "unsilenced"}[args.verb]
    print(f"alert #{alert.id} {done} by {by}{until}: {alert.subject}: {alert.message}")
    return 0


def _durations(stats: DurationStats) -> str:
    if not stats.count:
        return "none yet"
    assert stats.median_s is not None and stats.p90_s is not None
    return f"median {format_duration(stats.median_s)}, p90 {format_duration(stats.p90_s)} (of {counted(stats.count, 'alert')})"


def _group_table(title: str, groups: list[GroupCount]) -> str:
    return render_table((title, "ALERTS", "FIRED"), [(g.key, g.alerts, g.fired) for g in groups], right=(1, 2))


def print_stats(stats: AlertStats, since_text: str) -> None:
    print(f"{counted(stats.alerts, 'alert')} opened in the last {since_text}")
    if not stats.alerts and not stats.deliveries:
        return
    print(f"time to acknowledge: {_durations(stats.time_to_ack)}")
    print(f"time to resolve:     {_durations(stats.time_to_resolve)}")
    for title, groups in (("RULE", stats.by_rule), ("SEVERITY", stats.by_severity), ("SUBJECT", stats.by_subject)):
        if groups:
            print()
            print(_group_table(title, groups))
    print()
    if stats.noisiest_rules:
        names = ", ".join(f"{g.key} ({counted(g.fired, 'fire')})" for g in stats.noisiest_rules)
        print(f"noisiest rules: {names}")
    else:
        print("noisiest rules: none fired")
    if stats.deliveries:
        print()
        print(
            render_table(
                ("CHANNEL", "SENT", "FAILED", "HELD", "SENDING"),
                [(d.channel, d.sent, d.failed, d.held, d.pending) for d in stats.deliveries],
                right=(1, 2, 3, 4),
            )
        )


async def stats_command(args: argparse.Namespace) -> int:
    seconds = period_seconds(args.since)
    ctx = context_from(args)
    now = time.time()
    store = await open_reader(ctx)
    try:
        from llmpulse.core.alerts.stats import alert_stats

        stats = await alert_stats(store, now - seconds, now + 1)
    finally:
        await store.close()
    if args.json:
        print_json({"since": args.since, **stats.to_json()})
    else:
        print_stats(stats, args.since)
    return 0
