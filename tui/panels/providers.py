"""Panel 1: every provider with its state (glyph + word) and how long it has lasted, p95 latency with its
band and whose calls it is over, the latency trend, error rate with its band, circuit, rate-limit
headroom and when it was last checked. Trouble first: failed, then degraded, then unknown, then healthy;
disabled and unconfigured providers after the watched ones.

Bands are words as well as colours. Below 110 columns the panel is narrow: the sparkline goes, bands and
sources are short (`exc good acc slow`, `exc good conc crit`, `p`/`t`; the help screen explains them), and
the provider's name gives up width first (cut with "…"), so Circuit and the rest stay on an 80-column
screen. An error rate over too few calls to judge is shown with its counts and "too few" (`1/3 n<5`),
never banded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text

from llmpulse.tui import format as fmt
from llmpulse.tui.backend import ProviderHealth, Snapshot
from llmpulse.tui.panels.base import Panel, View

# The default order: what needs someone first.
STATUS_RANK = {"failed": 0, "degraded": 1, "unknown": 2, "healthy": 3}


def headroom(health: ProviderHealth) -> float | None:
    rate_limit = health.rate_limit
    return rate_limit.headroom if rate_limit is not None else None


def trouble_order(h: ProviderHealth) -> tuple[int, int, int, str]:
    watched = 0 if h.watched else 1 if h.configured else 2
    return (watched, STATUS_RANK.get(h.status, 2), h.priority, h.provider_id)


class ProvidersPanel(Panel[ProviderHealth]):
    number = 1
    title = "Providers"
    flex_column = "name"
    flex_max = 24
    narrow_below = 110
    wide_only = frozenset({"trend"})
    columns = (
        ("name", "Provider"),
        ("status", "Status"),
        ("p95", "p95"),
        ("trend", "Latency"),
        ("errors", "Errors"),
        ("circuit", "Circuit"),
        ("headroom", "Room"),
        ("checked", "Last"),  # how long ago the last probe ran; short so the table fits 80 columns
    )
    sort_by = {
        "name": lambda h: h.name.lower(),
        "status": trouble_order,
        "p95": lambda h: h.p95_ms,
        "errors": lambda h: h.error_rate,
        "circuit": lambda h: {"open": 0, "half_open": 1}.get(h.circuit, 2),
        "headroom": headroom,
        "checked": lambda h: h.last_checked_at,
    }

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.latency_scale: tuple[float, float] | None = None

    def items(self, snapshot: Snapshot, view: View) -> list[ProviderHealth]:
        # Providers without a key are noise once any has one (the first run shows the welcome instead).
        providers = [h for h in snapshot.providers if h.configured] or list(snapshot.providers)
        shown = [
            h
            for h in providers
            if fmt.matches(
                view.filter,
                h.provider_id,
                h.name,
                h.status,
                h.error_kind,
                h.circuit,
                h.error_band,
                h.latency_band,
                h.setup_gap,
                "disabled" if not h.enabled else None,
            )
        ]
        # One scale for every row's sparkline, so a tall bar means the same milliseconds on every row.
        self.latency_scale = fmt.common_scale(h.latency_series[-SPARK_WIDTH:] for h in shown)
        return sorted(shown, key=trouble_order)

    def signature(self, h: ProviderHealth, view: View) -> Any:
        """What the row shows, not the whole verdict: a snapshot read again carries new objects with
        the same figures (and a status_since that follows the window's edge), and those rows keep
        their cells."""
        since = getattr(h, "status_since", None)
        return (
            h.name,
            h.stale,
            h.status,
            h.enabled,
            h.configured,
            h.setup_gap,
            fmt.coarse_age(view.now - since) if since else None,
            h.p95_ms,
            getattr(h, "p95_exact", True),
            h.latency_band,
            h.latency_source,
            None if self.narrow else (tuple(h.latency_series[-SPARK_WIDTH:]), self.latency_scale),
            h.error_rate,
            h.error_band,
            h.error_rate_judged,
            h.errors,
            h.samples,
            h.samples_needed,
            h.circuit,
            headroom(h),
            fmt.coarse_age(view.now - h.last_checked_at) if h.last_checked_at else None,
        )

    def key(self, h: ProviderHealth) -> str:
        return str(h.provider_id)

    def cells(self, h: ProviderHealth, view: View) -> Sequence[Any]:
        name_style = "" if h.configured and h.enabled else "dim"
        since = getattr(h, "status_since", None)
        lasted = view.now - since if since else None
        status = fmt.status_text(h.status, h.enabled, h.configured, lasted, h.setup_gap, short=self.narrow)
        if h.stale and self.narrow:
            # A narrow name column would cut "(stale)" off: the verdict says it, where it cannot be missed.
            status = fmt.status_text(h.status, h.enabled, h.configured, None, h.setup_gap)
            status.append(" stale", style="bold")
        return (
            # A verdict nobody has renewed for a few rounds is marked, not shown as current.
            Text(h.name + (" (stale)" if h.stale and not self.narrow else ""), style=name_style),
            status,
            fmt.p95_text(
                h.p95_ms, h.latency_band, h.latency_source, short=self.narrow, exact=getattr(h, "p95_exact", True)
            ),
            Text(fmt.sparkline(h.latency_series, SPARK_WIDTH, self.latency_scale), style="cyan"),
            fmt.error_rate_text(
                h.error_rate,
                h.error_band,
                short=self.narrow,
                judged=h.error_rate_judged,
                errors=h.errors,
                samples=h.samples,
                needed=h.samples_needed,
            ),
            fmt.circuit_text(h.circuit),
            fmt.headroom_text(headroom(h)),
            # To the minute: a cell that ticked every second re-measured its column on every refresh.
            Text(fmt.coarse_age(view.now - h.last_checked_at) if h.last_checked_at else fmt.DASH, justify="right"),
        )

    def subtitle(self, snapshot: Snapshot, view: View) -> str:
        configured = [h for h in snapshot.providers if h.watched]
        healthy = sum(1 for h in configured if h.status == "healthy")
        unconfigured = sum(1 for h in snapshot.providers if not h.configured)
        shown_all = not unconfigured or unconfigured == len(snapshot.providers)
        hidden = "" if shown_all else f" · {unconfigured} not configured, not shown"
        return f"{healthy}/{len(configured)} healthy{hidden}"


SPARK_WIDTH = 8
