"""Provides MainScreen: queue, GPU, disk, log and progress panels, and the keys that act on runs."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import DataTable, Static

from dialsum_tui.manager.snapshot import BoardSnapshot, RunSnapshot
from dialsum_tui.widgets.disk_panel import DiskPanel
from dialsum_tui.widgets.gpu_panel import GpuPanel
from dialsum_tui.widgets.key_bar import KeyBar
from dialsum_tui.widgets.log_view import LogView
from dialsum_tui.widgets.progress_panel import ProgressPanel
from dialsum_tui.widgets.queue_table import QueueTable, render_detail, render_sweep_detail
from dialsum_tui.widgets.status_line import StatusLine

TINY, NARROW, MEDIUM, WIDE = "-tiny", "-narrow", "-medium", "-wide"  # the width classes, narrowest first
ANY_WIDTH = (TINY, NARROW, MEDIUM, WIDE)
FROM_NARROW, FROM_MEDIUM = ANY_WIDTH[1:], ANY_WIDTH[2:]


@dataclass(frozen=True)
class Key:
    """One key of the main screen, written once: its Textual binding (footer label, help line as the
    tooltip), the help screen (``?``) and the command palette all read this row.

    ``help`` may name ``{handoff}`` (the hand-off file) or ``{pause}`` (what pause does): the app fills
    them in from the manager when the help opens (:func:`dialsum_tui.app.key_table`).
    """

    key: str
    action: str  # an app action, e.g. ``add_run`` or ``move(-1)``
    label: str  # the footer's word
    help: str  # one line in the help and the palette
    footer: tuple[str, ...] = ()  # the width classes whose footer shows it (one line: the rest are in ? and ctrl+p)

    @property
    def binding(self) -> Binding:
        # show=False: the footer line is the screen's own KeyBar, which reads ``footer`` for the width.
        return Binding(self.key, f"app.{self.action}", self.label, show=False, tooltip=self.help)


# The keys of issue 5. They live on this screen (not the app) so that dialogs never trigger them;
# each one calls an ``app.`` action, because the app owns the manager.
KEYS: tuple[Key, ...] = (
    Key("a", "add_run", "Add", "add a run from a config under configs/ (errors are shown in the dialog)", ANY_WIDTH),
    Key("t", "retrain", "Retrain", "retrain the selected run's config (new run: train → infer → evaluate; "
        "shows the plan and asks first)", FROM_MEDIUM),
    Key("i", "reinfer", "Re-infer", "re-infer from the selected run's final_model (new run; shows the plan and asks "
        "first)", FROM_MEDIUM),
    Key("e", "reevaluate", "Re-eval", "re-evaluate the selected run's dev predictions (new run; shows the plan and "
        "asks first)", (WIDE,)),
    Key("R", "resume_run", "Resume", "resume the selected stopped run from its last complete checkpoint (new run; "
        "shows the plan first)"),
    Key("T", "retry_changed", "Retry…", "retry the selected run with one config key changed (key=value; shows the "
        "diff first)"),
    Key("x", "cancel_run", "Cancel", "cancel the selected run (asks first)", FROM_NARROW),
    Key("space", "toggle_pause", "Pause", "pause or resume the queue (pause: {pause})", ANY_WIDTH),
    Key("ctrl+up", "move(-1)", "Move up", "move the selected queued run up"),
    Key("ctrl+down", "move(1)", "Move down", "move the selected queued run down"),
    Key("enter", "run_detail", "Details", "the selected run in full: its whole failure message, hint, reason and "
        "config; on a sweep's group row, collapse or expand the sweep"),
    Key("K", "kill_leftovers", "Kill leftovers", "kill our finished runs' processes still holding a GPU (asks first, "
        "names them)"),
    Key("p", "prune", "Prune", "prune old checkpoints and caches (asks first, shows sizes)"),
    Key("r", "results", "Results", "the results table (Model | ROUGE | 상태), m exports Markdown", FROM_NARROW),
    Key("m", "toggle_mark", "Mark", "mark or unmark the selected run (● in the queue) for compare", FROM_MEDIUM),
    Key("c", "compare", "Compare", "compare the marked runs: loss and ROUGE curves, metrics, config keys that differ "
        "(on a sweep's group row: its runs and swept keys)", FROM_MEDIUM),
    Key("s", "samples", "Samples", "per-sample dev insights of the selected run (beside the other marked run, if "
        "one)", (WIDE,)),
    Key("h", "handoff", "Hand-off", "write the hand-off note ({handoff} in the workspace)", (WIDE,)),
    Key("f", "filter_log", "Errors", "log: toggle errors only (tracebacks, OOM, failures; warnings are not errors); "
        "selecting another run shows every line again", FROM_NARROW),
    Key("w", "wrap_log", "Wrap", "log: wrap long lines, or keep them whole and scroll sideways (← →)", FROM_MEDIUM),
    Key("left", "scroll_log(-8)", "Log ←", "log: scroll unwrapped lines left (after w; no Tab needed)"),
    Key("right", "scroll_log(8)", "Log →", "log: scroll unwrapped lines right (after w; no Tab needed)"),
    Key("v", "next_panel", "Panel", "small terminals (under 60×20): show the next panel (queue → log → progress → "
        "GPU & disk)", (TINY,)),
    Key("question_mark", "help", "Help", "this help", ANY_WIDTH),
    Key("q", "quit_app", "Quit", "quit the app; runs keep going in the detached worker", ANY_WIDTH),
)
KEY_LABELS = {"question_mark": "?", "left": "←", "right": "→"}


def footer_actions(width_class: str) -> list[str]:
    """The actions (``app.…``) whose keys the footer shows at ``width_class``, in table order."""
    return [f"app.{key.action}" for key in KEYS if width_class in key.footer]


def footer_keys(width_class: str) -> list[tuple[str, str, str]]:
    """``(key, word, action)`` of the keys the footer line shows at ``width_class`` (:class:`KeyBar`)."""
    return [(key_label(key), key.label, f"app.{key.action}") for key in KEYS if width_class in key.footer]


# In one-panel mode the panel shown, in the order v steps through them.
PANELS = ("queue", "log", "progress", "machine")
SINGLE_BELOW = (60, 20)  # (columns, rows): smaller terminals show one panel at a time


def key_label(key: Key | Binding) -> str:
    """Return how a key is written in the help: ``ctrl+up``, ``space``, ``?``, ``←``."""
    return KEY_LABELS.get(key.key, key.key)


class MainScreen(Screen[None]):
    """The dashboard. The app hands it snapshots (``show_board``, ``show_run``); it posts nothing but key actions.

    Layout: the queue across the whole width (with the selected run's detail line under it); below
    it the log, and a column of GPU, disk and progress. Width classes (``-tiny`` … ``-wide``) size the right column and pick the
    footer's keys; under :data:`SINGLE_BELOW` the ``-single`` class shows one panel at a time (``v``).
    """

    BINDINGS = [key.binding for key in KEYS]
    HORIZONTAL_BREAKPOINTS = [(0, "-tiny"), (60, "-narrow"), (100, "-medium"), (140, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-low"), (20, "-short"), (26, "-mid"), (36, "-tall"), (48, "-roomy")]

    def __init__(self, workspace_label: str, size: tuple[int, int] | None = None) -> None:
        # The classes the first Resize would set (breakpoints, one-panel mode, the first panel) from the
        # start: every class set after mount restyles each widget once more, most of a first frame's cost.
        super().__init__(classes=" ".join(self.size_classes(size) if size else []) + f" -show-{PANELS[0]}")
        self._workspace_label = workspace_label
        self._board: BoardSnapshot | None = None
        self._detail: Text | None = None  # what the detail line shows, to redraw only on change
        self.panel = PANELS[0]  # the panel shown in one-panel mode

    def compose(self) -> ComposeResult:
        # No Header: the status line names the workspace, and every row counts on a small terminal.
        yield StatusLine(self._workspace_label, id="status-line")
        yield KeyBar(id="keys")  # docked at the bottom
        with Vertical(id="queue-panel"):
            yield QueueTable(id="queue")
            yield Static(render_detail(None), id="queue-detail")
        with Horizontal(id="bottom"):
            yield LogView(id="log")
            with Vertical(id="right"):
                yield GpuPanel(id="gpu")
                yield DiskPanel(id="disk")
                yield ProgressPanel(id="progress")

    def on_mount(self) -> None:
        self.query_one("#queue-panel").border_title = "Queue"
        self.query_one("#gpu").border_title = "GPU"
        self.query_one("#disk").border_title = "Disk"
        self.query_one(QueueTable).focus()

    def on_resize(self, event: Resize) -> None:
        # The breakpoint classes are set by Screen before this handler; one-panel mode depends on both
        # sides, which a breakpoint list (one axis each) cannot say.
        single = event.size.width < SINGLE_BELOW[0] or event.size.height < SINGLE_BELOW[1]
        self.set_class(single, "-single")
        # The full loss chart from 48 rows up (it would get a few rows below), one-line curves below that;
        # the per-eval table from 36 rows.
        roomy = self.has_class("-roomy") and not single
        self.query_one(ProgressPanel).fit(chart=roomy, table=roomy or (self.has_class("-tall") and not single))
        self.query_one(KeyBar).show(footer_keys(self.width_class), event.size.width)  # the keys follow the width

    @classmethod
    def size_classes(cls, size: tuple[int, int]) -> list[str]:
        """The width and height classes (and ``-single``) a screen of ``size`` cells gets."""
        width, height = size
        classes = [next(name for edge, name in reversed(points) if value >= edge)
                   for value, points in ((width, cls.HORIZONTAL_BREAKPOINTS), (height, cls.VERTICAL_BREAKPOINTS))]
        return classes + (["-single"] if width < SINGLE_BELOW[0] or height < SINGLE_BELOW[1] else [])

    @property
    def width_class(self) -> str:
        """The width class in force: ``-tiny`` … ``-wide`` (one-panel mode counts as ``-tiny``)."""
        if self.has_class("-single"):
            return TINY
        return next((name for name in (WIDE, MEDIUM, NARROW) if self.has_class(name)), TINY)

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
        self.query_one(QueueTable).show_runs(board.runs, board.sweeps)
        self.query_one(GpuPanel).show(board.gpus, board.gpu_note, board.owners, board.device_runs)
        self.query_one(DiskPanel).show(board.disk, board.projected_bytes, board.projecting)
        self.query_one(StatusLine).show(board)
        self._show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "queue":
            self._show_detail()  # the app hears the same message (it selects the run)

    def _show_detail(self) -> None:
        queue = self.query_one(QueueTable)
        sweep = queue.selected_sweep
        if sweep is not None:
            detail = render_sweep_detail(sweep, queue.is_collapsed(sweep))
        else:
            detail = render_detail(self._board.run(self.selected_run_id) if self._board is not None else None)
        if detail != self._detail:
            self._detail = detail
            self.query_one("#queue-detail", Static).update(detail, layout=False)  # always two lines

    def show_run(self, snapshot: RunSnapshot) -> None:
        """Hand the selected run down to the log and progress panels."""
        self.query_one(LogView).show(snapshot)
        self.query_one(ProgressPanel).show(snapshot)

    def show_marks(self, ids: list[int]) -> None:
        """Runs marked for compare (``m``), shown as ● in the queue."""
        self.query_one(QueueTable).set_marked(ids)

    @property
    def selected_run_id(self) -> int | None:
        """The run under the queue's cursor (None on a sweep's group row)."""
        return self.query_one(QueueTable).selected_run_id

    @property
    def selected_sweep_id(self) -> str | None:
        """The sweep whose group row is under the queue's cursor (``s1``), or None."""
        sweep = self.query_one(QueueTable).selected_sweep
        return sweep.id if sweep is not None else None

    @property
    def shown_run_id(self) -> int | None:
        """The run the log and progress follow: the selected one, or on a group row one of its sweep's."""
        return self.query_one(QueueTable).shown_run_id

    def toggle_sweep(self, sweep_id: str) -> bool:
        """Collapse or expand a sweep's group in the queue; True when collapsed."""
        collapsed = self.query_one(QueueTable).toggle_sweep(sweep_id)
        self._show_detail()
        return collapsed

    def toggle_log_filter(self) -> bool:
        """Switch the log between all lines and errors only; returns True when errors only."""
        return self.query_one(LogView).toggle_filter()

    def toggle_log_wrap(self) -> bool:
        """Switch the log between wrapped lines and sideways scrolling; returns True when wrapped."""
        return self.query_one(LogView).toggle_wrap()

    def scroll_log(self, cells: int) -> bool:
        """Scroll the unwrapped log sideways (whatever has the focus); False when it is wrapped."""
        return self.query_one(LogView).scroll_sideways(cells)
