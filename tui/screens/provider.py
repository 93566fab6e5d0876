"""A provider in detail: latency chart, recent probes and errors, rate-limit headroom, balance, and the
switch to enable or disable it (a disabled provider is neither probed nor chosen by failover)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Static

from llmpulse.tui import format as fmt
from llmpulse.tui.backend import LatencyHistory, ProviderHealth, Snapshot
from llmpulse.tui.header import HeaderLine
from llmpulse.tui.panels.base import View
from llmpulse.tui.screens.base import LiveScreen
from llmpulse.tui.table_sync import sync_rows
from llmpulse.tui.widgets import PanelTable


def summary_text(h: ProviderHealth, view: View) -> Text:
    t = Text()
    t.append(f"{h.name} ", style="bold")
    t.append(f"({h.provider_id}{', local' if h.local else ''}, priority {h.priority})  ", style="dim")
    t.append_text(fmt.status_text(h.status, h.enabled, h.configured, setup_gap=h.setup_gap))
    if h.error_kind:
        t.append(f"  {h.error_kind}", style="yellow")
    t.append("\n")
    reason = getattr(h, "reason", None)
    if reason:
        t.append(f"{reason}\n", style="dim" if getattr(h, "stale", False) else "")
    # p50 and p95 come from the same calls; the label says whose (issue 18).
    source = getattr(h, "latency_source", None)
    exact = getattr(h, "p95_exact", True)  # False: the histogram's estimate, marked "≈"
    t.append(f"p50 {fmt.approx_ms(h.p50_ms, exact)}  p95 {fmt.approx_ms(h.p95_ms, exact)}")
    if h.latency_band:
        t.append(f" {h.latency_band}")
    t.append(f" ({source})  " if source else "  ", style="dim")
    t.append(f"success {fmt.pct(h.success_rate, 1)}  errors ")
    errors_of = getattr(h, "error_source", None)
    calls = "requests" if errors_of == "traffic" else "probes" if errors_of == "probes" else "samples"
    if h.error_rate is not None and not h.error_rate_judged:
        t.append(
            f"{fmt.pct(h.error_rate, 1)}: {h.errors} of {h.samples} {calls} failed, "
            f"too few to judge ({h.samples_needed} needed)\n",
            style="italic",
        )
    else:
        t.append_text(fmt.error_rate_text(h.error_rate, h.error_band))
        if h.error_band:
            t.append(f" {h.error_band}")
        t.append(f"  over {h.samples} {calls}\n")
    t.append("circuit ")
    t.append_text(fmt.circuit_text(h.circuit))
    t.append(
        f" ({h.consecutive_failures} {fmt.plural(h.consecutive_failures, 'failure')} in a row)  last check {fmt.ago(h.last_checked_at, view.now)}"
        f"  last success {fmt.ago(h.last_success_at, view.now)}\n"
    )
    if h.last_error:
        t.append("last error ", style="bold")
        t.append(f"{fmt.ago(h.last_error_at, view.now)}: {h.last_error}\n", style="red")
    return t


def limits_text(h: ProviderHealth) -> Text:
    t = Text()
    rl = h.rate_limit
    t.append("Rate limit  ", style="bold")
    if rl is None:
        t.append("no rate-limit headers seen\n", style="dim")
    else:
        t.append("headroom ")
        t.append_text(fmt.headroom_text(rl.headroom))
        if rl.requests_limit is not None:
            t.append(f"  requests {fmt.count(rl.requests_remaining)}/{fmt.count(rl.requests_limit)}")
        if rl.tokens_limit is not None:
            t.append(f"  tokens {fmt.count(rl.tokens_remaining)}/{fmt.count(rl.tokens_limit)}")
        if rl.reset_s is not None:
            t.append(f"  resets in {fmt.age(rl.reset_s)}")
        if rl.retry_after_s is not None:
            t.append(f"  retry after {fmt.age(rl.retry_after_s)}", style="yellow")
        t.append("\n")
    bal = h.balance
    t.append("Balance     ", style="bold")
    if bal is None:
        t.append("not reported by this provider\n", style="dim")
    else:
        cur = f" {bal.currency}" if bal.currency else ""
        parts = []
        if bal.amount is not None:
            parts.append(f"{bal.amount:,.2f}{cur} left")
        if bal.used is not None:
            parts.append(f"{bal.used:,.2f}{cur} used")
        if bal.limit is not None:
            parts.append(f"limit {bal.limit:,.2f}{cur}")
        t.append(("  ".join(parts) or "unknown") + f"  (from {bal.source})\n")
    return t


CHART_BUCKETS = 60  # time buckets across the range, before the chart knows its width
CHART_ROWS = 4
TABLE_ROWS = 50  # newest probes the table lists


def latency_chart(buckets: Sequence[float | None], rows: int) -> Text:
    """A bar chart `rows` lines tall, one column per bucket, scaled from zero to the highest bucket in
    eighths of a cell; a None bucket is a blank column (a gap), never a zero."""
    top = max((v for v in buckets if v is not None), default=0.0)
    levels = [None if v is None else max(1, round(v / top * rows * 8)) if top else 1 for v in buckets]
    lines = []
    for row in range(rows - 1, -1, -1):  # top line first
        line = []
        for level in levels:
            if level is None:
                line.append(" ")
            else:
                fill = min(8, max(0, level - row * 8))
                line.append(fmt.SPARK_CHARS[fill - 1] if fill else " ")
        lines.append("".join(line))
    return Text("\n".join(lines), style="cyan", no_wrap=True)


class ProviderScreen(LiveScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="provider.back", tooltip="Back to the dashboard"),
        Binding(
            "e",
            "toggle_enabled",
            "Enable/disable",
            id="provider.toggle",
            tooltip="Enable or disable this provider (probing and failover); asks first",
        ),
    ]

    def __init__(self, provider_id: str) -> None:
        super().__init__()
        self.provider_id = provider_id
        self.health: ProviderHealth | None = None
        self.probes = PanelTable(id="provider-probes")

    def compose(self) -> ComposeResult:
        yield HeaderLine()
        with Vertical(id="provider"):
            yield Static(id="provider-summary")
            with Horizontal(id="provider-chart-row"):
                yield Static("Latency", id="provider-chart-label")
                yield Static(id="provider-chart")
            yield Static(id="provider-limits")
            yield Static("Recent probes", id="provider-probes-title", classes="section")
            yield self.probes
        yield Footer()

    def on_mount(self) -> None:
        for key, label in (
            ("at", "Checked"),
            ("status", "Status"),
            ("latency", "Latency"),
            ("http", "HTTP"),
            ("error", "Error"),
        ):
            self.probes.add_column(label, key=key)
        self.pulse.draw()

    def fill(self, snapshot: Snapshot, view: View) -> None:
        health = next((h for h in snapshot.providers if h.provider_id == self.provider_id), None)
        if health is None:
            self.query_one("#provider-summary", Static).update(Text(f"{self.provider_id}: not in the snapshot"))
            return
        self.health = health
        summary = summary_text(health, view)
        # What the provider's own status page declares, beside what our probes measure.
        incident = getattr(snapshot, "incidents", {}).get(self.provider_id)
        declared = incident.headline() if incident is not None else ""
        if declared:
            summary.append(declared + "\n", style="yellow")
        self.query_one("#provider-summary", Static).update(fmt.for_terminal(summary))
        self.query_one("#provider-limits", Static).update(fmt.for_terminal(limits_text(health)))
        self.load_probes(view)

    def range_changed(self) -> None:
        self.pulse.draw()

    @work(group="provider-probes", exclusive=True, exit_on_error=False)
    async def load_probes(self, view: View) -> None:
        label, seconds = self.pulse.time_range
        probes = await self.pulse.backend.recent_probes(self.provider_id, since=view.now - seconds, limit=TABLE_ROWS)
        chart = self.query_one("#provider-chart", Static)
        width = chart.size.width or CHART_BUCKETS
        history = await self.pulse.backend.latency_history(self.provider_id, view.now - seconds, view.now, width)
        self.draw_chart(history, label)
        rows = []
        for p in probes[:TABLE_ROWS]:
            rows.append(
                (
                    f"{p.checked_at:.6f}",
                    (
                        Text(fmt.stamp(p.checked_at, view.tz)),
                        fmt.status_text(p.status),
                        Text(fmt.ms(p.latency_ms), justify="right"),
                        Text(str(p.http_status) if p.http_status is not None else fmt.DASH),
                        Text(p.error or p.error_kind or "", style="red" if p.error else ""),
                    ),
                )
            )
        sync_rows(self.probes, rows)
        if len(probes) >= TABLE_ROWS and history.samples > len(probes):
            # The table is cut at its newest rows: its count is not the range's; the chart's counts are.
            counts = f"latest {len(probes)} of {history.samples} probes, {history.failed} failed"
        else:
            failed = sum(1 for p in probes if p.status == "failed")
            counts = f"{len(probes)} {fmt.plural(len(probes), 'probe')}, {failed} failed"
        self.query_one("#provider-probes-title", Static).update(
            f"Recent probes, last {label}: {counts} (t changes the range)"
        )

    def draw_chart(self, history: LatencyHistory, label: str) -> None:
        """Mean latency per time bucket across the whole range, oldest on the left, bars from zero; a bucket
        in which no probe answered stays blank. The p95 beside it is of the same probes."""
        chart = self.query_one("#provider-chart", Static)
        chart.update(fmt.for_terminal(latency_chart(history.buckets, CHART_ROWS)))
        bucket = fmt.age((history.until - history.since) / max(1, len(history.buckets)))
        top = max((v for v in history.buckets if v is not None), default=None)
        caption = Text(f"Latency, last {label}\n", style="bold")
        caption.append(f"p95 {fmt.ms(history.p95_ms)}", style="bold")
        caption.append(" of minute means\n", style="dim")
        caption.append(f"top {fmt.ms(top)}, mean per {bucket}\n", style="dim")
        caption.append(
            f"{history.samples} {fmt.plural(history.samples, 'probe')}, {history.failed} failed; blank: no answer",
            style="dim",
        )
        self.query_one("#provider-chart-label", Static).update(fmt.for_terminal(caption))

    def action_toggle_enabled(self) -> None:
        if self.health is not None:
            self.pulse.ask_set_enabled(self.provider_id, self.health.name, not self.health.enabled)
