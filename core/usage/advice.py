"""Suggestions for reliability, with numbers, from the raw records of a period (while retention keeps
them): which providers fail, with which error kind, since when and what failover it caused; and, per
task type, the cheapest model whose error rate and p95 latency are within bounds.

The roll-ups have neither error kinds nor task type × model combinations, so this reads the raw calls
once, streamed, grouping as it goes; p95 here is exact (nearest rank over the group's calls).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from llmpulse.core.store import Store
from llmpulse.core.usage.pricing import NANO_USD
from llmpulse.core.vocabulary import counted

MIN_REQUESTS = 20  # fewer calls say nothing about a rate or a p95
ERROR_RATE_WORTH_A_LINE = 0.05
MIN_SAVING = 0.2  # name a cheaper model for a task type only when it saves at least this share per request
MAX_LINES = 5


@dataclass
class ErrorPattern:
    provider: str
    requests: int
    errors: int
    error_rate: float
    kinds: dict[str, int]  # error kind -> count, most frequent first
    first_error_at: float
    failed_over_to: dict[str, int]  # provider -> requests that fell back there from this one


@dataclass
class ModelChoice:
    task_type: str
    current: str  # provider/model serving most of the task type
    current_cost_per_request: float | None
    suggested: str
    suggested_cost_per_request: float
    suggested_error_rate: float
    suggested_p95_ms: float | None
    saving: float | None  # share per request, against the current model


@dataclass
class Advice:
    errors: list[ErrorPattern] = field(default_factory=list)
    model_choices: list[ModelChoice] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Group:
    requests: int = 0
    errors: int = 0
    cost: float = 0.0
    priced: int = 0
    latencies: list[float] = field(default_factory=list)


def _p95(latencies: list[float]) -> float | None:
    if not latencies:
        return None
    ordered = sorted(latencies)
    return ordered[max(1, math.ceil(0.95 * len(ordered))) - 1]


def _scan(
    conn: sqlite3.Connection, since: float, until: float
) -> tuple[dict[str, list[int]], dict[str, dict[str, int]], dict[str, float], dict[tuple[str, str], _Group]]:
    per_provider: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    kinds: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    first_error: dict[str, float] = {}
    per_task: dict[tuple[str, str], _Group] = defaultdict(_Group)
    cur = conn.execute(
        "SELECT c.ts, a.provider, a.model, a.status, a.error_kind, a.task_type, c.latency_ms, "
        f"c.cost_nusd / {NANO_USD} "
        "FROM usage_calls c JOIN usage_attrs a ON a.id = c.attrs WHERE c.ts >= ? AND c.ts < ?",
        (since, until),
    )
    while batch := cur.fetchmany(5000):
        for ts, provider, model, status, kind, task, latency, cost in batch:
            counts = per_provider[provider]
            counts[0] += 1
            failed = status == "error"
            if failed:
                counts[1] += 1
                kinds[provider][kind or "unknown"] += 1
                if ts < first_error.get(provider, math.inf):
                    first_error[provider] = ts
            if task:
                g = per_task[(task, f"{provider}/{model}")]
                g.requests += 1
                g.errors += failed
                if cost is not None:
                    g.cost += cost
                    g.priced += 1
                if latency is not None and not failed:
                    g.latencies.append(latency)
    cur.close()
    return per_provider, kinds, first_error, per_task


async def reliability_advice(
    store: Store,
    since: float,
    until: float,
    fallbacks: list[tuple[str, str, int]],
    error_rate_bound: float,
    p95_bound_ms: float,
) -> Advice:
    """Error patterns and model choices for [since, until); `fallbacks` is (from, to, requests)."""
    per_provider, kinds, first_error, per_task = await store.run_sync(_scan, since, until)
    advice = Advice()
    for provider, (requests, errors) in per_provider.items():
        rate = errors / requests if requests else 0.0
        if requests < MIN_REQUESTS or rate < ERROR_RATE_WORTH_A_LINE:
            continue
        ordered = dict(sorted(kinds[provider].items(), key=lambda kv: (-kv[1], kv[0])))
        over = {to: n for frm, to, n in fallbacks if frm == provider}
        advice.errors.append(ErrorPattern(provider, requests, errors, rate, ordered, first_error[provider], over))
    advice.errors.sort(key=lambda e: (-e.error_rate, e.provider))

    by_task: dict[str, dict[str, _Group]] = defaultdict(dict)
    for (task, model), g in per_task.items():
        by_task[task][model] = g
    for task, models in sorted(by_task.items()):
        current, cur_group = max(models.items(), key=lambda kv: (kv[1].requests, kv[0]))
        cur_cpr = cur_group.cost / cur_group.priced if cur_group.priced else None
        fit = []
        for model, g in models.items():
            if g.requests < MIN_REQUESTS or not g.priced:
                continue
            p95 = _p95(g.latencies)
            rate = g.errors / g.requests
            if rate <= error_rate_bound and (p95 is None or p95 <= p95_bound_ms):
                fit.append((g.cost / g.priced, model, rate, p95))
        if not fit:
            continue
        cpr, model, rate, p95 = min(fit)
        if model == current:
            continue
        saving = None if not cur_cpr else 1 - cpr / cur_cpr
        if saving is not None and saving < MIN_SAVING:
            continue
        advice.model_choices.append(ModelChoice(task, current, cur_cpr, model, cpr, rate, p95, saving))

    for e in advice.errors[:MAX_LINES]:
        top_kind, top_n = next(iter(e.kinds.items()))
        over_text = ", ".join(f"{n:,} to {to}" for to, n in sorted(e.failed_over_to.items(), key=lambda kv: -kv[1]))
        advice.lines.append(
            f"{e.provider}: {e.error_rate:.1%} of {counted(e.requests, 'request')} failed, mostly {top_kind} "
            f"({top_n / e.errors:.0%}), first at {_when(e.first_error_at)} UTC"
            + (f"; failed over: {over_text}" if over_text else "; no failover configured took them")
        )
    for c in advice.model_choices[:MAX_LINES]:
        p95_text = "-" if c.suggested_p95_ms is None else f"{c.suggested_p95_ms:,.0f} ms"
        than = (
            f", {c.saving:.0%} less per request than {c.current}"
            if c.saving is not None
            else f" (the price of {c.current} is unknown)"
        )
        advice.lines.append(
            f"task {c.task_type}: {c.suggested} is the cheapest model within bounds "
            f"({c.suggested_error_rate:.1%} errors, p95 {p95_text}, ${c.suggested_cost_per_request:.4f}/request){than}"
        )
    return advice


def _when(ts: float) -> str:
    return time.strftime("%m-%d %H:%M", time.gmtime(ts))
