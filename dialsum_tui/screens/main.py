"""Provides MainScreen: queue, GPU, disk, log and progress panels, and the keys that act on runs."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header

from dialsum_tui.manager.snapshot import BoardSnapshot, RunSnapshot
from dialsum_tui.widgets.disk_panel import DiskPanel
from dialsum_tui.widgets.gpu_panel import GpuPanel
from dialsum_tui.widgets.log_view import LogView
from dialsum_tui.widgets.progress_panel import ProgressPanel
from dialsum_tui.widgets.queue_table import QueueTable
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
    Binding("space", "app.toggle_pause", "Pause/Resume"),
    Binding("ctrl+up", "app.move(-1)", "Move up"),
    Binding("ctrl+down", "app.move(1)", "Move down"),
    Binding("K", "app.kill_leftovers", "Kill leftovers"),
    Binding("p", "app.prune", "Prune"),
    Binding("r", "app.results", "Results"),
    Binding("m", "app.toggle_mark", "Mark"),
    Binding("c", "app.compare", "Compare"),
    Binding("s", "app.samples", "Samples"),
    Binding("h", "app.handoff", "Hand-off"),
    Binding("f", "app.filter_log", "Log: errors only"),
    Binding("question_mark", "app.help", "Help"),
    Binding("q", "app.quit_app", "Quit (runs go on)"),
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
    "app.filter_log": "log: toggle errors only",
    "app.help": "this help",
    "app.quit_app": "quit the app; runs keep going in the detached worker",
}


def key_label(binding: Binding) -> str:
    """Return how a key is written in the help: ``ctrl+up``, ``space``, ``?``."""
    return {"question_mark": "?"}.get(binding.key, binding.key)


class MainScreen(Screen[None]):
    """The dashboard. The app hands it snapshots (``show_board``, ``show_run``); it posts nothing but key actions."""

    BINDINGS = KEYS

    def __init__(self, workspace_label: str) -> None:
        super().__init__()
        self._workspace_label = workspace_label

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield StatusLine(Text(f"workspace {self._workspace_label}"), id="status-line")
        with Horizontal(id="top"):
            yield QueueTable(id="queue")
            with Vertical(id="side"):
                yield GpuPanel(id="gpu")
                yield DiskPanel(id="disk")
        with Horizontal(id="bottom"):
            yield LogView(id="log")
            yield ProgressPanel(id="progress")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#queue").border_title = "Queue"
        self.query_one("#gpu").border_title = "GPU"
        self.query_one("#disk").border_title = "Disk"
        self.query_one(QueueTable).focus()

    def show_board(self, board: BoardSnapshot) -> None:
        """Hand the board down to the queue, GPU, disk and status widgets."""
        self.query_one(QueueTable).show_runs(board.runs)
        self.query_one(GpuPanel).show(board.gpus, board.gpu_note, board.owners)
        self.query_one(DiskPanel).show(board.disk, board.projected_bytes)
        self.query_one(StatusLine).show(board)

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
