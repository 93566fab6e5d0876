"""`llmpulse providers [--json]`, `llmpulse providers enable ID`, `llmpulse providers disable ID`."""

from __future__ import annotations

import argparse
import time
from typing import Any

from llmpulse.core.catalog import Provider
from llmpulse.core.cli.common import CliError, context_from, default_actor, open_store, print_json, render_table
from llmpulse.core.enablement import UnknownProviderError, enablement_overrides, set_enabled
from llmpulse.core.vocabulary import counted


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "providers",
        help="the provider catalog: configured or not, base URL, priority, enabled",
        description="List every known provider (catalog and config): whether it is configured (key and "
        "base URL present), its base URL, failover priority (lower first) and whether it is "
        "enabled. 'enable ID' / 'disable ID' turn one on or off for every process using this "
        "database; a disabled provider is not probed and not chosen by failover.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=list_command)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    for action, words in (("enable", "turn a provider back on"), ("disable", "stop probing and choosing a provider")):
        a = actions.add_parser(
            action,
            help=f"{words} (kept in the database)",
            description=f"{words[0].upper()}{words[1:]}; kept in the database, so the daemon, "
            "dashboards and failover clients all see it."
            + (
                " Its open alerts are closed, with who disabled it: nothing judges it any more. They are "
                "announced as closed, never as resolved (it did not recover)."
                if action == "disable"
                else ""
            ),
        )
        a.add_argument("provider_id", metavar="ID", help="a provider id, as listed by 'llmpulse providers'")
        if action == "disable":
            a.add_argument("--by", default=None, metavar="NAME", help="who disables it (default: your login name)")
        a.add_argument("--json", action="store_true", help="print JSON")
        a.set_defaults(handler=enable_command, enabled=(action == "enable"))


def provider_row(p: Provider, override: bool | None) -> dict[str, Any]:
    enabled = p.enabled if override is None else override
    return {
        "id": p.id,
        "name": p.name,
        "kind": p.spec.kind,
        "configured": p.configured,
        "local": p.local,
        "base_url": p.base_url or None,
        "priority": p.priority,
        "enabled": enabled,
        "enabled_source": "config" if override is None else "database",
        # The variable's name only, and whether it is set: never the key.
        "key_env": p.key_env,
        "key_set": p.api_key is not None,
    }


async def list_command(args: argparse.Namespace) -> int:
    ctx = context_from(args)
    overrides: dict[str, bool] = {}
    # The catalog and config answer on their own; only a database that exists can hold a hand-set
    # enable/disable. A mistyped --db must not leave an empty database behind.
    if ctx.db_path.exists():
        store = await open_store(ctx)
        try:
            overrides = await enablement_overrides(store)
        finally:
            await store.close()
    rows = [provider_row(p, overrides.get(p.id)) for p in ctx.providers]
    if args.json:
        print_json({"providers": rows})
        return 0
    table = [
        (
            r["id"],
            r["name"],
            "yes" if r["configured"] else "no",
            r["base_url"] or "-",
            r["priority"],
            ("yes" if r["enabled"] else "no") + (" (set by hand)" if r["enabled_source"] == "database" else ""),
            "local"
            if r["local"]
            else (f"{r['key_env']} {'set' if r['key_set'] else 'missing'}" if r["key_env"] else "-"),
        )
        for r in rows
    ]
    print(render_table(("ID", "NAME", "CONFIGURED", "BASE URL", "PRIORITY", "ENABLED", "KEY"), table, right=(4,)))
    configured = sum(r["configured"] for r in rows)
    print(
        f"\n{configured} of {len(rows)} configured; "
        f"{sum(r['configured'] and r['enabled'] for r in rows)} configured and enabled"
    )
    return 0


async def enable_command(args: argparse.Namespace) -> int:
    ctx = context_from(args)
    provider = ctx.provider(args.provider_id)
    if provider is None:
        raise CliError(str(UnknownProviderError(args.provider_id, (p.id for p in ctx.providers))))
    store = await open_store(ctx)
    by = f"{getattr(args, 'by', None) or default_actor()} (llmpulse providers disable)"
    try:
        closed = await set_enabled(store, provider.id, args.enabled, time.time(), by=by)
    finally:
        await store.close()
    word = "enabled" if args.enabled else "disabled"
    if args.json:
        print_json({"id": provider.id, "enabled": args.enabled, "closed_alerts": [c.alert_id for c in closed]})
    else:
        note = "" if provider.configured else " (not configured: it has no key or base URL yet)"
        print(f"{provider.id}: {word}{note}")
        if closed:
            ids = ", ".join(f"#{c.alert_id}" for c in closed)
            print(f"closed {counted(len(closed), 'open alert')} ({ids}): nothing judges it now; not a recovery")
    return 0
