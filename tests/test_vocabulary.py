"""One vocabulary, one ranking: the core's snapshot, the notifier's minimum severity and the dashboard's
alert panel all order severities the same way."""

from __future__ import annotations

from llmpulse.core.alerts.engine import Alert
from llmpulse.core.snapshot import _severity_rank
from llmpulse.core.vocabulary import SEVERITIES, SEVERITY_RANK, Severity
from llmpulse.tui import format as fmt
from llmpulse.tui.panels.alerts import urgency


def _alert(id: int, severity: Severity, first_seen: float) -> Alert:
    return Alert(
        id=id,
        fingerprint=f"fp{id}",
        rule="provider_down",
        subject="openai",
        severity=severity,
        stage=0,
        message="m",
        state="firing",
        silenced_until=None,
        silenced_by=None,
        escalated=False,
        escalated_at=None,
        first_seen=first_seen,
        last_seen=first_seen,
        count=1,
        acked_by=None,
        acked_at=None,
        note=None,
        resolved_at=None,
        resolved_by=None,
        last_notified_at=None,
    )


def test_core_and_dashboard_put_the_same_severity_first() -> None:
    # the info alert is the newest, so a ranking that ignored severity would put it first
    alerts = [_alert(1, "warning", 200.0), _alert(2, "critical", 100.0), _alert(3, "info", 300.0)]
    by_core = [a.severity for a in sorted(alerts, key=_severity_rank)]
    by_tui = [a.severity for a in sorted(alerts, key=lambda a: urgency(a, 0.0))]
    assert by_core == by_tui == ["critical", "warning", "info"]


def test_the_notifier_rank_grows_with_severity_and_the_dashboard_draws_every_severity() -> None:
    assert SEVERITY_RANK["info"] < SEVERITY_RANK["warning"] < SEVERITY_RANK["critical"]
    assert set(fmt.SEVERITY) == set(SEVERITIES)
