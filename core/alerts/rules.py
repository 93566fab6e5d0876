"""Alert rules: pure functions from what the collector measured to the conditions that hold right now.

No I/O and no clock here: `evaluate_rules(inputs, cfg)` gets everything it judges in `RuleInputs`, so
every threshold is tested with plain values. The lifecycle (dedupe, ack, resolve, notify) is the
engine's job; a condition that stops being returned is what resolves its alert.

Inputs are read by field name (the other parts' dataclasses: ProviderHealth, RequestStats,
BudgetStatus, MigrationStatus), so this module imports none of them.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmpulse.core.alerts.config import DEFAULTS, RULES, AlertsConfig, alerts_config
from llmpulse.core.alerts.custom import custom_conditions, judged
from llmpulse.core.durations import format_duration
from llmpulse.core.redact import redact
from llmpulse.core.vocabulary import Severity, counted, plural

# A provider whose latency barely moves (sd of a few ms) would otherwise flag a 10% change as an anomaly.
MIN_BASELINE_SD_FRACTION = 0.10
MIN_BASELINE_SD_MS = 20.0
# "Current" latency for the anomaly rule: the median of the latest probes, robust to one slow probe.
RECENT_LATENCY_PROBES = 5
# Health error rates from probes alone need fewer samples than real traffic: one probe per round.
MIN_PROBE_SAMPLES = 5


@dataclass(frozen=True)
class Condition:
    """A rule that holds for a subject now. The fingerprint (rule + subject) is what dedupes alerts."""

    rule: str
    subject: str
    severity: Severity
    message: str  # one line with the numbers that triggered it
    stage: int = 0  # rises as a condition gets worse within its severity (budget thresholds)

    @property
    def fingerprint(self) -> str:
        return f"{self.rule}:{self.subject}"


@dataclass(frozen=True)
class LatencyBaseline:
    """A provider's usual latency over the trailing baseline window (before the current health window)."""

    provider_id: str
    samples: int
    mean_ms: float
    sd_ms: float


# Rules about one provider (the subject is its id). Only a process that can see the provider — has its
# key or base URL — judges them: it alone opens, updates and auto-resolves their alerts. A dashboard
# without the daemon's keys would otherwise "resolve" every outage it cannot see (issue 18).
# provider_no_key is not among them: it is a fact about the collecting process's own environment.
# The rules the health verdicts judge (covered whenever a round has them)...
HEALTH_RULES = frozenset(
    {
        "provider_down",
        "provider_degraded",
        "provider_auth",
        "provider_quota",
        "error_rate",
        "latency_p95",
        "latency_anomaly",
        "rate_limit_headroom",
    }
)
# ...and with the traffic's fallback rate, every rule about one provider.
PROVIDER_RULES = HEALTH_RULES | {"fallback_rate"}


@dataclass
class RuleInputs:
    """Everything the rules judge. None means "not measured this round": those rules are skipped and
    their open alerts are left alone (not resolved), since missing data is not good news."""

    now: float
    health: list[Any] | None = None  # ProviderHealth
    request_stats: Mapping[str, Any] | None = None  # provider_id -> RequestStats
    budgets: list[Any] | None = None  # BudgetStatus
    migrations: list[Any] | None = None  # MigrationStatus
    unknown_prices: list[tuple[str, str, int]] | None = None  # (provider, model, requests)
    providers: list[Any] | None = None  # llmpulse.core.catalog.Provider (for "configured, no key")
    latency_baselines: Mapping[str, LatencyBaseline] = field(default_factory=dict)
    window_s: float = 900.0  # the health/traffic window, for messages
    custom_figures: Mapping[str, float | None] | None = None  # [[alerts.rules]] name -> figure
    incidents: list[Any] | None = None  # llmpulse.core.statuspage.ProviderIncident: what the providers declare
    visible: frozenset[str] | None = None  # providers this process can see; None: every provider


def covered_rules(inputs: RuleInputs, cfg: AlertsConfig) -> set[str]:
    """Rules that were really judged this round: only their alerts may be auto-resolved. An entry is a
    rule name (judged for every subject) or a fingerprint "rule:subject" (judged for that subject)."""
    rules: set[str] = set()
    if inputs.health is not None:
        rules |= HEALTH_RULES
    if inputs.request_stats is not None:
        rules |= {"error_rate", "fallback_rate"}
    if inputs.budgets is not None:
        budget_rules = {"budget_warning", "budget_exceeded", "budget_projected"}
        if not any(_g(b, "spend_unknown") for b in inputs.budgets):
            rules |= budget_rules
        else:
            # A partial budget (a usage report it counts is not known) is a lower bound: it may fire, but
            # under a level it says nothing about being under it, so its open alerts are left alone.
            rules |= {
                f"{r}:{_g(b, 'name')}" for r in budget_rules for b in inputs.budgets if not _g(b, "spend_unknown")
            }
    if inputs.migrations is not None:
        rules.add("migration_deadline")
    if inputs.unknown_prices is not None:
        rules.add("prices_unknown")
    if inputs.providers is not None:
        rules.add("provider_no_key")
    if inputs.incidents is not None:
        rules.add("provider_incident")
    rules |= judged(cfg.custom_rules, inputs.custom_figures)
    if inputs.visible is not None:
        # Provider rules cover only the providers this process sees: "rule:provider" fingerprints.
        scoped = rules & PROVIDER_RULES
        rules = (rules - scoped) | {f"{rule}:{pid}" for rule in scoped for pid in inputs.visible}
    # A disabled rule is "covered": its open alerts resolve once it is switched off; so is a custom
    # rule removed from the config.
    return rules | set(cfg.disabled_rules)


def evaluate_rules(inputs: RuleInputs, cfg: Any = None) -> list[Condition]:
    """All conditions that hold now, at most one per fingerprint."""
    cfg = alerts_config(cfg) if cfg is not None else DEFAULTS
    found: dict[str, Condition] = {}
    for cond in [
        *_provider_rules(inputs, cfg),
        *_traffic_rules(inputs, cfg),
        *_budget_rules(inputs, cfg),
        *_migration_rules(inputs, cfg),
        *_price_rules(inputs, cfg),
        *_key_rules(inputs, cfg),
        *_custom_rules(inputs, cfg),
        *_incident_rules(inputs, cfg),
    ]:
        if not cfg.enabled(cond.rule):
            continue
        if inputs.visible is not None and cond.rule in PROVIDER_RULES and cond.subject not in inputs.visible:
            continue  # a provider this process cannot see: its alerts are left as they are
        assert cond.rule in RULES or any(r.name == cond.rule for r in cfg.custom_rules), cond.rule
        cond = Condition(cond.rule, cond.subject, cond.severity, redact(cond.message) or "", cond.stage)
        found.setdefault(cond.fingerprint, cond)
    return list(found.values())


# ------------------------------------------------------------------------------------------ helpers


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _ms(ms: float) -> str:
    return f"{ms / 1000:.2f}s" if ms >= 1000 else f"{ms:.0f}ms"


def _usd(x: float) -> str:
    return f"${x:,.2f}"


def _g(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _name(h: Any) -> str:
    name: str = _g(h, "name") or _g(h, "provider_id")
    return name


def _short(text: str | None, limit: int = 120) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------------- provider rules


def _provider_rules(inputs: RuleInputs, cfg: AlertsConfig) -> Iterable[Condition]:
    if inputs.health is None:
        return
    for h in inputs.health:
        pid = _g(h, "provider_id")
        if not _g(h, "enabled", True) or not _g(h, "configured", True):
            continue
        # The probe's own status: traffic's error rate and latency have rules of their own (error_rate,
        # latency_p95), so a verdict made worse by them does not raise provider_degraded a second time.
        status, kind = _g(h, "probe_status") or _g(h, "status"), _g(h, "error_kind")
        error = _short(_g(h, "error"))
        suffix = f": {error}" if error else ""
        failures = int(_g(h, "consecutive_failures", 0) or 0)
        if status == "failed" and kind == "auth":
            yield Condition("provider_auth", pid, "critical", f"{_name(h)} rejects its API key (auth failure){suffix}")
        elif status == "failed" and kind == "quota":
            yield Condition("provider_quota", pid, "critical", f"{_name(h)} quota or balance exhausted{suffix}")
        elif status == "failed" and kind not in ("not_configured", "disabled"):
            if failures >= cfg.down_after_failures:
                yield Condition(
                    "provider_down",
                    pid,
                    "critical",
                    f"{_name(h)} down: {counted(failures, 'failed probe')} in a row ({kind or 'failed'}){suffix}",
                )
        elif status == "degraded":
            latency = _g(h, "p95_ms")
            extra = f", p95 {_ms(latency)}" if latency is not None else ""
            yield Condition(
                "provider_degraded", pid, "warning", f"{_name(h)} degraded ({kind or 'degraded'}{extra}){suffix}"
            )

        yield from _error_rate_from_health(h, inputs, cfg)
        yield from _latency_rules(h, inputs, cfg)

        rate_limit = _g(h, "rate_limit")
        headroom = _g(rate_limit, "headroom") if rate_limit is not None else None
        if headroom is not None and headroom < cfg.rate_limit_headroom:
            yield Condition(
                "rate_limit_headroom",
                pid,
                "warning",
                f"{_name(h)} rate-limit headroom {_pct(headroom)} "
                f"(below {_pct(cfg.rate_limit_headroom)}){_rate_limit_detail(rate_limit)}",
            )


def _rate_limit_detail(rl: Any) -> str:
    parts = []
    for what in ("requests", "tokens"):
        left, limit = _g(rl, f"{what}_remaining"), _g(rl, f"{what}_limit")
        if left is not None and limit:
            parts.append(f"{left}/{limit} {what} left")
    reset = _g(rl, "reset_s")
    if reset is not None:
        parts.append(f"resets in {format_duration(reset)}")
    return ": " + ", ".join(parts) if parts else ""


def _error_rate_condition(
    pid: str, label: str, rate: float, detail: str, cfg: AlertsConfig, window_s: float
) -> Condition | None:
    severity: Severity
    if rate >= cfg.error_rate_critical:
        severity, stage, bound = "critical", 1, cfg.error_rate_critical
    elif rate >= cfg.error_rate_warning:
        severity, stage, bound = "warning", 0, cfg.error_rate_warning
    else:
        return None
    return Condition(
        "error_rate",
        pid,
        severity,
        f"{label} error rate {_pct(rate)} over {format_duration(window_s)} ({detail}; {severity} at {_pct(bound)})",
        stage,
    )


def _error_rate_from_health(h: Any, inputs: RuleInputs, cfg: AlertsConfig) -> Iterable[Condition]:
    pid = _g(h, "provider_id")
    if _enough_traffic(inputs, pid, cfg):
        return  # real traffic for this provider is judged in _traffic_rules
    rate, samples = _g(h, "error_rate"), int(_g(h, "samples", 0) or 0)
    if rate is None or samples < min(cfg.min_requests, MIN_PROBE_SAMPLES):
        return
    cond = _error_rate_condition(
        pid, _name(h), rate, f"{round(rate * samples)}/{samples} checks failed", cfg, inputs.window_s
    )
    if cond:
        yield cond


def _enough_traffic(inputs: RuleInputs, pid: str, cfg: AlertsConfig) -> bool:
    stats = (inputs.request_stats or {}).get(pid)
    return stats is not None and int(_g(stats, "requests", 0) or 0) >= cfg.min_requests


def recent_latency_ms(h: Any) -> float | None:
    """The provider's latency now: median of its latest probes (or its p50 when there is no series)."""
    series = [x for x in (_g(h, "latency_series") or []) if x is not None]
    if series:
        return float(statistics.median(series[-RECENT_LATENCY_PROBES:]))
    p50 = _g(h, "p50_ms")
    return float(p50) if p50 is not None else None


def _latency_rules(h: Any, inputs: RuleInputs, cfg: AlertsConfig) -> Iterable[Condition]:
    pid = _g(h, "provider_id")
    p95 = _g(h, "p95_ms")
    limit_ms = cfg.p95_latency * 1000
    if p95 is not None and p95 > limit_ms and int(_g(h, "samples", 0) or 0) >= 3:
        yield Condition(
            "latency_p95",
            pid,
            "warning",
            f"{_name(h)} p95 latency {_ms(p95)} over {format_duration(inputs.window_s)} (threshold {_ms(limit_ms)})",
        )
    baseline = inputs.latency_baselines.get(pid)
    current = recent_latency_ms(h)
    if baseline is None or current is None or baseline.samples < cfg.latency_min_samples:
        return
    sd = max(baseline.sd_ms, baseline.mean_ms * MIN_BASELINE_SD_FRACTION, MIN_BASELINE_SD_MS)
    z = (current - baseline.mean_ms) / sd
    ratio = current / baseline.mean_ms if baseline.mean_ms > 0 else float("inf")
    if z >= cfg.latency_z and ratio >= cfg.latency_ratio:
        yield Condition(
            "latency_anomaly",
            pid,
            "warning",
            f"{_name(h)} latency {_ms(current)} is {ratio:.1f}x its usual {_ms(baseline.mean_ms)} "
            f"(z={z:.1f} over {baseline.samples} samples)",
        )


# ------------------------------------------------------------------------------------ traffic rules


def _traffic_rules(inputs: RuleInputs, cfg: AlertsConfig) -> Iterable[Condition]:
    if inputs.request_stats is None:
        return
    names = {_g(h, "provider_id"): _name(h) for h in (inputs.health or [])}
    for pid, stats in sorted(inputs.request_stats.items()):
        requests = int(_g(stats, "requests", 0) or 0)
        fallbacks = int(_g(stats, "fallbacks", 0) or 0)
        label = names.get(pid, pid)
        # fallback_rate = 0 means "any fallback at all", however little traffic there was.
        if requests < cfg.min_requests and not (cfg.fallback_rate == 0 and fallbacks):
            continue
        if requests >= cfg.min_requests:
            errors = int(_g(stats, "errors", 0) or 0)
            rate = _g(stats, "error_rate")
            rate = errors / requests if rate is None else rate
            cond = _error_rate_condition(pid, label, rate, f"{errors}/{requests} requests failed", cfg, inputs.window_s)
            if cond:
                yield cond
        share = fallbacks / requests if requests else 1.0
        if fallbacks and share >= cfg.fallback_rate:
            yield Condition(
                "fallback_rate",
                pid,
                "warning",
                f"{_pct(share)} of {label} requests were fallbacks over "
                f"{format_duration(inputs.window_s)} ({fallbacks}/{requests}; "
                f"threshold {_pct(cfg.fallback_rate)})",
            )


# ------------------------------------------------------------------------------------- budget rules


def _date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%b %d")


def _budget_rules(inputs: RuleInputs, cfg: AlertsConfig) -> Iterable[Condition]:
    if inputs.budgets is None:
        return
    for b in inputs.budgets:
        name = _g(b, "name")
        limit = float(_g(b, "limit_usd", 0) or 0)
        spent = float(_g(b, "spent_usd", 0) or 0)
        util = _g(b, "utilization")
        util = (spent / limit if limit else 0.0) if util is None else float(util)
        spend = f"{_usd(spent)} of {_usd(limit)} ({util * 100:.0f}%)"
        if util >= 1.0:
            yield Condition("budget_exceeded", name, "critical", f"budget {name} exceeded: {spend}")
        warn_levels = sorted(w for w in (_g(b, "warn_at") or []) if w < 1.0)
        crossed = [w for w in warn_levels if util >= w]
        if crossed:
            level = crossed[-1]
            yield Condition(
                "budget_warning",
                name,
                "warning",
                f"budget {name} passed {level * 100:.0f}%: {spend}",
                stage=warn_levels.index(level),
            )
        projected = _g(b, "projected_usd")
        period = _g(b, "period")
        exhaust_at = _g(b, "exhaust_at")
        if util < 1.0 and projected is not None and limit and projected > limit:
            when = f", runs out ~{_date(exhaust_at)}" if exhaust_at else ""
            # Not the date of period_end: that is the exclusive end in the budget's own timezone, so "by Jan
            # 01" meant the end of Dec 31 (and in UTC could name the wrong day). The period says it plainly.
            end = f" by the end of this {period}" if period else " this period"
            yield Condition(
                "budget_projected",
                name,
                "warning",
                f"budget {name} projected to reach {_usd(projected)} of {_usd(limit)}{end}"
                f"{when} (now {util * 100:.0f}%)",
            )


# ---------------------------------------------------------------------------------- migration rules


def _migration_rules(inputs: RuleInputs, cfg: AlertsConfig) -> Iterable[Condition]:
    if inputs.migrations is None:
        return
    for m in inputs.migrations:
        risk = _g(m, "risk")
        if risk not in ("at risk", "late"):
            continue
        name = _g(m, "name")
        share = _g(m, "share_requests")
        projected = _g(m, "projected_share_at_deadline")
        days_left = _g(m, "days_left")
        deadline = _g(m, "deadline")
        parts = [f"{_pct(share)} of traffic on {_g(m, 'to_model')}" if share is not None else "no traffic measured"]
        if projected is not None and risk == "at risk":
            parts.append(f"projected {_pct(projected)} at deadline")
        if days_left is not None:
            shown_days = round(abs(days_left))
            parts.append(f"{shown_days} {plural(shown_days, 'day')} {'left' if days_left >= 0 else 'past'}")
        phase = _g(m, "phase")
        if risk == "late":
            yield Condition(
                "migration_deadline",
                name,
                "critical",
                f"migration {name} missed its deadline {deadline} in phase {phase}: " + ", ".join(parts),
                stage=1,
            )
        else:
            behind = next(
                (
                    t
                    for wanted in ("late", "at risk")
                    for t in (_g(m, "phase_targets") or [])
                    if _g(t, "state") == wanted
                ),
                None,
            )
            if behind is not None:
                when = "was due" if _g(behind, "state") == "late" else "is due"
                target = f"phase {_g(behind, 'name')} ({_pct(_g(behind, 'share'))}) {when} {_g(behind, 'by')}"
                message = f"migration {name} {_g(behind, 'state')}: {target} (now in {phase}): " + ", ".join(parts)
            else:
                message = f"migration {name} at risk for {deadline} (phase {phase}): " + ", ".join(parts)
            yield Condition("migration_deadline", name, "warning", message)


# -------------------------------------------------------------------------------- price & key rules


def _price_rules(inputs: RuleInputs, cfg: AlertsConfig) -> Iterable[Condition]:
    if not inputs.unknown_prices:
        return
    models = sorted(inputs.unknown_prices, key=lambda r: (-r[2], r[0], r[1]))
    total = sum(r[2] for r in models)
    shown = ", ".join(f"{p}/{m} ({n})" for p, m, n in models[:3])
    more = f" and {len(models) - 3} more" if len(models) > 3 else ""
    yield Condition(
        "prices_unknown",
        "prices",
        "info",
        # The collector counts the last 24h (its unknown-prices step); the dashboard's Cost panel counts the
        # month: each says its period, so the two figures do not read as contradicting.
        f"{counted(len(models), 'model')} in use with no known price, {counted(total, 'request')} uncosted "
        f"in the last 24h: {shown}{more}",
    )


def _key_rules(inputs: RuleInputs, cfg: AlertsConfig) -> Iterable[Condition]:
    if inputs.providers is None:
        return
    for p in inputs.providers:
        spec = _g(p, "spec")
        local = _g(p, "local", False)
        auth = _g(spec, "auth") if spec is not None else None
        if not _g(p, "explicit", False) or local or auth == "none" or not _g(p, "enabled", True):
            continue
        if _g(p, "api_key") is None:
            env = _g(p, "key_env") or "its key variable"
            yield Condition(
                "provider_no_key",
                _g(p, "id"),
                "info",
                f"{_g(p, 'name')} is configured but {env} is not set: it is not probed",
            )


def baseline_from_samples(provider_id: str, values: Sequence[float]) -> LatencyBaseline | None:
    if not values:
        return None
    mean = statistics.fmean(values)
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return LatencyBaseline(provider_id, len(values), mean, sd)


# ------------------------------------------------------------------------------------- your own rules
def _custom_rules(inputs: RuleInputs, cfg: AlertsConfig) -> Iterable[Condition]:
    if inputs.custom_figures is None:
        return
    for rule, message in custom_conditions(cfg.custom_rules, inputs.custom_figures):
        yield Condition(rule.name, rule.scope, rule.severity, message)


# --------------------------------------------------------------------------- declared incidents


# What a status page says that makes `provider_incident` a warning rather than info.
_OUTAGE_STATUSES = ("partial_outage", "major_outage")
_OUTAGE_IMPACTS = ("major", "critical")


def _incident_rules(inputs: RuleInputs, cfg: AlertsConfig) -> Iterable[Condition]:
    """The provider declares an incident (or a component down) on a component llmpulse uses: info, or a
    warning for a partial/major outage or a major/critical incident. Its last good reading counts while
    the page cannot be read (shown as stale), so an unreadable page never resolves the alert."""
    for inc in inputs.incidents or []:
        if not _g(inc, "active", False):
            continue
        declared = _g(inc, "declared")
        outage = _g(declared, "worst") in _OUTAGE_STATUSES or _g(declared, "impact") in _OUTAGE_IMPACTS
        yield Condition(
            "provider_incident",
            _g(inc, "provider_id"),
            "warning" if outage else "info",
            inc.headline(),
            stage=1 if outage else 0,
        )
