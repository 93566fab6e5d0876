"""Panel 1: every provider with its state (glyph + word), p95 latency and its trend, error rate, circuit,
rate-limit headroom and the time of the last check."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from llmpulse.tui import format as fmt
from llmpulse.tui.panels.base import Panel, View
from llmpulse.tui.table_sync import Row


def headroom(health: Any) -> float | None:
    rate_limit = health.rate_limit
    return rate_limit.headroom if rate_limit is not None else None


class ProvidersPanel(Panel):
    number = 1
    title = "Providers"
    columns = (
        ("name", "Provider"),
        ("status", "Status"),
        ("p95", "p95"),
        ("trend", "Latency"),
        ("errors", "Errors"),
        ("circuit", "Circuit"),
        ("headroom", "Room"),
        ("checked", "Checked"),
    )

    def rows(self, snapshot: Any, view: View) -> list[Row]:
        rows = []
        for h in snapshot.providers:
            if not fmt.matches(
                view.filter,
                h.provider_id,
                h.name,
                h.status,
                h.error_kind,
                h.circuit,
                "disabled" if not h.enabled else None,
            ):
                continue
            name_style = "" if h.configured and h.enabled else "dim"
            rows.append(
                (
                    h.provider_id,
                    (
                        Text(h.name, style=name_style),
                        fmt.status_text(h.status, h.enabled, h.configured),
                        Text(fmt.ms(h.p95_ms), justify="right"),
                        Text(fmt.sparkline(h.latency_series, 10), style="cyan"),
                        fmt.error_rate_text(h.error_rate, h.error_band),
                        fmt.circuit_text(h.circuit),
                        fmt.headroom_text(headroom(h)),
                        Text(fmt.age(view.now - h.last_checked_at) if h.last_checked_at else fmt.DASH, justify="right"),
                    ),
                )
            )
        return rows

    def subtitle(self, snapshot: Any, view: View) -> str:
        configured = [h for h in snapshot.providers if h.configured and h.enabled]
        healthy = sum(1 for h in configured if h.status == "healthy")
        return f"{healthy}/{len(configured)} healthy"
