"""Which side of a migration a recorded model name is on: the old models, the new one, or neither."""

from __future__ import annotations

import fnmatch
import re
from typing import Literal

from llmpulse.core.migration.config import MigrationConfig

Side = Literal["old", "new"]

# Providers publish dated snapshots ("gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022") and aliases
# ("-latest"); traffic to those is traffic to the model the config names.
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def model_matches(model: str, pattern: str) -> bool:
    """Whether recorded `model` is the configured `pattern`.

    Exact, or the same name with a dated snapshot suffix, or a glob when the pattern has * ? [.
    A vendor prefix on the recorded name (OpenRouter's "openai/gpt-4o") is ignored unless the pattern
    has one too.
    """
    if "/" in model and "/" not in pattern:
        model = model.rsplit("/", 1)[1]
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(model, pattern)
    if model == pattern:
        return True
    return model.startswith(pattern + "-") and bool(_SNAPSHOT_SUFFIX.fullmatch(model[len(pattern) :]))


def model_side(model: str, cfg: MigrationConfig) -> Side | None:
    """ "new", "old" or None (traffic outside this migration)."""
    if model_matches(model, cfg.to_model):
        return "new"
    if any(model_matches(model, p) for p in cfg.from_models):
        return "old"
    return None
