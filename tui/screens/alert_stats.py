"""Alert statistics over the last 30 days (`S` on the dashboard): alerts by rule, severity and subject,
how fast people acknowledged and resolved them (median and p90), the noisiest rules, and the notices
sent and failed per channel — what a team tunes thresholds with. The same figures as
`llmpulse alerts stats --since 30d`."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from llmpulse.core.durations import format_duration
from llmpulse.tui import format as fmt
from llmpulse.tui.backend import AlertStats, Snapshot
from llmpulse.tui.header import HeaderLine
from llmpulse.tui.panels.base import View
from llmpulse.tui.screens.base import LiveScreen

PERIOD_S = 30 * 86400.0
TOP = 8  # rows per grouping; the CLI's --json has them all


def _duration(seconds: float | None) -> str:
    return fmt.DASH if seconds is None else format_duration(seconds)


def alert_stats_text(stats: AlertStats, view: View) -> Text:
    t = Text()
    t.append("Alert statistics ", style="bold")
    t.append(f"last 30 days ({fmt.day(stats.since, view.tz)} → {fmt.day(stats.until, view.tz)})  ")
    t.append(f"{fmt.count(stats.alerts)} {fmt.plural(stats.alerts, 'alert')} opened\n", style="bold")
    if not stats.alerts and not stats.deliveries:
        t.append("\nNo alert was opened in the last 30 days.\n", style="dim")
        return t
    t.append("\nTime to acknowledge  ", style="bold")
    ack = stats.time_to_ack
    t.append(f"median {_duration(ack.median_s)}  p90 {_duration(ack.p90_s)}  ({ack.count} acknowledged)\n")
    t.append("Time to resolve      ", style="bold")
    res = stats.time_to_resolve
    t.append(f"median {_duration(res.median_s)}  p90 {_duration(res.p90_s)}  ({res.count} resolved)\n")
    for title, groups in (
        ("Noisiest rules", stats.noisiest_rules),
        ("By rule", stats.by_rule),
        ("By severity", stats.by_severity),
        ("By subject", stats.by_subject),
    ):
        t.append(f"\n{title}\n", style="bold")
        t.append(f"  {'':32}{'alerts':>8}{'fired':>8}\n", style="dim")
        for g in groups[:TOP]:
            t.append(f"  {g.key[:31]:32}{g.alerts:>8,}{g.fired:>8,}\n")
        if len(groups) > TOP:
            t.append(f"  … {len(groups) - TOP} more (llmpulse alerts stats --json)\n", style="dim")
    t.append("\nNotices per channel\n", style="bold")
    if not stats.deliveries:
        t.append("  none sent\n", style="dim")
    else:
        t.append(f"  {'':24}{'sent':>8}{'failed':>8}{'held':>8}{'sending':>9}\n", style="dim")
        for d in stats.deliveries:
            t.append(f"  {d.channel[:23]:24}{d.sent:>8,}")
            t.append(f"{d.failed:>8,}", style="red" if d.failed else "")
            t.append(f"{d.held:>8,}{d.pending:>9,}\n")
    return t


class AlertStatsScreen(LiveScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="alertstats.back", tooltip="Back to the dashboard"),
    ]

    def compose(self) -> ComposeResult:
        yield HeaderLine()
        with VerticalScroll(id="alert-stats"):
            yield Static("Alert statistics: reading…", id="alert-stats-text")
        yield Footer()

    def on_mount(self) -> None:
        self.pulse.draw()

    def fill(self, snapshot: Snapshot, view: View) -> None:
        self.load(view)

    @work(group="alert-stats", exclusive=True, exit_on_error=False)
    async def load(self, view: View) -> None:
        try:
            stats = await self.pulse.backend.alert_stats(since=view.now - PERIOD_S, until=view.now)
        except Exception as exc:  # a locked or missing table: say so, keep the screen
            self.query_one("#alert-stats-text", Static).update(Text(f"alert statistics unavailable: {exc}"))
            return
        self.query_one("#alert-stats-text", Static).update(fmt.for_terminal(alert_stats_text(stats, view)))
