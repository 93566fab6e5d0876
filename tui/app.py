"""The llmpulse dashboard: a Textual app that shows what the core produces and sends decisions back.

Data flows one way. A `poll` worker asks the backend for a Snapshot, posts it as a message and sleeps
for the refresh interval; the handler draws it. The next poll starts only after the previous finished,
so a slow database or provider never piles polls up. The collector (probes, roll-ups, rules,
notifications) runs as its own worker. Quitting cancels the workers without waiting on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import threading
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, tzinfo
from typing import Any

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.widgets import Input

from llmpulse.core.clock import SYSTEM_CLOCK, Clock
from llmpulse.core.config import Context
from llmpulse.core.store import close_all_stores
from llmpulse.tui import format as fmt
from llmpulse.tui.backend import Alert, Backend, Snapshot
from llmpulse.tui.hangup import HangupGuard
from llmpulse.tui.messages import SnapshotFailed, SnapshotReady
from llmpulse.tui.panels import Panel, View
from llmpulse.tui.screens.alert import AlertScreen
from llmpulse.tui.screens.alert_stats import AlertStatsScreen
from llmpulse.tui.screens.base import LiveScreen
from llmpulse.tui.screens.confirm import ConfirmScreen
from llmpulse.tui.screens.costs import CostsScreen
from llmpulse.tui.screens.dashboard import DashboardScreen
from llmpulse.tui.screens.help import HelpScreen
from llmpulse.tui.screens.migration import MigrationScreen
from llmpulse.tui.screens.provider import ProviderScreen
from llmpulse.tui.screens.silence import SilenceScreen

# Work the app runs beside the dashboard until told to stop (the demo's live traffic).
Background = Callable[[asyncio.Event], Awaitable[None]]

SIXTEEN_COLOUR_THEME = "ansi-dark"  # Textual's theme in ANSI colours: error red, warning yellow, success green
REFRESH_STEPS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
TIME_RANGES: tuple[tuple[str, float], ...] = (
    ("1h", 3600.0),
    ("24h", 86400.0),
    ("7d", 7 * 86400.0),
    ("30d", 30 * 86400.0),
)


# The app's keys that act on alerts, providers or the panels' rows: nothing for them on the welcome.
WELCOME_IDLE_ACTIONS = frozenset({"ack", "silence", "resolve", "unsilence", "probe_now", "toggle_pause"})
ALERT_ACTIONS = frozenset({"ack", "silence", "resolve", "unsilence"})


class PulseApp(App[int]):
    """Live dashboard of provider health, cost vs budget, alerts and migrations."""

    TITLE = "llmpulse"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("a", "ack", "Ack", id="alert.ack", tooltip="Acknowledge the selected alert"),
        Binding("s", "silence", "Silence", id="alert.silence", tooltip="Silence the selected alert for a while"),
        Binding("r", "resolve", "Resolve", id="alert.resolve", tooltip="Resolve the selected alert"),
        Binding(
            "u", "unsilence", "Unsilence", show=False, id="alert.unsilence", tooltip="End the selected alert's silence"
        ),
        Binding("p", "probe_now", "Probe", id="app.probe", tooltip="Probe providers now"),
        Binding(
            "space",
            "toggle_pause",
            "Pause",
            show=False,  # in the help: at 80 columns the footer keeps room for help and quit
            id="app.pause",
            tooltip="Freeze the display (collection goes on); again to resume",
        ),
        Binding(
            "plus,equals_sign",
            "faster",
            "Faster",
            show=False,
            key_display="+",
            id="app.faster",
            tooltip="Refresh more often",
        ),
        Binding(
            "minus", "slower", "Slower", show=False, key_display="-", id="app.slower", tooltip="Refresh less often"
        ),
        Binding(
            "t", "cycle_range", "Range", show=False, id="app.range", tooltip="Cycle the time range: 1h, 24h, 7d, 30d"
        ),
        Binding(
            "ctrl+r",
            "reload_config",
            "Reload config",
            show=False,
            key_display="ctrl+r",
            id="app.reload",
            tooltip="Load the config file again (thresholds, budgets, rules, channels, providers); "
            "a broken one is refused and the running config stays",
        ),
        Binding("question_mark,f1", "help", "Help", key_display="?", id="app.help", tooltip="All keys"),
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Quit now, even while a provider hangs"),
        # As in htop and btop; Textual's own ctrl+c only says to press ctrl+q.
        Binding(
            "ctrl+c",
            "quit",
            "Quit",
            show=False,
            priority=True,
            key_display="ctrl+c",
            id="app.interrupt",
            tooltip="Quit, as q does",
        ),
    ]

    paused: reactive[bool] = reactive(False)
    """The display is frozen: snapshots keep coming (and the collector runs) but nothing is redrawn."""
    refresh_interval: reactive[float] = reactive(1.0)
    """Seconds between snapshots."""
    range_index: reactive[int] = reactive(1)
    """Index into TIME_RANGES: the window of the costs screen, provider history and the range figures."""
    filter_text: reactive[str] = reactive("")
    """The `/` filter, applied to every panel."""

    def __init__(
        self,
        backend: Backend,
        *,
        clock: Clock = SYSTEM_CLOCK,
        tz: tzinfo | None = None,
        actor: str | None = None,
        refresh: float = 1.0,
        collect: bool = True,
        watch_terminal: bool = True,
        background: Background | None = None,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.background = background
        self.backend = backend
        self.clock = clock
        self.tz = tz if tz is not None else datetime.now().astimezone().tzinfo
        self.actor = actor or _default_actor()
        self.collect = collect
        self.watch_terminal = watch_terminal
        self.latest: Snapshot | None = None
        self.last_error: str | None = None
        self.pending_draw = False
        self.polls = 0
        self.on_exit = on_exit
        self.hangup = HangupGuard(
            self, stop_now=self._stop_for_hangup, leave=self._close_for_hangup, last_words=on_exit
        )
        self._wake = asyncio.Event()
        self._stop_collector = asyncio.Event()
        self.set_reactive(PulseApp.refresh_interval, refresh)
        # Without colour, importance is drawn bold or reverse (see format.for_terminal).
        fmt.set_monochrome(self.no_color)
        if self.console.color_system == "standard" and not self.no_color:
            # 16 colours (TERM=linux, a serial console): the terminal's own palette, so red is red,
            # yellow yellow and green green; truecolour themes land on the nearest of 16, where
            # orange and amber turn red and red turns magenta. Not under NO_COLOR: the monochrome
            # filter cannot see how light an ANSI palette colour is and draws it all black on black.
            self.theme = SIXTEEN_COLOUR_THEME

    # -- screens ------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """On the first run's welcome there is no alert, row or provider to act on: the keys for them
        leave the footer (and do nothing) until a provider is configured."""
        welcoming = self.screen is self.screen_stack[0] and self.dashboard.welcoming
        if welcoming and action in WELCOME_IDLE_ACTIONS:
            return False
        # An alert can be selected only on the dashboard (its Alerts panel) and on an alert's screen:
        # elsewhere (help, costs, a provider, statistics) a/s/r/u act on nothing, so they leave the footer.
        return not (action in ALERT_ACTIONS and not isinstance(self.screen, (DashboardScreen, AlertScreen)))

    def get_default_screen(self) -> Screen[Any]:
        return DashboardScreen()

    @property
    def dashboard(self) -> DashboardScreen:
        return self.get_screen_stack_base()

    def get_screen_stack_base(self) -> DashboardScreen:
        return self.screen_stack[0]  # type: ignore[return-value]

    @property
    def time_range(self) -> tuple[str, float]:
        return TIME_RANGES[self.range_index]

    def view(self) -> View:
        return View(now=self.clock.now(), filter=self.filter_text, tz=self.tz)

    # -- lifecycle ----------------------------------------------------------------------------------
    async def on_mount(self) -> None:
        self.draw_header()
        self.poll_loop()
        if self.collect:
            self.collector_loop()
        if self.background is not None:
            self.background_loop()
        if self.watch_terminal:
            self.hangup.install()

    async def on_unmount(self) -> None:
        self._stop_collector.set()
        # Workers are already cancelled; closing only waits for the database, never the network. Each
        # step has its own deadline: a backend close cut short must not skip the stores' own close, or
        # a connection's worker thread outlives the app and the process never exits.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.backend.close(), timeout=1.0)
        with contextlib.suppress(Exception):
            # ...and the connections cancelled workers (collector, demo traffic) had open.
            await close_all_stores(timeout=1.0)

    @work(group="poll", exclusive=True, exit_on_error=False)
    async def poll_loop(self) -> None:
        """Build a snapshot, post it, sleep; the next one starts only after this one finished."""
        while True:
            if not self.paused or self.latest is None:
                try:
                    snapshot = await self.backend.snapshot()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # keep the last good picture and say why
                    self.post_message(SnapshotFailed(f"{type(exc).__name__}: {exc}"))
                else:
                    self.post_message(SnapshotReady(snapshot))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.refresh_interval)
            except TimeoutError:
                pass

    @work(group="collector", exclusive=True, exit_on_error=False)
    async def collector_loop(self) -> None:
        """Probes, roll-ups, rules and notifications, when this process holds the collector lease."""
        try:
            await self.backend.run_collector(self._stop_collector, on_round=self.refresh_now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.last_error = f"collector stopped: {type(exc).__name__}: {exc}"
            self.draw_header()

    @work(group="background", exclusive=True, exit_on_error=False)
    async def background_loop(self) -> None:
        """Work the caller asked to run alongside the dashboard (the demo's traffic)."""
        if self.background is None:
            return
        try:
            await self.background(self._stop_collector)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.last_error = f"background stopped: {type(exc).__name__}: {exc}"
            self.draw_header()

    def refresh_now(self) -> None:
        """Ask for a snapshot at once (after an action or a collector round)."""
        self._wake.set()

    # -- drawing ------------------------------------------------------------------------------------
    @on(SnapshotReady)
    def on_snapshot(self, message: SnapshotReady) -> None:
        self.latest = message.snapshot
        self.last_error = None
        self.polls += 1
        self.draw()

    @on(SnapshotFailed)
    def on_snapshot_failed(self, message: SnapshotFailed) -> None:
        self.last_error = message.error
        self.draw_header()

    def can_draw(self) -> bool:
        return not self.paused and not isinstance(self.screen, ModalScreen)

    def draw(self) -> None:
        """Draw the latest snapshot on the visible screen, unless paused or a modal is open."""
        if self.latest is None or not self.screen_stack:  # a snapshot that arrives while the app shuts down
            return
        if not self.can_draw():
            self.pending_draw = True
            return
        self.pending_draw = False
        view = self.view()
        with self.batch_update():
            self.draw_header(view)
            screen = self.screen
            # A screen just pushed is current before its widgets are composed: a snapshot arriving then
            # would query widgets that are not there yet. It draws once resumed (LiveScreen), after its mount.
            if (isinstance(screen, DashboardScreen) or hasattr(screen, "fill")) and screen.is_mounted:
                screen.fill(self.latest, view)

    def draw_header(self, view: View | None = None) -> None:
        if not self.screen_stack:  # a message that arrives while the app shuts down
            return
        view = view or self.view()
        screens = {id(self.dashboard): self.dashboard, id(self.screen): self.screen}
        for screen in screens.values():
            if isinstance(screen, LiveScreen):
                screen.fill_header(
                    self.latest,
                    view,
                    paused=self.paused,
                    interval=self.refresh_interval,
                    time_range=self.time_range[0],
                    error=self.last_error,
                )

    def watch_paused(self, paused: bool) -> None:
        if not self.is_running:  # App.is_mounted is a method (of a widget), always truthy
            return
        self.draw_header()
        if not paused:
            self.draw()
            self.refresh_now()

    def watch_refresh_interval(self) -> None:
        if self.is_running:
            self.draw_header()
            self.refresh_now()

    def watch_range_index(self) -> None:
        if self.is_running:
            self.draw_header()
            screen = self.screen
            if hasattr(screen, "range_changed"):
                screen.range_changed()

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.draw()
        if self.paused:  # a filter is the user's own action: show it even while paused
            view = self.view()
            self.dashboard.fill(self.latest, view) if self.latest is not None else None
            self.draw_header(view)

    # -- detail screens -----------------------------------------------------------------------------
    @on(Panel.Open)
    def open_detail(self, message: Panel.Open) -> None:
        number = message.panel.number
        if number == 1:
            self.push_screen(ProviderScreen(message.key))
        elif number == 2:
            self.push_screen(CostsScreen())
        elif number == 3:
            self.push_screen(AlertScreen(int(message.key)))
        elif number == 4:
            self.push_screen(MigrationScreen(message.key))

    # -- alert actions ------------------------------------------------------------------------------
    def selected_alert_id(self) -> int | None:
        screen = self.screen
        if hasattr(screen, "selected_alert_id"):
            selected: int | None = screen.selected_alert_id()
            return selected
        return None

    def _alert_or_say(self) -> int | None:
        """The alert the user is looking at: the Alerts panel's row under the cursor while that panel has
        the focus, or the alert of an alert's screen. Anywhere else a key must not act on an alert the
        user cannot see."""
        alert_id = self.selected_alert_id()
        if alert_id is None:
            self.notify("select an alert first (3)", severity="warning", markup=False)
        return alert_id

    def action_ack(self) -> None:
        alert_id = self._alert_or_say()
        if alert_id is not None:
            self.run_alert_action("acknowledged", self.backend.ack(alert_id, self.actor))

    def action_resolve(self) -> None:
        alert_id = self._alert_or_say()
        if alert_id is not None:
            self.run_alert_action("resolved", self.backend.resolve(alert_id, self.actor))

    def action_unsilence(self) -> None:
        alert_id = self._alert_or_say()
        if alert_id is not None:
            self.run_alert_action("unsilenced", self.backend.unsilence(alert_id, self.actor))

    def action_silence(self) -> None:
        alert_id = self._alert_or_say()
        if alert_id is None:
            return

        def chosen(seconds: float | None) -> None:
            if seconds:
                self.run_alert_action("silenced", self.backend.silence(alert_id, seconds, self.actor))

        self.push_screen(SilenceScreen(alert_id), chosen)

    @work(group="actions", exit_on_error=False)
    async def run_alert_action(self, done: str, call: Awaitable[Alert | None]) -> None:
        """Carry out the decision, patch the row at once, then refresh everything."""
        try:
            alert = await call
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # AlertStateError and friends: one clear line
            self.notify(str(exc), severity="error", markup=False)
            return
        if alert is not None:  # None: gone meanwhile; the next snapshot shows what is there
            self.apply_alert(alert)
            self.notify(f"Alert #{alert.id} {done}: {alert.subject}", markup=False)
        self.refresh_now()

    def apply_alert(self, alert: Alert) -> None:
        """Show an alert's new state without waiting for the next snapshot."""
        snapshot = self.latest
        if snapshot is None:
            return
        alerts = [a for a in snapshot.alerts if a.id != alert.id]
        if alert.state != "resolved":
            alerts.append(alert)
        self.latest = self.backend.with_alerts(snapshot, alerts)
        # Only the alerts changed: redraw their panel, not every panel (hundreds of provider rows would
        # stand between the key and the row saying "acked"); even while paused, since the user acted.
        # The refresh that follows brings everything else.
        if isinstance(self.screen, DashboardScreen) or self.paused:
            self.dashboard.alerts_panel.fill(self.latest, self.view())
        else:
            self.draw()
        screen = self.screen
        if hasattr(screen, "alert_changed"):
            screen.alert_changed(alert)

    # -- other actions ------------------------------------------------------------------------------
    def action_probe_now(self) -> None:
        provider_ids = None
        screen = self.screen
        if isinstance(screen, ProviderScreen):
            provider_ids = [screen.provider_id]
        elif isinstance(screen, DashboardScreen) and screen.focused_panel() is screen.panels[1]:
            key = screen.panels[1].selected
            provider_ids = [key] if key else None
        self.probe(provider_ids)

    @work(group="probe", exclusive=True, exit_on_error=False)
    async def probe(self, provider_ids: list[str] | None) -> None:
        which = ", ".join(provider_ids) if provider_ids else "all providers"
        self.notify(f"Probing {which}…", markup=False, timeout=2)
        try:
            results = await self.backend.probe_now(provider_ids)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.notify(f"Probe failed: {exc}", severity="error", markup=False)
            return
        summary = ", ".join(f"{r.provider_id} {r.status}" for r in results) or "nothing to probe"
        self.notify(f"Probed: {summary}", markup=False)
        self.refresh_now()

    def ask_set_enabled(self, provider_id: str, name: str, enabled: bool) -> None:
        """Disabling stops probing and failover to a provider: ask before doing it (and before enabling)."""
        verb = "Enable" if enabled else "Disable"
        effect = (
            "probing and failover resume"
            if enabled
            else "no probes, failover skips it and its open alerts close, not as recovered, until enabled again"
        )
        question = f"{verb} {name}? ({effect})"

        def answered(yes: bool | None) -> None:
            if yes:
                self.set_enabled(provider_id, enabled)

        self.push_screen(ConfirmScreen(question, verb), answered)

    @work(group="enable", exit_on_error=False)
    async def set_enabled(self, provider_id: str, enabled: bool) -> None:
        try:
            await self.backend.set_enabled(provider_id, enabled, self.actor)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.notify(f"{provider_id} {'enabled' if enabled else 'disabled'}", markup=False)
        self.refresh_now()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused

    def action_faster(self) -> None:
        smaller = [s for s in REFRESH_STEPS if s < self.refresh_interval - 1e-9]
        if smaller:
            self.refresh_interval = smaller[-1]

    def action_slower(self) -> None:
        larger = [s for s in REFRESH_STEPS if s > self.refresh_interval + 1e-9]
        if larger:
            self.refresh_interval = larger[0]

    def action_cycle_range(self) -> None:
        self.range_index = (self.range_index + 1) % len(TIME_RANGES)
        label = self.time_range[0]
        self.notify(f"Time range {label}: costs, provider history and latency charts", timeout=2, markup=False)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_costs(self) -> None:
        self.push_screen(CostsScreen())

    def action_alert_stats(self) -> None:
        if not isinstance(self.screen, AlertStatsScreen):
            self.push_screen(AlertStatsScreen())

    @work(group="reload", exclusive=True, exit_on_error=False)
    async def action_reload_config(self) -> None:
        """ctrl+r: the config file again, as SIGHUP does for the daemon; one line says what happened."""
        try:
            result = await self.backend.reload_config()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.notify(f"config reload failed: {type(exc).__name__}: {exc}", severity="error", markup=False)
            return
        self.notify(result.message, severity="information" if result.applied else "error", markup=False)
        if result.applied:
            self.refresh_now()

    async def action_quit(self) -> None:
        self._stop_collector.set()
        self.workers.cancel_all()
        self.exit(0)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p): everything the keys do, and what has no key."""
        yield SystemCommand("Costs by group", "Costs by provider, model, department, agent or user", self.action_costs)
        yield SystemCommand(
            "Alert statistics", "Last 30 days: by rule, time to ack/resolve, deliveries", self.action_alert_stats
        )
        yield SystemCommand("Reload config", "Load the config file again", self.action_reload_config)
        yield SystemCommand("Probe all providers now", "Run a probe round at once", lambda: self.probe(None))
        yield SystemCommand("Pause / resume", "Freeze or unfreeze the display", self.action_toggle_pause)
        yield SystemCommand("Refresh faster", "Shorter refresh interval", self.action_faster)
        yield SystemCommand("Refresh slower", "Longer refresh interval", self.action_slower)
        yield SystemCommand("Next time range", "1h → 24h → 7d → 30d", self.action_cycle_range)
        yield SystemCommand("Clear filter", "Show every row again", self.dashboard.action_clear_filter)
        if self.latest is not None:
            for h in self.latest.providers:
                yield SystemCommand(
                    f"Provider: {h.name}",
                    f"Details of {h.provider_id}",
                    lambda pid=h.provider_id: self.push_screen(ProviderScreen(pid)),
                )
                word = "Disable" if h.enabled else "Enable"
                yield SystemCommand(
                    f"{word} {h.name}",
                    f"{word} probing and failover to {h.provider_id}",
                    lambda pid=h.provider_id, name=h.name, on=not h.enabled: self.ask_set_enabled(pid, name, on),
                    discover=False,
                )
        yield SystemCommand("Help", "All keys", self.action_help)
        yield from super().get_system_commands(screen)

    # -- the terminal going away (llmpulse.tui.hangup) ------------------------------------------------
    def _stop_for_hangup(self) -> None:
        self._stop_collector.set()
        self.workers.cancel_all()

    async def _close_for_hangup(self) -> None:
        await asyncio.wait_for(self.backend.close(), timeout=1.0)
        await close_all_stores(timeout=1.0)
        if self.on_exit is not None:
            self.on_exit()


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "tui"


def run_dashboard(
    ctx: Context,
    *,
    clock: Clock = SYSTEM_CLOCK,
    refresh: float = 1.0,
    collect: bool = True,
    background: Background | None = None,
    on_exit: Callable[[], None] | None = None,
    reload_context: Callable[[], Context] | None = None,
) -> int:
    """Open the dashboard on `ctx`'s database and block until the user quits; returns the exit code.

    `background`, if given, is an async callable taking a stop `asyncio.Event`; it runs as a worker
    inside the app's event loop (the demo feeds its live traffic this way) and is cancelled on quit.
    `on_exit` runs when the terminal goes away, even if the process must be ended without returning
    from here (the demo removes its temporary database with it).
    `reload_context` loads the config again for ctrl+r (None: nothing to reload).
    """
    from llmpulse.tui.core_backend import CoreBackend

    _quiet_late_database_answers()
    app = PulseApp(
        CoreBackend(ctx, clock=clock, reload_context=reload_context),
        clock=clock,
        refresh=refresh,
        collect=collect,
        background=background,
        on_exit=on_exit,
    )
    result = app.run()
    return int(result or 0)


def _quiet_late_database_answers() -> None:
    """A database job that finishes after the app's event loop closed (a read cut off by quitting) can
    no longer hand back its answer, and aiosqlite's worker thread then prints "Event loop is closed"
    over the user's shell. Nothing is lost — the job ran; only its answer had no one waiting — so that
    one exception of those threads is dropped; every other thread exception is reported as usual."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        late = args.exc_type is RuntimeError and "Event loop is closed" in str(args.exc_value)
        # Python names a thread after its target ("Thread-7 (_connection_worker_thread)").
        if late and args.thread is not None and "_connection_worker_thread" in args.thread.name:
            return
        previous(args)

    threading.excepthook = hook
