"""The `[alerts]` table (rule thresholds, escalation and repeat timing) and `[[alerts.channels]]`.

Channel URLs and passwords are never written in the config: it names the environment variable that
holds them (`url_env`, `password_env`, `routing_key_env`), so the file can be committed and shared. An
Alertmanager's or PagerDuty's own address is no secret and may be written as `url`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from llmpulse.core.alerts import SEVERITIES
from llmpulse.core.alerts.custom import CustomRule, parse_rules
from llmpulse.core.validate import ConfigError, Section
from llmpulse.core.vocabulary import Severity

CHANNEL_TYPES = ("webhook", "slack", "discord", "email", "alertmanager", "pagerduty")
# Channels that mirror the whole lifecycle (ack, silence) into another alerting system, not just notices.
LIFECYCLE_CHANNELS = ("alertmanager", "pagerduty")
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
# Alertmanager wants active alerts re-sent "on the order of 30 seconds to 3 minutes"
# (prometheus.io/docs/alerting/clients); Prometheus itself re-sends every minute.
ALERTMANAGER_RESEND_S = 60.0

# Rule names as they appear in alerts, `disabled_rules` and the `alerts` command.
RULES = (
    "provider_down",
    "provider_degraded",
    "provider_auth",
    "provider_quota",
    "provider_no_key",
    "error_rate",
    "latency_p95",
    "latency_anomaly",
    "rate_limit_headroom",
    "fallback_rate",
    "budget_warning",
    "budget_exceeded",
    "budget_projected",
    "migration_deadline",
    "prices_unknown",
    "provider_incident",
)

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{32}$")


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    type: str  # one of CHANNEL_TYPES
    min_severity: Severity = "warning"
    rate_limit_per_hour: int = 50  # deliveries per rolling hour; the rest are held back and counted
    escalation: bool = False  # an escalation channel: gets escalations (and their resolved notice) only
    timeout: float = 10.0  # one delivery attempt, seconds
    retries: int = 3  # attempts after the first
    backoff: float = 2.0  # first retry delay, doubled each time
    url_env: str | None = None  # webhook/slack/discord (alertmanager may): the variable holding the URL
    url: str | None = None  # alertmanager: its base URL; pagerduty: the events endpoint
    # alertmanager
    resend_interval: float = ALERTMANAGER_RESEND_S  # active alerts are pushed again this often
    silences: bool = True  # an ack or silence in llmpulse creates the matching Alertmanager silence
    ack_silence: float = 24 * 3600.0  # how long an ack's silence lasts (expired early when the alert resolves)
    labels: tuple[tuple[str, str], ...] = ()  # extra labels on every alert (e.g. env = "prod")
    # pagerduty
    routing_key_env: str | None = None  # the variable holding the Events API v2 integration key
    # email
    host: str | None = None
    port: int = 587
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password_env: str | None = None
    sender: str | None = None
    to: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertsConfig:
    escalate_after: float = 15 * 60.0  # unacknowledged critical -> escalated
    repeat_interval: float = 4 * 3600.0  # unacknowledged firing -> notified again
    down_after_failures: int = 2  # consecutive failed probes before "provider down"
    error_rate_warning: float = 0.05
    error_rate_critical: float = 0.10
    min_requests: int = 20  # fewer requests/probes in the window say nothing about a rate
    p95_latency: float = 5.0  # seconds
    latency_z: float = 3.0  # anomaly: this many standard deviations above the baseline...
    latency_ratio: float = 1.5  # ...and at least this many times the baseline mean
    latency_baseline: float = 7 * 86400.0  # trailing window the baseline is learned over
    latency_min_samples: int = 20  # baseline samples needed before anomalies are judged
    latency_sample_every: float = 300.0  # at most one baseline sample per provider this often
    fallback_rate: float = 0.10  # share of a provider's requests that were fallbacks; 0 = any
    rate_limit_headroom: float = 0.10  # remaining/limit below this
    disabled_rules: frozenset[str] = frozenset()
    channels: tuple[ChannelConfig, ...] = field(default_factory=tuple)
    custom_rules: tuple[CustomRule, ...] = ()  # [[alerts.rules]]

    def enabled(self, rule: str) -> bool:
        return rule not in self.disabled_rules


DEFAULTS = AlertsConfig()


def _env_name(sec: Section, name: str, required: bool) -> str | None:
    value = sec.string(name, None)
    if value is None:
        if required:
            plain = name.removesuffix("_env")  # url_env -> url: the secret itself, written into the file
            if sec.has(plain):
                raise ConfigError(
                    sec.source,
                    sec.key(plain),
                    "the secret itself (not shown)",
                    f"{name} = the NAME of an environment variable holding it, e.g. SLACK_WEBHOOK_URL: "
                    "the config file is shared, a secret never goes in it",
                )
            raise ConfigError(
                sec.source, sec.key(name), "nothing", "the name of an environment variable, e.g. SLACK_WEBHOOK_URL"
            )
        return None
    # A pasted PagerDuty routing key (32 hex characters) would also pass as a name.
    if not _ENV_NAME.match(value) or "://" in value or _HEX_KEY.match(value):
        # A URL or password pasted here would end up in a shared file; the config names the variable.
        raise ConfigError(
            sec.source,
            sec.key(name),
            "a value that is not a variable name",
            "the NAME of an environment variable holding it (never the secret itself)",
        )
    return value


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _http_url(sec: Section, name: str, default: str | None) -> str | None:
    value = sec.string(name, default)
    if value is not None and not value.startswith(("http://", "https://")):
        raise sec.error(name, value, "an http:// or https:// URL")
    return value


def _labels(sec: Section) -> tuple[tuple[str, str], ...]:
    raw = sec.raw("labels", {})
    if not isinstance(raw, dict) or not all(isinstance(v, str) and _LABEL_NAME.match(k) for k, v in raw.items()):
        raise sec.error("labels", raw, 'a table of label names to strings, e.g. { env = "prod" }')
    return tuple(sorted(raw.items()))


def _parse_channel(sec: Section, index: int) -> ChannelConfig:
    d = ChannelConfig(name="", type="webhook")
    ctype = sec.string("type", choices=CHANNEL_TYPES)
    name = sec.string("name", f"{ctype}-{index + 1}")
    common: dict[str, Any] = {
        "name": name,
        "type": ctype,
        "min_severity": sec.string("min_severity", d.min_severity, choices=SEVERITIES),
        "rate_limit_per_hour": sec.integer("rate_limit_per_hour", d.rate_limit_per_hour, minimum=1),
        "escalation": sec.boolean("escalation", d.escalation),
        "timeout": sec.duration("timeout", d.timeout, minimum=0.01),
        "retries": sec.integer("retries", d.retries, minimum=0),
        "backoff": sec.duration("backoff", d.backoff, minimum=0.0),
    }
    if ctype == "email":
        to = sec.string_list("to")
        if not to or not all("@" in t for t in to):
            raise sec.error("to", to, "one or more email addresses")
        sender = sec.string("from")
        if "@" not in sender:
            raise sec.error("from", sender, "an email address")
        port_default = 465 if sec.data.get("ssl") is True else d.port
        out = ChannelConfig(
            **common,
            host=sec.string("host"),
            port=sec.integer("port", port_default, minimum=1),
            ssl=sec.boolean("ssl", d.ssl),
            starttls=sec.boolean("starttls", not sec.data.get("ssl", False)),
            username=sec.string("username", None),
            password_env=_env_name(sec, "password_env", False),
            sender=sender,
            to=tuple(to),
        )
    elif ctype == "alertmanager":
        url = _http_url(sec, "url", None)
        url_env = _env_name(sec, "url_env", False)
        if (url is None) == (url_env is None):
            raise sec.error("url", url, "either url (the Alertmanager, e.g. http://127.0.0.1:9093) or url_env")
        out = ChannelConfig(
            **common,
            url=url,
            url_env=url_env,
            resend_interval=sec.duration("resend_interval", d.resend_interval, minimum=1.0),
            silences=sec.boolean("silences", d.silences),
            ack_silence=sec.duration("ack_silence", d.ack_silence, minimum=60.0),
            labels=_labels(sec),
        )
    elif ctype == "pagerduty":
        out = ChannelConfig(
            **common,
            url=_http_url(sec, "url", PAGERDUTY_EVENTS_URL),
            routing_key_env=_env_name(sec, "routing_key_env", True),
        )
    else:
        out = ChannelConfig(**common, url_env=_env_name(sec, "url_env", True))
    sec.done()
    return out


def parse(root: Section) -> AlertsConfig:
    """Read `[alerts]` and its `[[alerts.channels]]`; ConfigError on the first wrong key."""
    sec = root.table("alerts")
    d = DEFAULTS
    custom = parse_rules(sec.tables("rules"), RULES)
    known = RULES + tuple(r.name for r in custom)
    disabled = sec.string_list("disabled_rules", [])
    for rule in disabled:
        if rule not in known:
            raise sec.error("disabled_rules", rule, "rule names from: " + ", ".join(known))
    warning = sec.number("error_rate_warning", d.error_rate_warning, maximum=1.0)
    critical = sec.number("error_rate_critical", d.error_rate_critical, maximum=1.0)
    if critical < warning:
        raise sec.error("error_rate_critical", critical, f"a rate >= error_rate_warning ({warning:g})")
    channels = [_parse_channel(ch, i) for i, ch in enumerate(sec.tables("channels"))]
    names = [c.name for c in channels]
    for c in channels:
        if names.count(c.name) > 1:
            raise ConfigError(
                sec.source, sec.key("channels"), f"two channels named {c.name!r}", "a unique name per channel"
            )
    out = AlertsConfig(
        escalate_after=sec.duration("escalate_after", d.escalate_after),
        repeat_interval=sec.duration("repeat_interval", d.repeat_interval, minimum=60.0),
        down_after_failures=sec.integer("down_after_failures", d.down_after_failures, minimum=1),
        error_rate_warning=warning,
        error_rate_critical=critical,
        min_requests=sec.integer("min_requests", d.min_requests, minimum=1),
        p95_latency=sec.duration("p95_latency", d.p95_latency, minimum=0.001),
        latency_z=sec.number("latency_z", d.latency_z, minimum=0.5),
        latency_ratio=sec.number("latency_ratio", d.latency_ratio, minimum=1.0),
        latency_baseline=sec.duration("latency_baseline", d.latency_baseline, minimum=3600.0),
        latency_min_samples=sec.integer("latency_min_samples", d.latency_min_samples, minimum=3),
        latency_sample_every=sec.duration("latency_sample_every", d.latency_sample_every, minimum=1.0),
        fallback_rate=sec.number("fallback_rate", d.fallback_rate, maximum=1.0),
        rate_limit_headroom=sec.number("rate_limit_headroom", d.rate_limit_headroom, maximum=1.0),
        disabled_rules=frozenset(disabled),
        channels=tuple(channels),
        custom_rules=custom,
    )
    sec.done()
    return out


def alerts_config(cfg: object) -> AlertsConfig:
    """The alerts settings of a Config (or an AlertsConfig itself); defaults when there are none."""
    if isinstance(cfg, AlertsConfig):
        return cfg
    found = getattr(cfg, "alerts", None)
    return found if isinstance(found, AlertsConfig) else DEFAULTS
