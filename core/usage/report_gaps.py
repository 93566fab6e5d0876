"""Whether llmpulse knows the spend of a provider whose budgets count its own usage report
(`[usage_api.<provider>] budgets = "usage_api"`).

For such a provider the recorded calls are left out of budgets and breakdowns and its report's buckets
put in (llmpulse.core.usage.queries.usage_api_deltas). Until a pull has worked — or when the last one
failed, or the report does not reach back to a range's start — nothing replaces the calls left out, so
every figure that includes the provider is a lower bound. Those figures are shown as partial, with the
reason from here, never as the whole spend (and never as $0).

Kept apart from usage_api.py (which pulls, through httpx) so that commands that only read — `budgets`,
`status`, `report` — need not import an HTTP client to say so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from llmpulse.core.store import Store
from llmpulse.core.usage.config import UsageApiConfig


@dataclass(frozen=True)
class ReportGap:
    """A provider whose budgets count its own usage report, and why llmpulse does not know its spend over
    a range: never pulled, its pulls failed, or its report does not reach back to the range's start.
    Its recorded calls are left out (the report counts, not them) and nothing replaces them, so every
    figure that includes it is a lower bound: shown as partial or unknown, never as the whole."""

    provider_id: str
    reason: str  # "not pulled yet", "last pull failed: HTTP 401 …", "its usage report starts 2026-12-13 09:00 UTC"

    def to_json(self) -> dict[str, str]:
        return {"provider": self.provider_id, "reason": self.reason}

    def line(self) -> str:
        return f"{self.provider_id}: {self.reason}"


def _utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


async def report_gaps(store: Store, cfg: UsageApiConfig, since: float) -> list[ReportGap]:
    """For every provider whose budgets count its usage report: why its spend from `since` on is not
    known (empty: all known). A pull that failed after one that worked leaves the report as of that one:
    stale, so not known either."""
    counted = sorted(cfg.usage_api_budgets)
    if not counted:
        return []
    pulls = {
        r["provider_id"]: r
        for r in await store.fetchall(
            "SELECT provider_id, ok_at, covered_from, error FROM provider_usage_pulls "
            f"WHERE provider_id IN ({', '.join('?' for _ in counted)})",
            counted,
        )
    }
    gaps = []
    for pid in counted:
        row = pulls.get(pid)
        if row is None:
            reason = "not pulled yet"
        elif row["ok_at"] is None:
            reason = f"last pull failed: {row['error']}" if row["error"] else "not pulled yet"
        elif row["error"]:
            reason = f"last pull failed: {row['error']} (its report as of {_utc(row['ok_at'])})"
        elif row["covered_from"] > since:
            reason = f"its usage report starts {_utc(row['covered_from'])}"
        else:
            continue
        gaps.append(ReportGap(pid, reason))
    return gaps
