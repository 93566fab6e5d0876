"""Usage, cost and budgets: records in, priced at ingest, rolled up as they arrive, queried from roll-ups."""

from llmpulse.core.usage.queries import breakdown, daily_by  # noqa: F401  (llmpulse.core.migration reads traffic through these)
