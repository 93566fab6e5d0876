"""The four dashboard panels, one file each; every panel builds its table once and fills it per Snapshot."""

from tui.panels.alerts import AlertsPanel
from tui.panels.base import Panel, View
from tui.panels.costs import CostsPanel
from tui.panels.migration import MigrationPanel
from tui.panels.providers import ProvidersPanel

PANELS: tuple[type[Panel], ...] = (ProvidersPanel, CostsPanel, AlertsPanel, MigrationPanel)

__all__ = ["PANELS", "AlertsPanel", "CostsPanel", "MigrationPanel", "Panel", "ProvidersPanel", "View"]
