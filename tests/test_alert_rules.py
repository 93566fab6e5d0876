"""Alert config and rules: pure functions over the other parts' real dataclasses (ProviderHealth,
RequestStats, BudgetStatus, MigrationStatus, Provider), plus the learned latency baseline on SQLite."""

from __future__ import annotations

import datetime as dt
import tomllib

import pytest

from llmpulse.core.alerts.baseline import load_latency_baselines, record_latency_samples
from llmpulse.core.alerts.config import DEFAULTS, RULES
from llmpulse.core.alerts.config import parse as parse_alerts
from llmpulse.core.alerts.rules import RuleInputs, covered_rules, evaluate_rules
from llmpulse.core.catalog import CATALOG_BY_ID, ProviderOverride, resolve_providers
from llmpulse.core.health import ProviderHealth
from llmpulse.core.migration import MigrationStatus
from llmpulse.core.ratelimit import RateLimit
from llmpulse.core.store import Store
from llmpulse.core.usage.budgets import BudgetStatus
from llmpulse.core.usage.queries import RequestStats
from llmpulse.core.validate import ConfigError, Section

T0 = 1_795_000_000.0


def cfg(text: str = ""):
    return parse_alerts(Section(tomllib.loads(text), "t.toml"))


def health(pid="groq", **kw) -> ProviderHealth:
    base = {
        "provider_id": pid,
        "name": pid.capitalize(),
        "status": "healthy",
        "samples": 10,
        "error_rate": 0.0,
        "p50_ms": 300.0,
        "p95_ms": 400.0,
        "latency_series": [300.0] * 5,
    }
    base.update(kw)
    return ProviderHealth(**base)


def budget(name="total/month", limit=100.0, spent=10.0, projected=20.0, warn_at=(0.5, 0.8, 1.0), exhaust_at=None):
    return BudgetStatus(
        name=name,
        scope="total",
        period="month",
        limit_usd=limit,
        spent_usd=spent,
        utilization=spent / limit,
        burn_rate_usd_per_day=1.0,
        projected_usd=projected,
        exhaust_at=exhaust_at,
        period_start=T0 - 86400,
        period_end=T0 + 20 * 86400,
        warn_at=list(warn_at),
        crossed=[w for w in warn_at if spent / limit >= w],
    )


def migration(risk, share=0.3, days_left=20.0):
    return MigrationStatus(
        name="to-4.1",
        from_models=["gpt-4o"],
        to_model="gpt-4.1",
        start=dt.date(2026, 11, 1),
        deadline=dt.date(2026, 12, 20),
        phase="canary",
        phase_index=1,
        phases=["shadow", "canary", "full"],
        phase_shares=[0.0, 0.1, 1.0],
        share_requests=share,
        share_tokens=share,
        requests_in_window=100,
        window_s=86400.0,
        days_left=days_left,
        risk=risk,
        projected_share_at_deadline=0.6,
        trend_per_day=0.01,
        projected_completion_at=None,
        before=None,
        after=None,
        compare_s=86400.0,
    )


def found(inputs, config=None):
    return {c.fingerprint: c for c in evaluate_rules(inputs, config or cfg())}


# -- config -------------------------------------------------------------------------------------------


def test_defaults_and_full_config():
    assert cfg() == DEFAULTS
    assert (DEFAULTS.escalate_after, DEFAULTS.repeat_interval) == (900.0, 4 * 3600.0)
    c = cfg("""
[alerts]
escalate_after = "5m"
repeat_interval = "1h"
error_rate_warning = 0.02
error_rate_critical = 0.2
p95_latency = "2s"
disabled_rules = ["provider_no_key"]
[[alerts.channels]]
type = "slack"
url_env = "SLACK_WEBHOOK_URL"
min_severity = "critical"
rate_limit_per_hour = 5
[[alerts.channels]]
type = "email"
host = "smtp.example.com"
ssl = true
username = "me"
password_env = "SMTP_PASSWORD"
from = "a@example.com"
to = ["b@example.com"]
""")
    assert (c.escalate_after, c.repeat_interval, c.p95_latency) == (300.0, 3600.0, 2.0)
    slack, email = c.channels
    assert (slack.name, slack.type, slack.min_severity, slack.rate_limit_per_hour) == (
        "slack-1",
        "slack",
        "critical",
        5,
    )
    assert (email.port, email.ssl, email.starttls, email.password_env) == (465, True, False, "SMTP_PASSWORD")
    assert not c.enabled("provider_no_key") and c.enabled("provider_down")


@pytest.mark.parametrize(
    "text, key, says",
    [
        ('[alerts]\nescalate_after = "soon"\n', "escalate_after", "duration"),
        (
            "[alerts]\nerror_rate_warning = 0.2\nerror_rate_critical = 0.1\n",
            "error_rate_critical",
            ">= error_rate_warning",
        ),
        ('[alerts]\ndisabled_rules = ["nope"]\n', "disabled_rules", "provider_down"),
        ("[alerts]\ntypo = 1\n", "typo", ""),
        ('[[alerts.channels]]\ntype = "pager"\nurl_env = "X"\n', "type", "webhook"),
        ('[[alerts.channels]]\ntype = "slack"\n', "url_env", "environment variable"),
        (
            '[[alerts.channels]]\ntype = "slack"\nurl_env = "https://hooks.slack.com/services/T/B/x"\n',
            "url_env",
            "never the secret",
        ),
        ('[[alerts.channels]]\ntype = "webhook"\nurl_env = "X"\nmin_severity = "loud"\n', "min_severity", "critical"),
        ('[[alerts.channels]]\ntype = "webhook"\nurl_env = "X"\nrate_limit_per_hour = 0\n', "rate_limit_per_hour", ""),
        ('[[alerts.channels]]\ntype = "email"\nhost = "h"\nfrom = "a@b.c"\nto = ["nobody"]\n', "to", "email"),
        (
            '[[alerts.channels]]\ntype = "webhook"\nurl_env = "X"\n[[alerts.channels]]\ntype = "webhook"\nurl_env = "Y"\n'
            'name = "webhook-1"\n',
            "channels",
            "unique name",
        ),
    ],
)
def test_config_errors_name_the_key(text, key, says):
    with pytest.raises(ConfigError) as err:
        cfg(text)
    assert key in str(err.value) and says in str(err.value)


# -- provider rules -------------------------------------------------------------------------------------


def test_provider_states_each_have_their_rule():
    rl = RateLimit(requests_limit=1000, requests_remaining=40, reset_s=30)
    inputs = RuleInputs(
        now=T0,
        health=[
            health("groq", status="failed", error_kind="timeout", error="no answer in 10s", consecutive_failures=3),
            health("mistral", status="failed", error_kind="server_error", consecutive_failures=1),  # one blip
            health(
                "deepseek",
                status="failed",
                error_kind="auth",
                error="HTTP 401 key sk-abcdefghijklmnop",
                consecutive_failures=1,
            ),
            health(
                "moonshot", status="failed", error_kind="quota", error="insufficient balance", consecutive_failures=1
            ),
            health("openai", status="degraded", error_kind="slow", p95_ms=7000.0, rate_limit=rl),
            health("xai", status="failed", error_kind="timeout", consecutive_failures=5, enabled=False),
        ],
    )
    out = found(inputs)
    assert out["provider_down:groq"].severity == "critical" and "3 failed probes" in out["provider_down:groq"].message
    assert "provider_down:mistral" not in out  # below down_after_failures
    auth = out["provider_auth:deepseek"]
    assert auth.severity == "critical" and "sk-abcdefghijklmnop" not in auth.message  # redacted
    assert "provider_down:deepseek" not in out  # its own rule, not an outage
    assert out["provider_quota:moonshot"].severity == "critical"
    assert out["provider_degraded:openai"].severity == "warning"
    assert (
        "p95 latency 7.00s over 15m" in out["latency_p95:openai"].message
        and "threshold 5.00s" in out["latency_p95:openai"].message
    )
    headroom = out["rate_limit_headroom:openai"].message
    assert "4.0%" in headroom and "40/1000 requests left" in headroom
    assert not [f for f in out if f.endswith(":xai")]  # disabled providers say nothing


def test_error_rate_thresholds_from_traffic_and_from_probes():
    def rate(errors, requests, **kw):
        stats = {
            "openai": RequestStats(
                requests=requests,
                errors=errors,
                error_rate=errors / requests,
                p95_ms=None,
                fallbacks=kw.pop("fallbacks", 0),
            )
        }
        return found(
            RuleInputs(
                now=T0, health=[health("openai", samples=5, error_rate=kw.pop("probe_rate", 0.0))], request_stats=stats
            ),
            kw.pop("config", None),
        )

    assert "error_rate:openai" not in rate(4, 100)  # 4% < 5%
    assert rate(5, 100)["error_rate:openai"].severity == "warning"  # >= 5%
    assert rate(10, 100)["error_rate:openai"].severity == "critical"
    assert "10/100 requests failed" in rate(10, 100)["error_rate:openai"].message
    assert "error_rate:openai" not in rate(5, 10)  # too few requests to say
    # Too little traffic: the probes' own error rate is judged instead of nothing.
    assert rate(1, 3, probe_rate=0.4)["error_rate:openai"].severity == "critical"
    # fallbacks: a share over the threshold; fallback_rate = 0 means any fallback, even on little traffic
    assert "fallback_rate:openai" in rate(0, 100, fallbacks=12)
    assert "fallback_rate:openai" not in rate(0, 100, fallbacks=5)
    assert "fallback_rate:openai" in rate(0, 2, fallbacks=1, config=cfg("[alerts]\nfallback_rate = 0\n"))


# -- budgets, migrations, prices, keys ---------------------------------------------------------------


def test_budget_rules():
    out = found(RuleInputs(now=T0, budgets=[budget("a", spent=85.0, projected=95.0)]))
    assert out["budget_warning:a"].message.startswith("budget a passed 80%: $85.00 of $100.00")
    assert out["budget_warning:a"].stage == 1  # second warn level: a new notice is due
    assert "budget_projected:a" not in out and "budget_exceeded:a" not in out
    out = found(RuleInputs(now=T0, budgets=[budget("b", spent=60.0, projected=130.0, exhaust_at=T0 + 86400 * 3)]))
    assert out["budget_warning:b"].stage == 0
    assert "projected to reach $130.00 of $100.00 by the end of this month" in out["budget_projected:b"].message
    # the period's exclusive end (its next day's midnight) is never named as the day it runs to
    assert dt.datetime.fromtimestamp(T0 + 20 * 86400, dt.UTC).strftime("%b %d") not in out["budget_projected:b"].message
    out = found(RuleInputs(now=T0, budgets=[budget("c", spent=101.0, projected=150.0)]))
    assert out["budget_exceeded:c"].severity == "critical" and "budget_projected:c" not in out
    assert not found(RuleInputs(now=T0, budgets=[budget("d", spent=10.0, projected=20.0)]))


def test_migration_price_and_key_rules():
    out = found(
        RuleInputs(
            now=T0,
            migrations=[
                migration("at risk"),
            ],
        )
    )
    m = out["migration_deadline:to-4.1"]
    assert m.severity == "warning" and "30.0% of traffic on gpt-4.1" in m.message and "2026-12-20" in m.message
    late = found(RuleInputs(now=T0, migrations=[migration("late", days_left=-3)]))["migration_deadline:to-4.1"]
    assert late.severity == "critical" and "3 days past" in late.message and late.stage == 1
    assert not found(RuleInputs(now=T0, migrations=[migration("on track")]))

    prices = found(RuleInputs(now=T0, unknown_prices=[("acme", "in-house", 12), ("x", "y", 3)]))
    assert prices["prices_unknown:prices"].severity == "info"
    assert (
        "2 models" in prices["prices_unknown:prices"].message
        and "15 requests" in prices["prices_unknown:prices"].message
    )

    providers = resolve_providers(CATALOG_BY_ID, {}, {"openai": ProviderOverride()})
    keys = found(RuleInputs(now=T0, providers=providers))
    assert (
        keys["provider_no_key:openai"].severity == "info" and "OPENAI_API_KEY" in keys["provider_no_key:openai"].message
    )
    assert not [f for f in keys if f != "provider_no_key:openai"]  # unnamed providers and local ones: silent
    assert not found(RuleInputs(now=T0, providers=providers), cfg('[alerts]\ndisabled_rules = ["provider_no_key"]\n'))


def test_only_judged_rules_may_resolve():
    c = cfg('[alerts]\ndisabled_rules = ["prices_unknown"]\n')
    assert covered_rules(RuleInputs(now=T0), c) == {"prices_unknown"}  # disabled: its alerts may go
    covered = covered_rules(RuleInputs(now=T0, health=[], budgets=[]), c)
    assert {"provider_down", "latency_anomaly", "budget_exceeded"} <= covered
    assert "migration_deadline" not in covered and "fallback_rate" not in covered
    assert set(RULES) == covered_rules(
        RuleInputs(
            now=T0,
            health=[],
            budgets=[],
            request_stats={},
            migrations=[],
            unknown_prices=[],
            providers=[],
            incidents=[],
        ),
        c,
    )


# -- the learned latency baseline --------------------------------------------------------------------


async def test_latency_anomaly_against_the_learned_baseline(tmp_path):
    c = cfg('[alerts]\nlatency_sample_every = "60s"\nlatency_min_samples = 10\n')
    store = await Store.open(tmp_path / "b.db")
    try:

        def fast(ms):
            return health("openai", p50_ms=ms, p95_ms=ms, latency_series=[ms] * 5)

        for i in range(30):  # an hour of ~400 ms, one sample every 2 minutes
            await record_latency_samples(store, [fast(400 + (i % 5) * 10)], c, T0 + i * 120)
        # one sample per latency_sample_every: a second one 10 s later is not stored
        assert await record_latency_samples(store, [fast(999)], c, T0 + 29 * 120 + 10) == 0
        now = T0 + 30 * 120 + 1000
        baselines = await load_latency_baselines(store, c, now, exclude_recent=900)
        assert baselines["openai"].samples == 30 and 400 <= baselines["openai"].mean_ms <= 440
        assert not [
            x
            for x in evaluate_rules(RuleInputs(now=now, health=[fast(450)], latency_baselines=baselines), c)
            if x.rule == "latency_anomaly"
        ]
        [anomaly] = [
            x
            for x in evaluate_rules(RuleInputs(now=now, health=[fast(1300)], latency_baselines=baselines), c)
            if x.rule == "latency_anomaly"
        ]
        assert "1.30s is 3.1x its usual 420ms" in anomaly.message and anomaly.severity == "warning"
        # too few samples: no judgement yet
        few = await load_latency_baselines(store, c, T0 + 5 * 120 + 1, exclude_recent=0)
        assert not [
            x
            for x in evaluate_rules(RuleInputs(now=now, health=[fast(1300)], latency_baselines=few), c)
            if x.rule == "latency_anomaly"
        ]
    finally:
        await store.close()
