"""Provides MainScreen: queue, GPU, disk, log and progress panels, and the keys that act on runs."""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from dialsum_tui.manager.snapshot import BoardSnapshot, RunSnapshot
from dialsum_tui.widgets.disk_panel import DiskPanel
from dialsum_tui.widgets.gpu_panel import GpuPanel
from dialsum_tui.widgets.log_view import LogView
from dialsum_tui.widgets.progress_panel import ProgressPanel
from dialsum_tui.widgets.queue_table import QueueTable, render_detail
from dialsum_tui.widgets.status_line import StatusLine

# The keys of issue 5. They live on this screen (not the app) so that dialogs never trigger them;
# each one calls an ``app.`` action, because the app owns the manager.
KEYS: list[Binding] = [
    Binding("a", "app.add_run", "Add"),
    Binding("t", "app.retrain", "Retrain"),
    Binding("i", "app.reinfer", "Re-infer"),
    Binding("e", "app.reevaluate", "Re-eval"),
    Binding("R", "app.resume_run", "Resume"),
    Binding("T", "app.retry_changed", "Retry…"),
    Binding("x", "app.cancel_run", "Cancel"),
    Binding("space", "app.toggle_pause", "Pause"),
    Binding("ctrl+up", "app.move(-1)", "Move up"),
    Binding("ctrl+down", "app.move(1)", "Move down"),
    Binding("K", "app.kill_leftovers", "Kill leftovers"),
    Binding("p", "app.prune", "Prune"),
    Binding("r", "app.results", "Results"),
    Binding("m", "app.toggle_mark", "Mark"),
    Binding("c", "app.compare", "Compare"),
    Binding("s", "app.samples", "Samples"),
    Binding("h", "app.handoff", "Hand-off"),
    Binding("f", "app.filter_log", "Errors"),
    Binding("w", "app.wrap_log", "Wrap"),
    Binding("v", "app.next_panel", "Panel"),
    Binding("question_mark", "app.help", "Help"),
    Binding("q", "app.quit_app", "Quit"),
]

# Longer descriptions for the help screen and the command palette.
KEY_HELP: dict[str, str] = {
    "app.add_run": "add a run from a config under configs/",
    "app.retrain": "retrain the selected run's config (new run: train → infer → evaluate)",
    "app.reinfer": "re-infer from the selected run's final_model (new run)",
    "app.reevaluate": "re-evaluate the selected run's dev predictions (new run)",
    "app.resume_run": "resume the selected stopped run from its last complete checkpoint (new run; shows the plan first)",
    "app.retry_changed": "retry the selected run with one config key changed (key=value; shows the diff first)",
    "app.cancel_run": "cancel the selected run (asks first)",
    "app.toggle_pause": "pause or resume the queue (running runs go on)",
    "app.move(-1)": "move the selected queued run up",
    "app.move(1)": "move the selected queued run down",
    "app.kill_leftovers": "kill our finished runs' processes still holding a GPU (asks first, names them)",
    "app.prune": "prune old checkpoints and caches (asks first, shows sizes)",
    "app.results": "the results table (Model | ROUGE | 상태), m exports Markdown",
    "app.toggle_mark": "mark or unmark the selected run (● in the queue) for compare",
    "app.compare": "compare the marked runs: loss and ROUGE curves, metrics, config keys that differ",
    "app.samples": "per-sample dev insights of the selected run (beside the other marked run, if one)",
    "app.handoff": "write the hand-off note (HANDOFF.md in the workspace)",
    "app.filter_log": "log: toggle errors only (tracebacks, OOM, failures; warnings are not errors)",
    "app.wrap_log": "log: wrap long lines, or keep them whole and scroll sideways (← →)",
    "app.next_panel": "small terminals (under 60×20): show the next panel (queue → log → progress → GPU & disk)",
    "app.help": "this help",
    "app.quit_app": "quit the app; runs keep going in the detached worker",
}


# Which keys the footer shows at each width (the rest are in help, ?, and the palette, ctrl+p):
# the footer is one line, and a key cut in half reads as a stray character ("paletteM").
FOOTER_KEYS: dict[str, tuple[str, ...]] = {
    "-tiny": ("app.next_panel", "app.add_run", "app.toggle_pause", "app.help", "app.quit_app"),
    "-narrow": ("app.add_run", "app.cancel_run", "app.toggle_pause", "app.results", "app.filter_log",
                "app.help", "app.quit_app"),
    "-medium": ("app.add_run", "app.retrain", "app.reinfer", "app.cancel_run", "app.toggle_pause", "app.results",
                "app.toggle_mark", "app.compare", "app.filter_log", "app.wrap_log", "app.help", "app.quit_app"),
    "-wide": ("app.add_run", "app.retrain", "app.reinfer", "app.reevaluate", "app.cancel_run", "app.toggle_pause",
              "app.results", "app.toggle_mark", "app.compare", "app.samples", "app.handoff", "app.filter_log",
              "app.wrap_log", "app.help", "app.quit_app"),
}
# In one-panel mode the panel shown, in the order v steps through them.
PANELS = ("queue", "log", "progress", "machine")
SINGLE_BELOW = (60, 20)  # (columns, rows): smaller terminals show one panel at a time


def key_label(binding: Binding) -> str:
    """Return how a key is written in the help: ``ctrl+up``, ``space``, ``?``."""
    return {"question_mark": "?"}.get(binding.key, binding.key)


class MainScreen(Screen[None]):
    """The dashboard. The app hands it snapshots (``show_board``, ``show_run``); it posts nothing but key actions.

    Layout: the queue across the whole width (with the selected run's detail line under it); below
    it the log, and a column of GPU, disk and progress. Width classes (``-tiny`` … ``-wide``) size the right column and pick the
    footer's keys; under :data:`SINGLE_BELOW` the ``-single`` class shows one panel at a time (``v``).
    """

    BINDINGS = KEYS
    HORIZONTAL_BREAKPOINTS = [(0, "-tiny"), (60, "-narrow"), (100, "-medium"), (140, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-low"), (20, "-short"), (26, "-mid"), (36, "-tall"), (48, "-roomy")]

    def __init__(self, workspace_label: str) -> None:
        super().__init__()
        self._workspace_label = workspace_label
        self._board: BoardSnapshot | None = None
        self._detail: Text | None = None  # what the detail line shows, to redraw only on change
        self.panel = PANELS[0]  # the panel shown in one-panel mode

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield StatusLine(Text(f"workspace {self._workspace_label}"), id="status-line")
        with Vertical(id="body"):
            with Vertical(id="queue-panel"):
                yield QueueTable(id="queue")
                yield Static(render_detail(None), id="queue-detail")
            with Horizontal(id="bottom"):
                yield LogView(id="log")
                with Vertical(id="right"):
                    yield GpuPanel(id="gpu")
                    yield DiskPanel(id="disk")
                    yield ProgressPanel(id="progress")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#queue-panel").border_title = "Queue"
        self.query_one("#gpu").border_title = "GPU"
        self.query_one("#disk").border_title = "Disk"
        self._show_panel(self.panel)
        self.query_one(QueueTable).focus()

    def on_resize(self, event: Resize) -> None:
        # The breakpoint classes are set by Screen before this handler; one-panel mode depends on both
        # sides, which a breakpoint list (one axis each) cannot say.
        single = event.size.width < SINGLE_BELOW[0] or event.size.height < SINGLE_BELOW[1]
        self.set_class(single, "-single")
        self.refresh_bindings()  # the footer's keys follow the width

    @property
    def width_class(self) -> str:
        """The width class in force: one of :data:`FOOTER_KEYS`."""
        return next((name for name in ("-wide", "-medium", "-narrow") if self.has_class(name)), "-tiny")

    @property
    def active_bindings(self):  # noqa: ANN201 - Textual's own type
        """The screen's bindings, with ``show`` set by :data:`FOOTER_KEYS` for the current width."""
        shown = set(FOOTER_KEYS["-tiny" if self.has_class("-single") else self.width_class])
        bindings = super().active_bindings
        for key, active in bindings.items():
            if active.binding.action.startswith("app.") and active.binding.action in KEY_HELP:
                visible = active.binding.action in shown
                if visible != active.binding.show:
                    bindings[key] = active._replace(binding=replace(active.binding, show=visible))
        return bindings

    def next_panel(self) -> str:
        """Step one-panel mode to the next panel; returns its name."""
        self._show_panel(PANELS[(PANELS.index(self.panel) + 1) % len(PANELS)])
        return self.panel

    def _show_panel(self, panel: str) -> None:
        self.panel = panel
        for name in PANELS:
            self.set_class(name == panel, f"-show-{name}")
        if panel == "queue":
            self.query_one(QueueTable).focus()

    def show_board(self, board: BoardSnapshot) -> None:
        """Hand the board down to the queue, GPU, disk and status widgets."""
        self._board = board
        self.query_one(QueueTable).show_runs(board.runs)
        self.query_one(GpuPanel).show(board.gpus, board.gpu_note, board.owners)
        self.query_one(DiskPanel).show(board.disk, board.projected_bytes)
        self.query_one(StatusLine).show(board)
        self._show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "queue":
            self._show_detail()  # the app hears the same message (it selects the run)

    def _show_detail(self) -> None:
        run = self._board.run(self.selected_run_id) if self._board is not None else None
        detail = render_detail(run)
        if detail != self._detail:
            self._detail = detail
            self.query_one("#queue-detail", Static).update(detail)

    def show_run(self, snapshot: RunSnapshot) -> None:
        """Hand the selected run down to the log and progress panels."""
        self.query_one(LogView).show(snapshot)
        self.query_one(ProgressPanel).show(snapshot)

    def show_marks(self, ids: list[int]) -> None:
        """Runs marked for compare (``m``), shown as ● in the queue."""
        self.query_one(QueueTable).set_marked(ids)

    @property
    def selected_run_id(self) -> int | None:
        """The run under the queue's cursor."""
        return self.query_one(QueueTable).selected_run_id

    def toggle_log_filter(self) -> bool:
        """Switch the log between all lines and errors only; returns True when errors only."""
        return self.query_one(LogView).toggle_filter()

    def toggle_log_wrap(self) -> bool:
        """Switch the log between wrapped lines and sideways scrolling; returns True when wrapped."""
        return self.query_one(LogView).toggle_wrap()
