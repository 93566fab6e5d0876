"""Phase logic (pure): where a migration stands and which phases the measured share earns it now."""

from __future__ import annotations

from collections.abc import Sequence

from llmpulse.core.migration.config import Phase


def phase_index_of(phases: Sequence[Phase], name: str | None, fallback_index: int = 0) -> int:
    for i, p in enumerate(phases):
        if p.name == name:
            return i
    return max(0, min(fallback_index, len(phases) - 1))


def automatic_advances(
    phases: Sequence[Phase], current: int, share: float | None, entered_at: float, now: float, window: float
) -> list[int]:
    """The phase indexes the migration moves through now, in order (empty: it stays).

    It moves on when the measured share reaches the next phase's share. A next phase with the same
    share as the current one (full -> completed) needs that share held for a whole window since the
    current phase began, so "completed" means the old model really saw no traffic for a window.
    Phases only go forward.
    """
    if share is None:
        return []
    out: list[int] = []
    i = current
    while i + 1 < len(phases):
        nxt = phases[i + 1]
        if share + 1e-9 < nxt.share:
            break
        if nxt.share <= phases[i].share and (i != current or now - entered_at < window):
            break
        i += 1
        out.append(i)
    return out
