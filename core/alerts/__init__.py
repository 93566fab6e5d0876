"""Alerts: rules that judge health, traffic, budgets and migrations (rules.py), a lifecycle people act on
(engine.py: dedupe, acknowledge, silence, resolve, escalate, repeat), and delivery to webhooks, Slack,
Discord and email (notify.py). Settings live in config.py; latency baselines in baseline.py.
"""

SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {name: i for i, name in enumerate(SEVERITIES)}
STATES = ("firing", "acknowledged", "resolved")
