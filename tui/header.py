"""The line at the top: the numbers that matter first, the refresh state, and the PAUSED marker."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from llmpulse.tui import format as fmt
from llmpulse.tui.panels.base import View

SEP = " │ "


def header_text(
    snapshot: Any | None, view: View, *, paused: bool, interval: float, time_range: str, error: str | None = None
) -> Text:
    text = Text()
    if paused:
        text.append(" ⏸ PAUSED ", style="bold reverse")
        text.append(" ")
    text.append("llmpulse", style="bold")
    if snapshot is None:
        text.append(SEP + "loading…", style="dim")
    else:
        h = snapshot.header
        text.append(SEP)
        text.append(f"{fmt.count(h.requests_period)} req {fmt.money(h.cost_period)}")
        text.append(f" {h.period_label}" if getattr(h, "period_label", None) else "", style="dim")
        if h.budget_utilization is not None:
            text.append(SEP + "budget ")
            text.append(fmt.pct(h.budget_utilization), style=fmt.usage_style(h.budget_utilization))
        text.append(SEP)
        all_up = h.providers_healthy == h.providers_total
        text.append(f"{h.providers_healthy}/{h.providers_total} healthy", style="" if all_up else "yellow")
        text.append(SEP + "alerts ")
        by = h.alerts_by_severity
        parts = [(sev, by.get(sev, 0)) for sev in ("critical", "warning", "info")]
        if not any(n for _, n in parts):
            text.append("none", style="green")
        else:
            for i, (sev, n) in enumerate(parts):
                glyph, _word, style = fmt.SEVERITY[sev]
                text.append(("" if i == 0 else " ") + f"{glyph}{n}", style=style if n else "dim")
        text.append(SEP + f"fallbacks {fmt.count(h.fallbacks_24h)}/24h")
        text.append(SEP + fmt.clock(h.refreshed_at, view.tz))
    text.append(f" ⟳{fmt.interval(interval)} {time_range}", style="dim")
    if view.filter:
        text.append(SEP + f"filter: {view.filter}", style="bold")
    if error:
        text.append(SEP + f"⚠ {error}", style="bold red")
    return text


class HeaderLine(Static):
    """One or two lines (it wraps at 80 columns) of headline numbers."""

    DEFAULT_CSS = """
    HeaderLine { height: auto; padding: 0 1; background: $panel; }
    """

    def fill(
        self,
        snapshot: Any | None,
        view: View,
        *,
        paused: bool,
        interval: float,
        time_range: str,
        error: str | None = None,
    ) -> None:
        text = header_text(snapshot, view, paused=paused, interval=interval, time_range=time_range, error=error)
        if text != self._last:  # an unchanged header costs no repaint
            self._last = text
            self.update(text)

    _last: Text | None = None
