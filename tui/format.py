"""How numbers and states look on screen: glyph + word, bars, sparklines, ages, money.

Every state is a glyph AND a word, so the dashboard reads the same in a 16-colour terminal, under
NO_COLOR, or to someone who cannot tell red from green; colour only adds emphasis. Cells are rich
`Text` objects, never markup strings: provider error text may contain "[brackets]".

Without colour (NO_COLOR) the emphasis colour gave must survive: `for_terminal` turns red and yellow
into bold, and bold red (failed, critical, OPEN, a critical error rate) into bold reverse video, instead
of letting them turn into a dark grey on near-black. Every widget that draws these Texts passes them
through it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo
from functools import lru_cache

from rich.style import Style
from rich.text import Span, Text

from llmpulse.core.durations import format_duration
from llmpulse.core.health import MIN_PROBES

# "1 request" / "2 requests": the rule the CLI and core messages use, re-exported for panels and screens.
from llmpulse.core.vocabulary import plural as plural

# Status of a provider: (glyph, word, style).
STATUS = {
    "healthy": ("●", "healthy", "green"),
    "degraded": ("◐", "degraded", "yellow"),
    "failed": ("✖", "failed", "bold red"),
    "unknown": ("?", "unknown", "dim"),
    "disabled": ("○", "disabled", "dim"),
    "unconfigured": ("·", "not configured", "dim"),  # the word is the core's setup gap when it has one
}

# The health bands (issue 18 §2) as words; the short forms are for a narrow Providers panel and are
# explained on the help screen (BAND_LEGEND).
ERROR_BAND_SHORT = {"excellent": "exc", "good": "good", "concerning": "conc", "critical": "crit"}
LATENCY_BAND_SHORT = {"excellent": "exc", "good": "good", "acceptable": "acc", "slow": "slow"}
ERROR_BAND_STYLE = {"critical": "bold red", "concerning": "yellow"}
LATENCY_BAND_STYLE = {"acceptable": "yellow", "slow": "bold red"}
SOURCE_SHORT = {"probes": "p", "traffic": "t"}  # whose calls a p95 is over
BAND_LEGEND = (
    "Errors: exc excellent · good · conc concerning · crit critical\n"
    "p95: exc excellent · good · acc acceptable · slow; over p probes or t real traffic\n"
    f"1/3 n<{MIN_PROBES}: 1 of 3 calls failed, too few to judge ({MIN_PROBES} needed), so no band"
)

CIRCUIT = {
    "closed": ("closed", ""),
    "half_open": ("half-open", "yellow"),
    "open": ("OPEN", "bold red"),
}

SEVERITY = {
    "critical": ("‼", "critical", "bold red"),
    "warning": ("▲", "warning", "yellow"),
    "info": ("ℹ", "info", "cyan"),
}

RISK = {
    "on track": ("✓", "on track", "green"),
    "at risk": ("▲", "at risk", "yellow"),
    "late": ("✖", "late", "bold red"),
    "done": ("✓", "done", "dim green"),
}

_monochrome = False
LOUD = frozenset({"red", "bright_red", "magenta", "bright_magenta"})  # failed, critical, over budget
NOTABLE = frozenset({"yellow", "bright_yellow"})  # degraded, warning, near a limit


def set_monochrome(on: bool) -> None:
    """Draw emphasis without colour from now on (the app sets this from NO_COLOR when it starts)."""
    global _monochrome
    _monochrome = on


@lru_cache(256)
def monochrome_style(style: str | Style) -> Style:
    """The same emphasis without colour: bold red -> bold reverse, red/yellow -> bold, never dim."""
    st = Style.parse(style) if isinstance(style, str) else style
    name = st.color.name if st.color is not None else ""
    plain = Style(bold=st.bold, dim=st.dim, italic=st.italic, underline=st.underline, reverse=st.reverse)
    if name in LOUD:
        return plain + (Style(bold=True, reverse=True, dim=False) if st.bold else Style(bold=True, dim=False))
    if name in NOTABLE:
        return plain + Style(bold=True, dim=False)
    return plain


def for_terminal(text: Text) -> Text:
    """`text` as this terminal should draw it: unchanged in colour, re-emphasised under NO_COLOR."""
    if not _monochrome:
        return text
    text.style = monochrome_style(text.style) if text.style else text.style
    text.spans = [Span(sp.start, sp.end, monochrome_style(sp.style)) for sp in text.spans]
    return text


SPARK_CHARS = "▁▂▃▄▅▆▇█"
BAR_FULL, BAR_EMPTY = "█", "░"
BAR_PARTS = " ▏▎▍▌▋▊▉"
DASH = "—"


def status_key(status: str | None, enabled: bool = True, configured: bool = True) -> str:
    """Which STATUS entry a provider shows: disabled or keyless whatever its last probe said."""
    # Not configured here but judged by the collector that can see it: its verdict, not "no key".
    if enabled and not configured and status not in (None, "unknown"):
        return status
    return "disabled" if not enabled else "unconfigured" if not configured else (status or "unknown")


def status_text(
    status: str | None,
    enabled: bool = True,
    configured: bool = True,
    lasted: float | None = None,
    setup_gap: str | None = None,
    *,
    short: bool = False,
) -> Text:
    """A provider's state as glyph + word, and how long it has lasted when known ("✖ failed for 12m").
    The duration is coarse (minutes at best) so the cell changes once a minute, not once a second.
    An unconfigured provider says what it lacks (the core's `setup_gap`: "no key", "no base URL", or
    "not set up" for a local one that needs no key). `short` (a narrow table): "✖ failed 12m"."""
    key = status_key(status, enabled, configured)
    glyph, word, style = STATUS.get(key, ("?", key, ""))
    if key == "unconfigured" and setup_gap:
        word = setup_gap
    text = Text(f"{glyph} {word}", style=style)
    if lasted is not None and key in ("healthy", "degraded", "failed"):
        text.append(f"{' ' if short else ' for '}{coarse_age(lasted)}", style=style if key != "healthy" else "")
    return text


def coarse_age(seconds: float | None) -> str:
    """Elapsed time to the minute: <1m, 12m, 3h, 2d — it ticks at most once a minute."""
    if seconds is None:
        return DASH
    return "<1m" if seconds < 60 else age(seconds)


def circuit_text(circuit: str | None) -> Text:
    word, style = CIRCUIT.get(circuit or "closed", (circuit or DASH, ""))
    return Text(word, style=style)


def severity_text(severity: str) -> Text:
    glyph, word, style = SEVERITY.get(severity, ("·", severity, ""))
    return Text(f"{glyph} {word}", style=style)


def risk_text(risk: str | None) -> Text:
    if not risk:
        return Text(DASH)
    glyph, word, style = RISK.get(risk, ("·", risk, ""))
    return Text(f"{glyph} {word}", style=style)


def alert_state_words(state: str, silenced_until: float | None, escalated: bool, now: float) -> str:
    """firing / acked / silenced 45m / resolved, plus 'escalated' when it was escalated."""
    if state == "resolved":
        words = ["resolved"]
    elif silenced_until is not None and silenced_until > now:
        # The time left, rounded up to the minute: a 2h silence reads "2h", not the "1h" a floor would
        # give, and the cell changes once a minute, not every second.
        words = [f"silenced {format_duration(math.ceil((silenced_until - now) / 60) * 60)}"]
        if state == "acknowledged":
            words.insert(0, "acked")
    elif state == "acknowledged":
        words = ["acked"]
    else:
        words = ["firing"]
    if escalated and state != "resolved":
        words.append("escalated")
    return " ".join(words)


def alert_state_text(state: str, silenced_until: float | None, escalated: bool, now: float) -> Text:
    words = alert_state_words(state, silenced_until, escalated, now)
    if words.startswith("firing"):
        style = "bold red" if escalated else "red"
    elif words.startswith("resolved"):
        style = "dim green"
    else:
        style = "dim"
    return Text(words, style=style)


def common_scale(series: Iterable[Sequence[float] | None]) -> tuple[float, float] | None:
    """The (lowest, highest) over several series: one scale for sparklines drawn one above the other."""
    vals = [v for s in series for v in (s or []) if v is not None and not math.isnan(v)]
    return (min(vals), max(vals)) if vals else None


def sparkline(values: Sequence[float] | None, width: int = 10, scale: tuple[float, float] | None = None) -> str:
    """The last `width` values as block characters, scaled between `scale` (shared by the rows of a
    table) or else between their own min and max."""
    vals = [v for v in (values or []) if v is not None and not math.isnan(v)][-width:]
    if not vals:
        return ""
    lo, hi = scale if scale is not None else (min(vals), max(vals))
    if hi - lo < 1e-9:
        return SPARK_CHARS[0] * len(vals)
    top = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[round(min(max((v - lo) / (hi - lo), 0.0), 1.0) * top)] for v in vals)


def bar(fraction: float | None, width: int = 10) -> str:
    """A horizontal bar with eighth-cell resolution; values over 1 fill it (the % says how far over)."""
    if fraction is None or math.isnan(fraction):
        return BAR_EMPTY * width
    f = min(max(fraction, 0.0), 1.0)
    eighths = round(f * width * 8)
    full, part = divmod(eighths, 8)
    text = BAR_FULL * full
    if part and full < width:
        text += BAR_PARTS[part]
    return text + BAR_EMPTY * (width - len(text))


def usage_style(fraction: float | None) -> str:
    if fraction is None:
        return ""
    if fraction >= 1.0:
        return "bold red"
    if fraction >= 0.8:
        return "yellow"
    return "green"


def budget_bar(fraction: float | None, width: int = 10) -> Text:
    return Text(bar(fraction, width), style=usage_style(fraction))


def age(seconds: float | None) -> str:
    """Compact elapsed time: 42s, 5m, 3h, 2d."""
    if seconds is None:
        return DASH
    s = max(0.0, seconds)
    if s < 60:
        return f"{int(s)}s"
    if s < 3600:
        return f"{int(s // 60)}m"
    if s < 86400:
        return f"{int(s // 3600)}h"
    return f"{int(s // 86400)}d"


def ago(ts: float | None, now: float) -> str:
    return DASH if ts is None else f"{age(now - ts)} ago"


def ms(value: float | None) -> str:
    if value is None:
        return DASH
    if value < 1000:
        return f"{value:.0f}ms"
    return f"{value / 1000:.1f}s"


def pct(fraction: float | None, digits: int = 0) -> str:
    if fraction is None:
        return DASH
    return f"{fraction * 100:.{digits}f}%"


def money(usd: float | None) -> str:
    """$0.42, $12.30, $1,234, $12.3k — short enough for a table cell."""
    if usd is None:
        return DASH
    a = abs(usd)
    sign = "-" if usd < 0 else ""
    if a >= 100_000:
        return f"{sign}${a / 1000:.0f}k"
    if a >= 10_000:
        return f"{sign}${a / 1000:.1f}k"
    if a >= 100:
        return f"{sign}${a:,.0f}"
    return f"{sign}${a:.2f}"


def count(n: int | float | None) -> str:
    """1,234 / 12.3k / 4.5M."""
    if n is None:
        return DASH
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.1f}k"
    return f"{int(n):,}"


def day(ts: float | None, tz: tzinfo | None = None) -> str:
    """A date like 'Mar 14' in the budget's timezone (UTC unless given)."""
    if ts is None:
        return DASH
    return datetime.fromtimestamp(ts, tz or UTC).strftime("%b %d")


def clock(ts: float | None, tz: tzinfo | None = None) -> str:
    """HH:MM:SS of a timestamp; UTC unless a zone is given, so screenshots do not depend on the host."""
    if ts is None:
        return DASH
    return datetime.fromtimestamp(ts, tz or UTC).strftime("%H:%M:%S")


def stamp(ts: float | None, tz: tzinfo | None = None) -> str:
    if ts is None:
        return DASH
    return datetime.fromtimestamp(ts, tz or UTC).strftime("%Y-%m-%d %H:%M:%S")


def days_left(days: float | None) -> str:
    if days is None:
        return DASH
    if days < 0:
        return f"{-days:.0f}d over"
    if days < 1:
        return "<1d"
    return f"{days:.0f}d"


def headroom_text(fraction: float | None) -> Text:
    """Rate-limit headroom: how much of the window is left (low is bad, the opposite of a budget)."""
    if fraction is None:
        return Text(DASH)
    style = "bold red" if fraction < 0.1 else "yellow" if fraction < 0.3 else ""
    return Text(pct(fraction), style=style)


def error_rate_text(
    rate: float | None,
    band: str | None,
    *,
    short: bool | None = None,
    judged: bool = True,
    errors: int = 0,
    samples: int = 0,
    needed: int | None = None,
) -> Text:
    """An error rate, coloured by its band; with `short` given, the band's word follows (short or in
    full). A rate over too few calls is never banded: its counts and "too few" instead."""
    if rate is None:
        return Text(DASH)
    if not judged:
        counts = f"{errors}/{samples}"
        words = f"{counts} n<{needed}" if short else f"{pct(rate)} ({counts}) too few"
        return Text(words, style="italic")
    text = Text(pct(rate, 1) if short is None or rate < 0.1 else pct(rate), style=ERROR_BAND_STYLE.get(band or "", ""))
    if short is not None and band:
        text.append(" " + (ERROR_BAND_SHORT.get(band, band) if short else band))
    return text


def approx_ms(value: float | None, exact: bool = True) -> str:
    """A latency; one that is an estimate (the roll-ups' histogram, not the exact nearest rank) says so
    with "≈" before it, never passed off as exact."""
    return ms(value) if exact or value is None else f"≈{ms(value)}"


def p95_text(p95_ms: float | None, band: str | None, source: str | None, *, short: bool, exact: bool = True) -> Text:
    """p95 with its band's word and whose calls it is over: "1.4s slow traffic", short "1.4s slow t";
    an estimate "≈1.4s slow traffic"."""
    if p95_ms is None:
        return Text(DASH, justify="right")
    # The figure padded to its widest ("999ms", "12.3s") so the words after it line up row to row.
    text = Text(f"{approx_ms(p95_ms, exact):>5}", style=LATENCY_BAND_STYLE.get(band or "", ""))
    if band:
        text.append(" " + (LATENCY_BAND_SHORT.get(band, band) if short else band))
    if source:
        text.append(" " + (SOURCE_SHORT.get(source, source) if short else source))
    return text


def matches(needle: str, *haystack: object) -> bool:
    """The `/` filter: case-insensitive substring over the row's words; an empty filter keeps all."""
    if not needle:
        return True
    n = needle.lower()
    return any(n in str(h).lower() for h in haystack if h is not None)


def join_nonempty(parts: Iterable[str], sep: str = "  ") -> str:
    return sep.join(p for p in parts if p)


def interval(seconds: float) -> str:
    """A refresh interval: 500ms, 1s, 30s, 1m."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    return f"{seconds / 60:g}m"
