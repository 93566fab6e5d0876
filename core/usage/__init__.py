"""Usage, cost and budgets: records in, priced at ingest, rolled up as they arrive, queried from roll-ups."""
