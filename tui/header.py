"""The line at the top: the numbers that matter first, the refresh state and range, the PAUSED marker.

One line, never two. Each segment has a fixed width (numbers are padded to the width their largest
ordinary value takes), so the line does not shift when a number grows; when the terminal is too narrow,
the least important segments are left out first and the rest keep their places.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import events
from textual.widgets import Static

from llmpulse.core.vocabulary import MOST_SEVERE_FIRST, Severity
from llmpulse.tui import format as fmt
from llmpulse.tui.backend import Snapshot
from llmpulse.tui.panels.base import View

SEP = " │ "
BUDGET_NAME_WIDTH = 16


@dataclass
class Segment:
    importance: int  # 0 is kept longest
    text: Text


def header_segments(
    snapshot: Snapshot | None,
    view: View,
    *,
    paused: bool,
    interval: float,
    time_range: str,
    error: str | None = None,
    narrow: bool = False,
) -> list[Segment]:
    """The header's segments in display order, each with how important it is."""
    out: list[Segment] = []
    if paused:
        out.append(Segment(0, Text(" ⏸ PAUSED ", style="bold reverse")))
    out.append(Segment(8, Text("llmpulse", style="bold")))
    if snapshot is None:
        out.append(Segment(1, Text("loading…", style="dim")))
    else:
        h = snapshot.header
        out.append(Segment(1, alerts_text(h.alerts_by_severity)))
        all_up = h.providers_healthy == h.providers_total
        out.append(
            Segment(
                2,
                Text(f"{h.providers_healthy}/{h.providers_total} healthy".ljust(13), style="" if all_up else "yellow"),
            )
        )
        if h.budget_utilization is not None:
            name = getattr(h, "budget_name", None)
            if name and narrow and len(name) > BUDGET_NAME_WIDTH:  # the Costs panel has it whole
                name = name[: BUDGET_NAME_WIDTH - 1] + "…"
            budget = Text(f"budget {name} " if name else "budget ")
            # "≥": the budget counts a usage report not known yet (its figure is a lower bound)
            at_least = "≥" if getattr(h, "budget_partial", False) else ""
            budget.append(f"{at_least + fmt.pct(h.budget_utilization):>4}", style=fmt.usage_style(h.budget_utilization))
            out.append(Segment(3, budget))
        at_least = "≥" if getattr(h, "period_partial", False) else ""
        spend = Text(f"{at_least + fmt.count(h.requests_period):>6} req {at_least + fmt.money(h.cost_period):>6}")
        if getattr(h, "period_label", None):
            spend.append(f" {h.period_label}", style="dim")
        out.append(Segment(5, spend))
        out.append(Segment(7, Text(f"fallbacks {fmt.count(h.fallbacks_24h):>4}/24h")))
        out.append(Segment(6, Text(fmt.clock(h.refreshed_at, view.tz), style="dim")))
        busy = getattr(getattr(snapshot, "collector", None), "db_busy_since", None)
        if busy is not None:  # another process holds the write lock: collecting waits, nothing is lost
            out.append(Segment(0, Text(f"⚠ database busy since {fmt.clock(busy, view.tz)}", style="bold yellow")))
        collector = getattr(snapshot, "collector", None)
        if collector is not None and (not collector.alive or getattr(collector, "own_failure", None)):
            # Nothing judging (or this process failing to): said first, never "all quiet" (issue 18).
            out.append(
                Segment(0, Text(f"⚠ {getattr(collector, 'summary', '') or 'no collector'}", style="bold yellow"))
            )
    # The range decides what the range figures and detail screens cover, so it stays on screen.
    out.append(Segment(2, Text(f"range {time_range:<3}")))
    out.append(Segment(6, Text(f"⟳{fmt.interval(interval)}".ljust(6), style="dim")))
    if view.filter:
        out.append(Segment(0, Text(f"filter: {view.filter}", style="bold")))
    if error:
        out.append(Segment(0, Text(f"⚠ {error}", style="bold red")))
    return out


def alerts_text(by_severity: Mapping[Severity, int]) -> Text:
    text = Text("alerts ")
    parts = [(sev, by_severity.get(sev, 0)) for sev in MOST_SEVERE_FIRST]
    if not any(n for _, n in parts):
        text.append(f"{'none':<11}", style="green")
        return text
    for i, (sev, n) in enumerate(parts):
        glyph, _word, style = fmt.SEVERITY[sev]
        text.append(("" if i == 0 else " ") + f"{glyph}{n:<2}", style=style if n else "dim")
    return text


def header_text(
    snapshot: Snapshot | None,
    view: View,
    *,
    paused: bool,
    interval: float,
    time_range: str,
    error: str | None = None,
    width: int = 1000,
) -> Text:
    """The header line for `width` cells: the most important segments that fit, in display order."""

    def segments_for(narrow: bool) -> list[Segment]:
        return header_segments(
            snapshot, view, paused=paused, interval=interval, time_range=time_range, error=error, narrow=narrow
        )

    segments = segments_for(narrow=False)
    if sum(seg.text.cell_len + len(SEP) for seg in segments) > width:  # too wide: long names shortened
        segments = segments_for(narrow=True)
    keep: set[int] = set()
    used = 0
    for i in sorted(range(len(segments)), key=lambda i: segments[i].importance):
        need = segments[i].text.cell_len + (len(SEP) if keep else 0)
        if used + need > width and keep:
            continue
        keep.add(i)
        used += need
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    for i, seg in enumerate(segments):
        if i in keep:
            if text:
                text.append(SEP, style="dim")
            text.append_text(seg.text)
    return text


class HeaderLine(Static):
    """One line of headline numbers; it drops segments rather than wrap."""

    DEFAULT_CSS = """
    HeaderLine { height: 1; padding: 0 1; background: $panel; }
    """

    _state: tuple[Any, View, dict[str, Any]] | None = None
    _last: Text | None = None

    def fill(
        self,
        snapshot: Snapshot | None,
        view: View,
        *,
        paused: bool,
        interval: float,
        time_range: str,
        error: str | None = None,
    ) -> None:
        self._state = (
            snapshot,
            view,
            {"paused": paused, "interval": interval, "time_range": time_range, "error": error},
        )
        self.redraw()

    def redraw(self) -> None:
        if self._state is None:
            return
        snapshot, view, state = self._state
        width = max(20, self.size.width - 2) if self.size.width else 1000
        text = fmt.for_terminal(header_text(snapshot, view, width=width, **state))
        if text != self._last:  # an unchanged header costs no repaint
            self._last = text
            self.update(text)

    def on_resize(self, event: events.Resize) -> None:
        self.redraw()
