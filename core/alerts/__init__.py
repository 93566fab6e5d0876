"""Alerts: rules that judge health, traffic, budgets and migrations (rules.py), a lifecycle people act on
(engine.py: dedupe, acknowledge, silence, resolve, escalate, repeat), and delivery to webhooks, Slack,
Discord and email (notify.py). Settings live in config.py; latency baselines in baseline.py.
"""

# Defined once in llmpulse.core.vocabulary (shared with the dashboard); the names alert modules use.
from llmpulse.core.vocabulary import ALERT_STATES as STATES
from llmpulse.core.vocabulary import SEVERITIES, SEVERITY_RANK

__all__ = ["SEVERITIES", "SEVERITY_RANK", "STATES"]
