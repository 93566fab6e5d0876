"""The four dashboard panels, one file each; every panel builds its table once and fills it per Snapshot."""

from typing import Any

from llmpulse.tui.panels.alerts import AlertsPanel
from llmpulse.tui.panels.base import Panel, View
from llmpulse.tui.panels.costs import CostsPanel
from llmpulse.tui.panels.migration import MigrationPanel
from llmpulse.tui.panels.providers import ProvidersPanel

PANELS: tuple[type[Panel[Any]], ...] = (ProvidersPanel, CostsPanel, AlertsPanel, MigrationPanel)

__all__ = ["PANELS", "AlertsPanel", "CostsPanel", "MigrationPanel", "Panel", "ProvidersPanel", "View"]
