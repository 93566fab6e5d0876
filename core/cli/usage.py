"""`llmpulse record`, `llmpulse import`, `llmpulse budgets`, `llmpulse report`: usage in, cost out."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import operator
import os
import stat
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO
from zoneinfo import ZoneInfo

from llmpulse.core.cli.common import (
    CliError,
    context_from,
    eprint,
    open_reader,
    open_store,
    print_json,
    render_csv,
    render_table,
    usd,
)
from llmpulse.core.usage.pricing import price_table_version
from llmpulse.core.usage.queries import (
    BY_CHOICES,
    GroupRow,
    average_latencies,
    breakdown,
    daily_totals,
    fallback_pairs,
    hourly_totals,
    period_start,
    reported_costs,
    total,
)
from llmpulse.core.usage.records import (
    RecordError,
    UsageRecord,
    provider_typo,
    read_lines,
    record_from_mapping,
)
from llmpulse.core.vocabulary import counted, plural

if TYPE_CHECKING:
    from llmpulse.core.config import Context
    from llmpulse.core.store import Store
    from llmpulse.core.usage.budgets import BudgetStatus
    from llmpulse.core.usage.line_import import JudgedBatch, Worker
    from llmpulse.core.usage.patterns import Patterns
    from llmpulse.core.usage.pricing import Pricing
    from llmpulse.core.usage.rollup import IngestResult


def pricing_for(ctx: Context) -> Pricing:
    # The engines below are imported by the commands that use them, not when the CLI starts (every
    # command, `check` and `alerts` included, builds this module's parsers).
    from llmpulse.core.usage.recorder import pricing_for as for_context

    return for_context(ctx)


async def ingest(store: Store, records: Sequence[UsageRecord], pricing: Pricing) -> IngestResult:
    from llmpulse.core.usage.rollup import ingest as ingest_records

    return await ingest_records(store, records, pricing)


# Records per transaction on import: each batch is stored (with its roll-ups) while the next is read.
# Fewer, larger batches mean fewer roll-up rows to spread and upsert (200,000 calls in random time order
# over 20 days touched 33,000 roll-up rows: each batch pays for the groups it touches); larger ones hold
# the write lock longer (a 200,000-line transaction: 1-2 s on the shared 2-core machine).
IMPORT_BATCH = 200_000
READ_BUFFER = 1 << 20
# A file at least this big is judged in a worker process while this one stores (starting one costs
# ~0.3 s: not worth it for a few thousand lines, nor for standard input, which only this process reads).
WORKER_MIN_BYTES = 16 << 20
SINCE_CHOICES = ("1h", "24h", "7d", "30d", "month")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser(
        "record",
        help="record one LLM call (priced at once, rolled up)",
        description="Record one LLM call. Only --provider and --model are required; the cost "
        "comes from the bundled price table (or [prices] overrides).",
    )
    r.add_argument("--provider", required=True)
    r.add_argument("--model", required=True)
    r.add_argument("--input-tokens", type=int, default=0, metavar="N")
    r.add_argument("--output-tokens", type=int, default=0, metavar="N")
    r.add_argument("--cache-read-tokens", type=int, default=0, metavar="N")
    r.add_argument("--cache-write-tokens", type=int, default=0, metavar="N")
    r.add_argument("--latency-ms", type=float, default=None, metavar="X")
    r.add_argument("--status", default="ok", help="ok or error")
    r.add_argument("--error-kind", default=None)
    for name in ("department", "agent", "user", "task-type", "category", "endpoint", "request-id"):
        r.add_argument(f"--{name}", default=None)
    r.add_argument("--fallback-from", default=None, metavar="P2", help="the provider that failed before this one")
    r.add_argument("--json", action="store_true", help="print the stored record as JSON")
    r.set_defaults(handler=record_command)

    i = sub.add_parser(
        "import",
        help="import usage records from JSON Lines (FILE or - for stdin)",
        description="Import JSON Lines, one record a line, with the field names of `record` "
        "(input_tokens, task_type, ...) or a provider's raw `usage` object. Bad lines "
        "are reported with their number and skipped (a line longer than 1 MiB too); the good "
        "ones are kept; exit 1 if any line was bad. Importing the same file twice counts nothing "
        "twice; identical lines without request_id are separate calls; a request_id seen on an "
        "earlier line with different content is reported.",
    )
    i.add_argument("file", metavar="FILE", help="a .jsonl file, or - for standard input")
    i.set_defaults(handler=import_command)

    b = sub.add_parser(
        "budgets",
        help="budgets: spent, utilization, burn rate, projection, when the limit is hit",
        description="Each [[budgets]] entry over its current calendar period ([budget] timezone): spent, "
        "utilization, burn rate, the projected spend at the period's end and when the limit is reached at "
        "this pace. A budget that counts a provider's usage report llmpulse does not know yet ([usage_api."
        '<provider>] budgets = "usage_api", never pulled or its last pull failed) is partial: what is '
        "known is shown as ≥, the rest unknown, and a line says which provider and why.",
    )
    b.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    b.set_defaults(handler=budgets_command)

    c = sub.add_parser(
        "reconcile",
        help="the providers' own bills beside our estimate (admin keys)",
        description="Fetch this month's spend as the providers report it (OpenAI organization "
        "costs and Anthropic cost report with OPENAI_ADMIN_KEY / ANTHROPIC_ADMIN_KEY, "
        "OpenRouter key usage) and balances (DeepSeek, Moonshot), and show them beside "
        "llmpulse's estimate with the difference. With an admin key it also pulls OpenAI's and "
        "Anthropic's usage APIs and shows the calls llmpulse recorded beside the usage they report "
        "(budgets count the one [usage_api.<provider>] budgets names). The collector does this every 15 min.",
    )
    c.add_argument("--cached", action="store_true", help="show the last fetched figures without fetching")
    c.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    c.set_defaults(handler=reconcile_command)

    p = sub.add_parser(
        "report",
        help="usage and cost by provider, model, department, agent, user, task type or category",
        description="Requests, tokens, cost (with the number of records whose price is unknown), "
        "success rate and p95 latency, grouped, from the roll-ups; the table "
        "ends with totals, savings, a per-day trend and the busiest hours.",
    )
    p.add_argument(
        "--since",
        choices=SINCE_CHOICES,
        default="24h",
        help="the period (default 24h; month: this calendar month in [budget] timezone)",
    )
    p.add_argument(
        "--by",
        choices=[c for c in BY_CHOICES if c != "provider_model"],
        default="provider",
        help="what to group by (default provider)",
    )
    p.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="csv: one row per group, costs as plain decimals, blank when every price is unknown",
    )
    p.set_defaults(handler=report_command)


async def record_command(args: argparse.Namespace) -> int:
    ctx = context_from(args)
    fields = {
        k: getattr(args, k)
        for k in (
            "provider",
            "model",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "latency_ms",
            "status",
            "error_kind",
            "department",
            "agent",
            "user",
            "task_type",
            "category",
            "endpoint",
            "request_id",
            "fallback_from",
        )
    }
    try:
        rec = record_from_mapping(fields, time.time())
    except RecordError as exc:
        raise CliError(f"bad record: {exc}", 2) from None
    close = provider_typo(rec.provider, [p.id for p in ctx.providers])
    if close is not None:
        raise CliError(
            f"--provider: found {rec.provider!r}; did you mean {close!r}? (configure a new provider in the config first)",
            2,
        )
    store = await open_store(ctx)
    try:
        result = await ingest(store, [rec], pricing_for(ctx))
    finally:
        await store.close()
    if args.json:
        print_json({**rec.__dict__, "stored": bool(result.stored)})
    else:
        cost = "price unknown" if rec.cost_usd is None else f"${rec.cost_usd:.6f}"
        print(
            f"recorded {rec.provider}/{rec.model}: {rec.input_tokens} in, {rec.output_tokens} out, {cost}"
            + ("" if result.stored else " (already recorded: same request_id)")
        )
    return 0


async def judged_here(stream: BinaryIO, pricing: Pricing, now: float, known: list[str]) -> AsyncIterator[JudgedBatch]:
    """The import's batches judged in this process (standard input, a small file, no worker)."""
    from llmpulse.core.usage.line_import import LineJudge

    # Bytes, line by line: each line is decoded and judged on its own (a bad byte, a huge number or a line
    # without end is that line's error, with its number), no line held past MAX_LINE_BYTES.
    for batch in LineJudge(pricing, now, known).batches(read_lines(stream), IMPORT_BATCH):
        if batch is not None:
            yield batch
        await asyncio.sleep(0)  # between chunks: the last batch's store starts (on the database thread)


async def judged_by_worker(worker: Worker, now: float, store: Store) -> AsyncIterator[JudgedBatch]:
    """The import's batches as the worker process judged them (line_import.judge_in_worker), made ready
    here, off the event loop, while the batch before is stored: summed for their roll-ups, and their
    request ids in their stored form (by the shapes known so far)."""
    from llmpulse.core.usage.line_import import BatchSums, JudgedBatch, WorkerFailed
    from llmpulse.core.usage.records import CALL_COLUMNS
    from llmpulse.core.usage.request_ids import shape_tags
    from llmpulse.core.usage.rollup import MINUTE_KEEP_S

    summing = BatchSums(now - MINUTE_KEEP_S)
    shapes = shape_tags(store)
    request_id = operator.itemgetter(CALL_COLUMNS.index("request_id"))

    def receive() -> JudgedBatch | WorkerFailed | None:
        got = worker.receive()
        if isinstance(got, JudgedBatch):
            got.rollups = summing.of(got)
            got.request_ids = shapes.known_forms(map(request_id, got.rows))
        return got

    loop = asyncio.get_running_loop()
    while True:
        try:
            got = await loop.run_in_executor(None, receive)
        except (EOFError, OSError):  # it ended between two batches, or in the middle of one
            raise CliError(
                "import: the process judging the lines ended unexpectedly; what was imported before is stored", 1
            ) from None
        if got is None:
            return
        if isinstance(got, WorkerFailed):
            raise CliError(f"import: judging the lines failed ({got.error}); what was imported before is stored", 1)
        yield got


async def import_command(args: argparse.Namespace) -> int:
    ctx = context_from(args)
    stream: BinaryIO
    worker_path: str | None = None  # a file big enough to be judged in a worker process
    # Read a megabyte at a time: each refill lets the GIL go, and the database thread storing the previous
    # batch took it for a while every 8 KB (readline was a sixth of the import).
    if args.file == "-":
        stream = open(sys.stdin.fileno(), "rb", buffering=READ_BUFFER, closefd=False)  # noqa: ASYNC230, SIM115 -- closed in finally
    else:
        try:
            stream = open(args.file, "rb", buffering=READ_BUFFER)  # noqa: ASYNC230, SIM115 -- read line by line for the whole import, closed in finally
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror}; expected a JSON Lines file or -", 2) from None
        info = os.fstat(stream.fileno())
        if stat.S_ISREG(info.st_mode) and info.st_size >= WORKER_MIN_BYTES:
            worker_path = args.file
    try:
        store = await open_store(ctx)
    except BaseException:
        stream.close()
        raise
    # Calls in random time order land all over the time index (and roll-ups all over theirs): SQLite's
    # default 2 MB page cache made each insert a read from the file (measured 11 vs 2.2 µs a call).
    await store.execute("PRAGMA cache_size = -131072")
    from llmpulse.core.round_flag import RoundYield
    from llmpulse.core.usage.line_import import Worker, WorkerSettings
    from llmpulse.core.usage.rollup import ingest_rows

    # Judged as the Recorder judges live calls (an attribution validated once, its calls priced by the
    # rates remembered for it: line_import), a batch stored on the database thread while the next is
    # judged. One time for the whole import: a line without ts is stamped the import's start.
    now = time.time()
    pricing = pricing_for(ctx)
    known = [p.id for p in ctx.providers]
    # Before each transaction, hold back while the collector's round runs (core/round_flag.py).
    yielding = RoundYield(store.path)
    placeholders: dict[int, tuple[Any, ...]] = {}  # every attribution handed out: ingest resolves them
    totals = {"stored": 0, "duplicates": 0, "unknown": 0, "bad": 0}

    async def store_batch(batch: JudgedBatch) -> None:
        for number, message in batch.errors:
            eprint(f"line {number}: {message}")
        totals["bad"] += len(batch.errors)
        placeholders.update(batch.attributions)
        if batch.rows:
            await yielding.wait()
            result = await ingest_rows(store, batch.rows, now, batch.rollups, placeholders, batch.request_ids)
            totals["stored"] += result.stored
            totals["duplicates"] += result.duplicates
            totals["unknown"] += result.unknown_price

    # The database thread needs the GIL briefly between its statements (binding a chunk's values); with
    # this thread parsing non-stop it waited the default 5 ms switch interval each time: twice the time.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    # Millions of small acyclic objects (rows, sums, the ids seen) made the cycle collector walk them all
    # again and again: 30% of the import. Nothing here makes cycles; collection resumes after.
    collecting = gc.isenabled()
    gc.disable()
    storing: asyncio.Task[None] | None = None
    worker: Worker | None = None
    try:
        if worker_path is not None:
            # The other core judges (line_import.judge_in_worker) while this process stores.
            from llmpulse.core.redact import registered_secrets

            settings = WorkerSettings(
                worker_path, now, IMPORT_BATCH, pricing.prices, sorted(pricing.local), known, registered_secrets()
            )
            try:
                worker = Worker(settings)
            except (OSError, ValueError):  # no process can be started here: this one judges, as for stdin
                worker = None
        batches = judged_here(stream, pricing, now, known) if worker is None else judged_by_worker(worker, now, store)
        async for batch in batches:
            if storing is not None:
                await storing  # one batch stored at a time: the database sets the pace
            storing = asyncio.get_running_loop().create_task(store_batch(batch))
        if storing is not None:
            await storing
    finally:
        if worker is not None:
            worker.close()
        if storing is not None and not storing.done():
            storing.cancel()
            await asyncio.gather(storing, return_exceptions=True)
        sys.setswitchinterval(switch)
        if collecting:
            gc.enable()
        stream.close()
        yielding.close()
        await store.close()
    bad = totals["bad"]
    print(
        f"imported {counted(totals['stored'], 'record')} ({totals['duplicates']:,} already there, "
        f"{counted(bad, 'bad line')} skipped, {totals['unknown']:,} with unknown price)"
    )
    return 1 if bad else 0


def _when(ts: float | None, tz: ZoneInfo) -> str:
    if ts is None:
        return "not this period"
    return dt.datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M %Z")


async def budgets_command(args: argparse.Namespace) -> int:
    ctx = context_from(args)
    usage = ctx.config.usage
    if not usage.budgets and not args.json:
        # Nothing configured: the config's answer, whether or not a database exists yet.
        print("no budgets configured: add [[budgets]] tables (scope, period, limit_usd) to the config", flush=True)
        return 0
    store = await open_reader(ctx)
    try:
        from llmpulse.core.usage.budgets import budget_statuses

        statuses = await budget_statuses(store, usage, time.time())
    finally:
        await store.close()
    if args.json:
        print_json({"budgets": [s.to_json() for s in statuses], "price_table": price_table_version()})
        return 0
    # A partial budget (a usage report it counts is not known) shows what is known as a lower bound, "≥",
    # and no pace, projection or date it cannot know.
    rows = [
        (
            s.name,
            f"{'≥' if s.partial else ''}${s.spent_usd:,.2f}",
            f"${s.limit_usd:,.2f}",
            f"{'≥' if s.partial else ''}{s.utilization:.0%}",
            "unknown" if s.burn_rate_usd_per_day is None else f"${s.burn_rate_usd_per_day:,.2f}/day",
            "unknown" if s.projected_usd is None else f"${s.projected_usd:,.2f}",
            "EXCEEDED" if s.exceeded else "unknown" if s.partial else _when(s.exhaust_at, usage.tz),
            f"{s.unknown_price_count}" if s.unknown_price_count else "",
        )
        for s in statuses
    ]
    print(
        render_table(
            ("BUDGET", "SPENT", "LIMIT", "USED", "BURN", "PROJECTED", "LIMIT REACHED", "PRICE UNKNOWN"),
            rows,
            right=(1, 2, 3, 4, 5),
        )
    )
    print_spend_unknown(statuses)
    return 0


def print_spend_unknown(statuses: Sequence[BudgetStatus]) -> None:
    """Under a budgets table: whose spend the budgets marked ≥ leave out, and why."""
    unknown: dict[str, str] = {}
    for s in statuses:
        unknown.update(s.spend_unknown)
    for pid, reason in sorted(unknown.items()):
        marked = ", ".join(s.name for s in statuses if pid in s.spend_unknown)
        print(f"{pid}: spend unknown ({reason}); its usage report counts for {marked}: shown as ≥ what is known")


def since_seconds(since: str, now: float, tz: ZoneInfo) -> float:
    if since == "month":
        return period_start(now, "month", tz)
    return now - {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}[since]


async def report_command(args: argparse.Namespace) -> int:
    ctx = context_from(args)
    now = time.time()
    since = since_seconds(args.since, now, ctx.config.usage.tz)
    store = await open_reader(ctx)
    try:
        # per provider, the source its budgets count: its recorded calls, or its own usage report
        from_reports = ctx.config.usage.usage_api.usage_api_budgets
        groups = await breakdown(store, args.by, since, now, usage_api=from_reports)
        await average_latencies(store, args.by, since, now, groups)
        overall = await total(store, since, now, usage_api=from_reports)
        hours = await hourly_totals(store, since, now)
        days = await daily_totals(store, since, now, usage_api=from_reports)
        from llmpulse.core.usage.advice import reliability_advice
        from llmpulse.core.usage.patterns import usage_patterns
        from llmpulse.core.usage.savings import savings_report

        savings = await savings_report(store, pricing_for(ctx), since, now, args.since)
        patterns = await usage_patterns(store, args.by, since, now, ctx.config.usage.tz)
        alerts = ctx.config.alerts
        advice = await reliability_advice(
            store,
            since,
            now,
            await fallback_pairs(store, since, now),
            alerts.error_rate_warning,
            alerts.p95_latency * 1000.0,
        )
        reported = await reported_costs(store, since, now)
        from llmpulse.core.usage.usage_api import compare_sources

        sources = await compare_sources(store, ctx.config.usage.usage_api, since, now)
        from llmpulse.core.usage.report_gaps import report_gaps

        # providers whose usage report counts but is not known over the period: left out of every figure
        gaps = await report_gaps(store, ctx.config.usage.usage_api, since)
    finally:
        await store.close()
    headers = (
        args.by.upper(),
        "REQUESTS",
        "TOKENS",
        "COST USD",
        "PRICE UNKNOWN",
        "SUCCESS",
        "P50 MS",
        "P95 MS",
        "AVG MS",
        "USD/REQUEST",
        "TOKENS/REQUEST",
        "USD/1K TOKENS",
        "TOKENS/USD",
    )

    def cost(g: GroupRow) -> float | None:  # a group whose every request has an unknown price has no cost, not $0
        # (a group only a usage report without request counts knows has 0 requests and may have a cost)
        return None if g.unknown_price_count >= g.requests and (g.unknown_price_count or not g.cost_usd) else g.cost_usd

    def cells(g: GroupRow) -> tuple[Any, ...]:
        return (
            g.key,
            g.requests,
            g.tokens,
            "" if cost(g) is None else f"{cost(g):.6f}",
            g.unknown_price_count,
            None if g.success_rate is None else round(g.success_rate, 4),
            None if g.p50_ms is None else round(g.p50_ms),
            None if g.p95_ms is None else round(g.p95_ms),
            None if g.avg_latency_ms is None else round(g.avg_latency_ms),
            None if g.cost_per_request is None else f"{g.cost_per_request:.6f}",
            None if g.tokens_per_request is None else round(g.tokens_per_request, 1),
            None if g.usd_per_1k_tokens is None else f"{g.usd_per_1k_tokens:.6f}",
            None if g.tokens_per_usd is None else round(g.tokens_per_usd),
        )

    busiest = sorted(hours, key=lambda h: -h[1])[:5]
    if args.format == "json":
        print_json(
            {
                "since": since,
                "until": now,
                "by": args.by,
                "price_table": price_table_version(),
                "total": overall.to_json(),
                "groups": [g.to_json() for g in groups],
                "busiest_hours": [{"hour": h[0], "requests": h[1], "cost_usd": h[2]} for h in busiest],
                "daily": [{"day": d, "requests": n, "cost_usd": c} for d, n, c in days],
                "savings": savings.to_json(),
                "patterns": patterns.to_json(),
                "advice": advice.to_json(),
                "provider_reported": [r.to_json() for r in reported],
                # what the providers' usage APIs report for buckets starting in the period, beside the
                # calls recorded. The groups and the total count, per provider, the one its budgets use.
                "usage_api": [u.to_json() for u in sources],
                # their spend is not in the figures above (total and groups are lower bounds): why
                "spend_unknown": [g.to_json() for g in gaps],
                "partial": bool(gaps),
            }
        )
    elif args.format == "csv":
        sys.stdout.write(render_csv(headers, [cells(g) for g in groups]))
        for gap in gaps:  # a spreadsheet must not sum these rows as the whole: said on stderr
            print(f"llmpulse: warning: {gap.line()}: its spend is not in these rows", file=sys.stderr)
    else:
        rows = [
            (
                g.key,
                f"{g.requests:,}",
                f"{g.tokens:,}",
                "price unknown" if cost(g) is None else usd(g.cost_usd),
                g.unknown_price_count or "",
                "-" if g.success_rate is None else f"{g.success_rate:.1%}",
                "-" if g.p95_ms is None else f"{g.p95_ms:,.0f}",
            )
            for g in groups
        ]
        print(render_table(headers[:6] + ("P95 MS",), rows, right=(1, 2, 3, 4, 5, 6)))
        print()
        print(render_efficiency(args.by, groups))
        unknown = f", {overall.unknown_price_count} with price unknown" if overall.unknown_price_count else ""
        at_least = "at least " if gaps else ""
        print(
            f"\n{at_least}{counted(overall.requests, 'request')}, {at_least}{usd(overall.cost_usd)} since {args.since}"
            f"{unknown} (prices: {price_table_version()})"
        )
        for gap in gaps:
            print(f"{gap.provider_id}: spend unknown, not in these figures ({gap.reason})")
        for r in reported:  # the provider's own bill for its calls, beside our estimate of them
            ours = "price unknown for some" if r.estimated_usd is None else usd(r.estimated_usd)
            print(
                f"{r.provider} reported {usd(r.reported_usd)} for {r.calls:,} of its {plural(r.calls, 'call')} (our estimate for them: "
                f"{ours})"
            )
        if savings.cost_per_day is not None:
            print(
                f"{usd(savings.cost_per_day)} a day; {counted(savings.remote_requests, 'request')} to remote providers, "
                f"{savings.local_requests:,} to local ones"
            )
        if savings.reference and savings.reference_usd is not None:
            pct = "" if savings.saved_pct is None else f", {savings.saved_pct:.0%}"
            print(
                f"on {savings.reference} the same tokens would have cost ${savings.reference_usd:,.2f} "
                f"(saved ${savings.saved_usd:,.2f}{pct}); local providers served {counted(savings.local_requests, 'request')} "
                f"worth ${savings.local_reference_usd or 0:,.2f} there"
            )
            if savings.left_out_requests:
                print(
                    f"left out of that comparison: {counted(savings.left_out_requests, 'request')} of unknown price "
                    f"({', '.join(savings.left_out_models[:3])}{' ...' if len(savings.left_out_models) > 3 else ''})"
                )
        if len(days) > 1:
            top = max(c for _, _, c in days) or 1.0
            print("\nper day (UTC):")
            for day, requests, cost_usd in days:
                print(
                    f"  {time.strftime('%a %m-%d', time.gmtime(day))}  {requests:>10,} req  {usd(cost_usd):>11}  "
                    f"{'█' * round(20 * cost_usd / top)}"
                )
        if busiest and busiest[0][1]:
            print(
                "busiest hours (UTC): "
                + ", ".join(f"{time.strftime('%m-%d %H:00', time.gmtime(h))} {n:,} req" for h, n, _ in busiest if n)
            )
        if sources:
            print(
                f"\nthe providers' usage APIs since {args.since} (the table and budgets count the source marked *, "
                "the other is for reconcile):"
            )
            for u in sources:
                api_requests = "-" if u.reported_requests is None else f"{u.reported_requests:,}"
                from_api = (
                    "not known (no pull has worked yet)"
                    if u.reported_usd is None or u.reported_tokens is None
                    else f"{api_requests} {plural(u.reported_requests or 0, 'request')}, "
                    f"{counted(u.reported_tokens, 'token')}, {usd(u.reported_usd)}"
                )
                print(
                    f"  {u.provider_id}: {from_api}"
                    f"{' *' if u.budgets_use == 'usage_api' else ''}; recorded {counted(u.recorded_requests, 'request')}, "
                    f"{usd(u.recorded_usd)}{' *' if u.budgets_use == 'recorded' else ''}"
                    + (f" (last pull: {u.error})" if u.error else "")
                )
        print_patterns(args.by, patterns)
        for line in savings.suggestions + advice.lines:
            print(f"suggestion: {line}")
    return 0


def render_efficiency(by: str, groups: list[GroupRow]) -> str:
    """Per group: what a request costs and takes; cost figures count priced calls only."""

    def money(v: float | None, places: int = 4) -> str:
        return "-" if v is None else f"${v:,.{places}f}"

    def num(v: float | None, unit: str = "") -> str:
        return "-" if v is None else f"{v:,.0f}{unit}"

    rows = [
        (
            g.key,
            money(g.cost_per_request),
            num(g.tokens_per_request),
            money(g.usd_per_1k_tokens),
            num(g.tokens_per_usd),
            num(g.avg_latency_ms),
            num(g.p50_ms),
            num(g.p95_ms),
        )
        for g in groups
    ]
    return render_table(
        (by.upper(), "$/REQUEST", "TOKENS/REQ", "$/1K TOKENS", "TOKENS/$", "AVG MS", "P50 MS", "P95 MS"),
        rows,
        right=range(1, 8),
    )


def print_patterns(by: str, patterns: Patterns) -> None:
    """Hour-of-day and weekday profile, most used and fastest-growing models, per-group daily trend."""
    hours = patterns.by_hour
    peak = max((h.requests for h in hours), default=0)
    if not peak:
        return
    blocks = " ▁▂▃▄▅▆▇█"
    print(
        f"\nby hour of day ({patterns.timezone}): 00 {''.join(blocks[round(8 * h.requests / peak)] for h in hours)} 23"
    )
    busiest = sorted(hours, key=lambda h: -h.requests)[:3]
    print("  busiest: " + ", ".join(f"{h.slot:02d}:00 {h.requests:,} req {usd(h.cost_usd)}" for h in busiest))
    from llmpulse.core.usage.patterns import WEEKDAYS

    print("by weekday: " + "  ".join(f"{WEEKDAYS[d.slot]} {d.requests:,}" for d in patterns.by_weekday))
    if patterns.most_used:
        print("most used models: " + ", ".join(f"{m.model} {m.requests:,}" for m in patterns.most_used))
    if patterns.fastest_growing:
        print(
            "fastest growing: "
            + ", ".join(
                f"{m.model} {'new' if m.growth is None else f'+{m.growth:.0%}'} ({m.first_half:,} -> {m.second_half:,})"
                for m in patterns.fastest_growing
            )
        )
    trends = patterns.trends[:8]
    if trends and len(trends[0].days) > 1:
        shown = trends[0].days[-7:]
        first = len(trends[0].days) - len(shown)
        heads = (by.upper(), *(time.strftime("%m-%d", time.gmtime(d)) for d in shown))
        rows = [(t.key, *(usd(c) for c in t.cost_usd[first:])) for t in trends]
        print(f"\ncost per day by {by} (UTC, last {counted(len(shown), 'day')}):")
        print(render_table(heads, rows, right=range(1, len(heads))))


async def reconcile_command(args: argparse.Namespace) -> int:
    from llmpulse.core.enablement import apply_enablement
    from llmpulse.core.usage.queries import period_start
    from llmpulse.core.usage.reconcile import UTC, billable, poll_billing, reconcile
    from llmpulse.core.usage.usage_api import compare_sources, pull_usage, pullable

    ctx = context_from(args)
    now = time.time()
    usage_api = ctx.config.usage.usage_api
    store = await open_store(ctx)
    try:
        providers = await apply_enablement(store, ctx.providers)
        if not args.cached:
            if not billable(providers) and not pullable(providers):
                raise CliError(
                    "no provider reports its bill or usage with the keys set: OpenAI and Anthropic need "
                    "OPENAI_ADMIN_KEY / ANTHROPIC_ADMIN_KEY; OpenRouter, DeepSeek and Moonshot their "
                    "API key",
                    1,
                )
            await poll_billing(store, providers, now)
            if pullable(providers):
                await pull_usage(store, providers, usage_api, pricing_for(ctx), now)
        rows = await reconcile(store, now)
        month = period_start(now, "month", UTC)
        sources = await compare_sources(store, usage_api, month, now)
    finally:
        await store.close()
    if args.json:
        print_json(
            {
                "month_start": month,
                "providers": [r.to_json() for r in rows],
                "usage_api": [s.to_json() for s in sources],
            }
        )
        return 0
    if not rows and not sources:
        print("nothing fetched yet: run without --cached")
        return 0
    if rows:
        print(
            render_table(
                ("PROVIDER", "PROVIDER SAYS", "WE ESTIMATE", "DIFFERENCE", "BALANCE", "ERROR"),
                [
                    (
                        r.provider_id,
                        usd(r.reported_usd),
                        usd(r.estimated_usd),
                        "-"
                        if r.difference_usd is None
                        else f"{r.difference_usd:+,.2f}"
                        + (f" ({r.difference_pct:+.0%})" if r.difference_pct is not None else ""),
                        "-" if r.balance is None else f"{r.balance:,.2f}",
                        r.error or "",
                    )
                    for r in rows
                ],
                right=(1, 2, 3, 4),
            )
        )
    if sources:
        print("\nrecorded calls vs the provider's usage API, this month (UTC); budgets count the one marked *:")
        print(
            render_table(
                (
                    "PROVIDER",
                    "RECORDED REQ",
                    "RECORDED TOKENS",
                    "RECORDED",
                    "USAGE API REQ",
                    "USAGE API TOKENS",
                    "USAGE API",
                    "DIFFERENCE",
                    "ERROR",
                ),
                [
                    (
                        s.provider_id,
                        f"{s.recorded_requests:,}",
                        f"{s.recorded_tokens:,}",
                        usd(s.recorded_usd) + (" *" if s.budgets_use == "recorded" else ""),
                        "-" if s.reported_requests is None else f"{s.reported_requests:,}",
                        "-" if s.reported_tokens is None else f"{s.reported_tokens:,}",
                        ("unknown" if s.reported_usd is None else usd(s.reported_usd))
                        + (" *" if s.budgets_use == "usage_api" else ""),
                        "-" if s.difference_usd is None else f"{s.difference_usd:+,.2f}",
                        s.error or "",
                    )
                    for s in sources
                ],
                right=(1, 2, 3, 4, 5, 6, 7),
            )
        )
    return 1 if any(r.error for r in rows) or any(s.error for s in sources) else 0
