"""Provides DialsumApp, the Textual front end of the run manager, and the factory that builds it.

The app is the controller only: a background thread asks the manager for snapshots (the board
and the selected run, :mod:`dialsum_tui.manager.snapshot`) about once a second and posts them as
messages when something changed; the screen hands them down to its widgets, which render what they
are given. Keys become intents that run on worker threads against the manager. The app never reads
a run's files, never starts a process and never imports torch.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App, SystemCommand
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable
from textual.worker import Worker, WorkerState, get_current_worker

# Only what the first frame needs is imported here: the manager's packages (pydantic, SQLite, psutil,
# NVML) are loaded by the poll thread when it opens the workspace (tests/tui/test_startup.py holds it).
from dialsum_tui.manager.snapshot import BoardSnapshot
from dialsum_tui.messages import BoardRefreshed, IntentDone, IntentFailed, RunRefreshed
from dialsum_tui.run_marks import RunMarks

# Dialog screens are imported where they open: they are not needed for the first frame.
from dialsum_tui.screens.main import KEYS, MainScreen, key_label
from engine.units import format_gib

if TYPE_CHECKING:
    from dialsum_tui.manager.guards.gpu import GpuSource
    from dialsum_tui.manager.service import Manager
    from dialsum_tui.manager.snapshot import Run, SnapshotSource
    from dialsum_tui.manager.workspace.layout import Workspace
    from dialsum_tui.screens.add_run import AddChoice, AddRunScreen

RESULTS_FILE = "results.md"
TERMINAL_CHECK_S = 1.0  # how often the app checks that its terminal is still there


class DialsumApp(App[int]):
    """The dashboard over one workspace. Build it with :func:`make_app`."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere (benchmarks) find it too
    TITLE = "dialsum-tui"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]

    def __init__(
        self,
        workspace: Workspace | str | Path,
        manager: Manager | None = None,
        gpu_source: GpuSource | None = None,
        poll_interval: float = 1.0,
        start_worker: bool = False,
    ) -> None:
        super().__init__()
        # Opening the manager (SQLite, pydantic, NVML) happens on the poll thread when it is not
        # given, so the first frame never waits for it; until then intents say "still opening".
        self._workspace_arg = workspace
        self.root = Path(getattr(workspace, "root", workspace))
        self.manager = manager
        self.gpu_source = gpu_source
        self.poll_interval = poll_interval
        self.start_worker = start_worker
        self.board = BoardSnapshot(runs=(), paused=False, worker_pid=None, gpus=(), gpu_note="", disk=None)
        self.selected_run_id: int | None = None  # read by the poller thread; an int swap is atomic
        self._wake = threading.Event()  # set after an intent so the next poll comes at once
        self._last_error: str | None = None
        self.marks = RunMarks()  # runs marked for compare (m), shown as ● in the queue
        self._terminal: list[int] = []  # the tty descriptors the app draws on and reads from, while they are ttys

    # --- lifecycle -------------------------------------------------------------------------

    async def on_mount(self) -> None:
        self.sub_title = self.root.name
        # Built with the classes of the terminal's size (MainScreen.size_classes): no restyle at the first resize.
        self.main = MainScreen(self.root.name, (self.size.width, self.size.height))
        await self.push_screen(self.main)  # mounted before the first snapshot can arrive
        # The poll thread opens the manager (imports, SQLite): started once the first frame is drawn,
        # so that frame does not share the CPU with it.
        self.call_after_refresh(self._poll)
        if not self.is_headless:
            fds = (_fileno(stream) for stream in (sys.__stdin__, sys.__stdout__))
            self._terminal = [fd for fd in fds if fd is not None and _is_tty(fd)]
            self.set_interval(TERMINAL_CHECK_S, self._check_terminal)

    def _check_terminal(self) -> None:
        """Exit when the terminal is gone (its tty hung up: an SSH session or a pty closed without a
        SIGHUP reaching us). Textual's input thread would otherwise spin on the dead descriptor."""
        if self._terminal and not all(_is_tty(fd) for fd in self._terminal):
            self._terminal = []
            self.exit(0)  # nobody is left to read a message; the runs go on in the worker

    def refresh_now(self) -> None:
        """Ask the poller for a snapshot now instead of at the next tick."""
        self._wake.set()

    # --- polling (thread) ------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll(self) -> None:
        worker = get_current_worker()
        source: SnapshotSource | None = None
        while not worker.is_cancelled:
            try:
                if source is None:
                    source = self._connect()
                board = source.board()
                if board is not None:
                    self.post_message(BoardRefreshed(board))
                run = source.run(self.selected_run_id)
                if run is not None:
                    self.post_message(RunRefreshed(run))
                self._last_error = None
            except Exception as exc:  # a locked db or a vanished file must not kill the refresh
                message = f"{type(exc).__name__}: {exc}"
                if message != self._last_error:
                    self._last_error = message
                    self.post_message(IntentFailed("refresh", message))
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def _connect(self) -> SnapshotSource:
        """Open the manager and the GPU source (poll thread), and start the worker if asked."""
        from dialsum_tui.manager.snapshot import SnapshotSource

        if self.manager is None:
            self.manager = _open_manager(self._workspace_arg)
        if self.start_worker:
            self.start_worker = False  # once: a failure is reported, not retried every second
            self.manager.ensure_worker()
        if self.gpu_source is None:
            self.gpu_source = self.manager.gpu_source()
        return SnapshotSource(self.manager, self.gpu_source)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.notify(f"{event.worker.name}: {event.worker.error}", severity="error", timeout=10)

    # --- state flows down ------------------------------------------------------------------

    @property
    def runs(self) -> tuple[Run, ...]:
        """The runs of the last board snapshot."""
        return self.board.runs

    @property
    def paused(self) -> bool:
        return self.board.paused

    def on_board_refreshed(self, message: BoardRefreshed) -> None:
        self.board = message.board
        try:
            self.main.show_board(message.board)
            self._select(self.main.shown_run_id)
        except NoMatches:
            pass  # a snapshot that arrives while the app shuts down finds its widgets already removed

    def on_run_refreshed(self, message: RunRefreshed) -> None:
        if message.snapshot.run_id != self.selected_run_id:
            return  # the selection moved on while this was read
        try:
            self.main.show_run(message.snapshot)
        except NoMatches:
            pass  # shutting down: see on_board_refreshed

    @on(DataTable.RowHighlighted, "#queue")
    def _on_queue_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._select(self.main.shown_run_id)  # on a sweep's group row: one of its runs

    @on(DataTable.RowSelected, "#queue")
    def _on_queue_selected(self, event: DataTable.RowSelected) -> None:
        self.action_run_detail()

    def _select(self, run_id: int | None) -> None:
        if run_id != self.selected_run_id:
            self.selected_run_id = run_id
            self.refresh_now()  # the poll thread reads the newly selected run at once

    def on_intent_failed(self, message: IntentFailed) -> None:
        self.notify(message.message, title=f"{message.action} failed", severity="error", timeout=10)

    def on_intent_done(self, message: IntentDone) -> None:
        if message.message:
            self.notify(message.message, title=message.action)

    # --- intents (thread, so a busy SQLite lock never freezes the keys) ----------------------

    @work(thread=True, group="intents", exit_on_error=False)
    def _intent(self, action: str, call: Callable[[], str]) -> None:
        if self._not_ready(action):
            return
        try:
            done = call()
        except Exception as exc:  # the manager's errors name the file/key and the fix: show them
            self.post_message(IntentFailed(action, str(exc) or type(exc).__name__))
        else:
            self.post_message(IntentDone(action, done))
        self.refresh_now()

    def _not_ready(self, action: str) -> bool:
        """True (and says so) while the poll thread is still opening the workspace."""
        if self.manager is None:
            self.post_message(IntentFailed(action, "still opening the workspace; try again in a moment"))
            return True
        return False

    def _selected(self, action: str) -> Run | None:
        sweep_id = self.main.selected_sweep_id
        if sweep_id is not None:  # a group row: the run-level keys want one of its runs
            self.notify(f"{action}: select a run of sweep {sweep_id} (↓; enter expands the sweep); "
                        "c compares the whole sweep", severity="warning")
            return None
        run = self.board.run(self.selected_run_id)
        if run is None:
            self.notify(f"{action}: select a run in the queue first", severity="warning")
        return run

    def action_add_run(self) -> None:
        from dialsum_tui.screens.add_run import AddRunScreen

        self.push_screen(AddRunScreen(self.root))

    def on_add_run_screen_estimate_wanted(self, message: AddRunScreen.EstimateWanted) -> None:
        self._estimate(message.screen, message.path, message.gpus)

    @work(thread=True, exclusive=True, group="estimate", exit_on_error=False)
    def _estimate(self, screen: AddRunScreen, path: str, gpus: str | None) -> None:
        """The picked config's GPU memory per stage, as `dialsum-tui estimate` sees it (off the UI thread)."""
        if self.manager is None:
            return
        try:
            line = self.manager.estimate(str(self.root / Path(path).expanduser()), gpus).one_line()
        except Exception as exc:  # the config does not load: the refusal at queueing says it in full
            line = f"GPU memory not estimated: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        self.call_from_thread(screen.show_estimate, line)

    def on_add_run_screen_submitted(self, message: AddRunScreen.Submitted) -> None:
        self._add(message.screen, message.choice)

    @work(thread=True, group="intents", exit_on_error=False)
    def _add(self, screen: AddRunScreen, choice: AddChoice) -> None:
        """Queue what the add dialog chose; a refusal is shown under its fields and the dialog stays open."""
        if self.manager is None:
            self.call_from_thread(screen.show_error, "still opening the workspace; try again in a moment")
            return
        # The dialog lists paths relative to the workspace, whatever the app's cwd is.
        full = str(self.root / Path(choice.path).expanduser())
        try:
            if choice.sweep:  # every variant validated and preflighted before any is queued
                sweep, runs = self.manager.add_sweep(full, **choice.manager_args)
                said = f"queued sweep {sweep.id}: {len(runs)} runs from {choice.path}"
            else:
                run = self.manager.add(full, **choice.manager_args)
                said = f"queued run {run.id} from {choice.path}"
        except Exception as exc:  # the manager's errors name the file/key and the fix: show them in place
            self.call_from_thread(screen.show_error, str(exc) or type(exc).__name__)
        else:
            self.call_from_thread(screen.dismiss, None)
            self.post_message(IntentDone("add", said))
        self.refresh_now()

    def _rerun(self, action: str, verb: str) -> None:
        run = self._selected(verb)
        if run is not None and not self._not_ready(verb):
            self._ask_rerun(run, action, verb)

    @work(thread=True, group="intents", exit_on_error=False)
    def _ask_rerun(self, run: Run, action: str, verb: str) -> None:
        """Show what ``t``/``i``/``e`` would queue (the preflight's refusal instead, if any) and ask."""
        from dialsum_tui.screens.confirm import ConfirmScreen

        try:
            body = rerun_plan(self.manager, run, action)
        except Exception as exc:  # the preflight names the file or key and the fix
            self.post_message(IntentFailed(verb, str(exc) or type(exc).__name__))
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._intent(verb, lambda: f"{verb}: queued run {self.manager.retry(run.id, action=action).id} "
                                           f"({run.nickname})")

        title = f"{verb.capitalize()} run {run.id} ({run.nickname})? It queues a new run"
        self.call_from_thread(self.push_screen, ConfirmScreen(title, body, yes="Queue (y)"), confirmed)

    def action_retrain(self) -> None:
        self._rerun("pipeline", "retrain")

    def action_reinfer(self) -> None:
        self._rerun("infer", "re-infer")

    def action_reevaluate(self) -> None:
        self._rerun("evaluate", "re-evaluate")

    def action_run_detail(self) -> None:
        from dialsum_tui.screens.run_detail import RunDetailScreen

        sweep_id = self.main.selected_sweep_id
        if sweep_id is not None:  # enter on a group row folds or unfolds its runs
            self.main.toggle_sweep(sweep_id)
            return
        run = self._selected("details")
        if run is not None:
            self.push_screen(RunDetailScreen(run))

    def action_resume_run(self) -> None:
        self._open_retry(resume=True)

    def action_retry_changed(self) -> None:
        self._open_retry(resume=False)

    def _open_retry(self, resume: bool) -> None:
        from dialsum_tui.screens.retry import RetryScreen

        run = self._selected("resume" if resume else "retry")
        if run is None or self._not_ready("retry"):
            return

        def queue(choice: tuple[list[str], bool] | None) -> None:
            if choice:
                overrides, resume_ = choice
                self._intent("retry", lambda: _queue_retry(self.manager, run, overrides, resume_))

        screen = RetryScreen(run, resume)
        self.push_screen(screen, queue)
        self._plan_retry(screen, run, [], resume)

    def on_retry_screen_changed(self, message) -> None:  # RetryScreen.Changed: the key was edited
        self._plan_retry(message.screen, message.run, message.overrides, message.resume)

    @work(thread=True, group="intents", exit_on_error=False)
    def _plan_retry(self, screen, run: Run, overrides: list[str], resume: bool) -> None:
        try:
            plan = self.manager.plan_retry(run.id, resume=resume, overrides=overrides)
        except Exception as exc:  # ConfigError / RetryRefused name the key and the fix
            self.call_from_thread(screen.show_plan, [], str(exc), None)
        else:
            lines = plan.diff_lines() + [f"note: {n}" for n in plan.notes]
            self.call_from_thread(screen.show_plan, lines, None, plan.resume.where if plan.resume else None)

    def action_cancel_run(self) -> None:
        from dialsum_tui.screens.confirm import ConfirmScreen

        run = self._selected("cancel")
        if run is None:
            return
        if run.state.is_final:
            self.notify(f"run {run.id} is already {run.state.value}", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._intent("cancel", lambda: f"run {run.id} {self.manager.cancel(run.id).state.value}")

        where = f" (pid {run.pid}, {run.stage})" if run.state.value == "running" else ""
        self.push_screen(ConfirmScreen(f"Cancel run {run.id}?", f"{run.nickname}{where}"), confirmed)

    def action_toggle_pause(self) -> None:
        if self.paused:
            self._intent("resume", lambda: (self.manager.resume(), "queue resumed")[1])
        else:
            self._intent("pause", lambda: (self.manager.pause(), f"queue paused: {self.manager.PAUSE_MEANING}")[1])

    def action_move(self, delta: int) -> None:
        run = self._selected("move")
        if run is not None:
            self._intent("move", lambda: (self.manager.move(run.id, delta), "")[1])

    @work(thread=True, group="intents", exit_on_error=False)
    def action_kill_leftovers(self) -> None:
        from dialsum_tui.screens.confirm import ConfirmScreen

        if self._not_ready("kill leftovers"):
            return
        leftovers = self.manager.leftovers()
        if not leftovers:
            self.post_message(IntentDone("kill leftovers", "none of our runs' processes is left on a GPU"))
            return
        lines = [f"pid {p.pid} on GPU {p.gpu_index}: {format_gib(p.used_bytes)} — run {rid} {nick}"
                 for p, rid, nick in leftovers]
        pids = [p.pid for p, _, _ in leftovers]

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._intent("kill leftovers", lambda: "killed " + ", ".join(
                    f"pid {pid}" for pid in self.manager.kill_leftovers(pids)) or "nothing to kill")

        self.call_from_thread(self.push_screen, ConfirmScreen("Kill these leftover processes?", "\n".join(lines)),
                              confirmed)

    @work(thread=True, group="intents", exit_on_error=False)
    def action_prune(self) -> None:
        from dialsum_tui.screens.confirm import ConfirmScreen

        if self._not_ready("prune"):
            return
        items = self.manager.prune_plan()
        if not items:
            self.post_message(IntentDone("prune", "nothing to prune"))
            return
        from engine.units import format_bytes

        total = sum(item.bytes for item in items)
        body = "\n".join(item.line() for item in items) + f"\n\nfrees {format_bytes(total)}"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._intent("prune", lambda: f"freed {format_bytes(self.manager.prune(items))}")

        self.call_from_thread(self.push_screen, ConfirmScreen(f"Delete {len(items)} items?", body), confirmed)

    @work(thread=True, group="intents", exit_on_error=False)
    def action_results(self) -> None:
        from dialsum_tui.screens.results import ResultsScreen

        if self._not_ready("results"):
            return
        rows = self.manager.results()
        self.call_from_thread(self.push_screen, ResultsScreen(rows, f"m writes {RESULTS_FILE} in the workspace"))

    # --- insights (issue 14): marks, compare, samples -------------------------------------------

    def action_toggle_mark(self) -> None:
        run = self._selected("mark")
        if run is not None:
            marked = self.marks.toggle(run.id)
            self.main.show_marks(self.marks.ids)
            self.notify(f"{'marked' if marked else 'unmarked'} run {run.id} {run.nickname}; "
                        f"{len(self.marks.ids)} marked (c compares)", timeout=3)

    def action_compare(self) -> None:
        from dialsum_tui.manager.insights.compare import compare_runs
        from dialsum_tui.screens.compare import CompareScreen

        sweep_id = self.main.selected_sweep_id
        if sweep_id is not None:  # on a group row: the whole sweep, its swept keys as config rows
            self.notify(f"compare: reading sweep {sweep_id}'s runs…", timeout=2)
            self._open_insight("compare", lambda: self.manager.compare_sweep(sweep_id), CompareScreen)
            return
        ids = self.marks.ids
        if len(ids) < 2:
            self.notify("compare: mark two or more runs with m first", severity="warning")
            return
        self._open_insight("compare", lambda: compare_runs(self.manager.workspace, [self.manager.get(i) for i in ids]),
                           CompareScreen)

    def action_samples(self) -> None:
        from dialsum_tui.manager.insights.samples import load_samples
        from dialsum_tui.screens.samples import SamplesScreen

        run = self._selected("samples")
        if run is not None:
            vs = self.marks.partner(run.id)
            self.notify(f"samples: scoring run {run.id}'s dev predictions item by item…", timeout=2)
            self._open_insight("samples", lambda: load_samples(
                self.manager.workspace, self.manager.get(run.id), self.manager.get(vs) if vs is not None else None),
                SamplesScreen)

    @work(thread=True, group="insights", exclusive=True, exit_on_error=False)
    def _open_insight(self, action: str, load: Callable[[], Any], screen: Callable[[Any], Screen]) -> None:
        """Read and score off the UI thread (Mecab on 499 dialogues), then push the screen."""
        if self._not_ready(action):
            return
        try:
            data = load()
        except Exception as exc:  # InsightsError says what to do (e.g. "re-infer run 3")
            self.post_message(IntentFailed(action, str(exc) or type(exc).__name__))
        else:
            self.call_from_thread(lambda: self.push_screen(screen(data)))

    def action_export_results(self) -> None:
        from dialsum_tui.manager.insights.results import format_results

        def export() -> str:
            path = self.root / RESULTS_FILE
            _write_text(path, format_results(self.manager.results(), "markdown"))
            return f"wrote {path}"

        self._intent("export results", export)

    def action_handoff(self) -> None:
        def write() -> str:
            from dialsum_tui.manager.insights.handoff import HANDOFF_FILE

            path = self.root / HANDOFF_FILE
            _write_text(path, self.manager.handoff())
            return f"wrote {path}"

        self._intent("hand-off", write)

    def action_filter_log(self) -> None:
        errors_only = self.main.toggle_log_filter()
        self.notify("log: errors only" if errors_only else "log: all lines", timeout=2)

    def action_wrap_log(self) -> None:
        wrapped = self.main.toggle_log_wrap()
        self.notify("log: lines wrapped" if wrapped else "log: whole lines; ← → scroll sideways", timeout=2)

    def action_scroll_log(self, cells: int) -> None:
        if not self.main.scroll_log(cells):
            self.notify("log: lines are wrapped, nothing to scroll sideways (w keeps them whole)", timeout=2)

    def action_next_panel(self) -> None:
        panel = self.main.next_panel()
        if not self.main.has_class("-single"):
            self.notify(f"every panel is on screen; under 60×20 v shows one at a time (next: {panel})", timeout=3)

    def action_help(self) -> None:
        from dialsum_tui.screens.help import HelpScreen

        self.push_screen(HelpScreen(key_table()))

    def action_quit_app(self) -> None:
        from dialsum_tui.reopen import reopen_command

        root = self.manager.workspace.root if self.manager is not None else Path(getattr(self._workspace_arg, "root", str(self._workspace_arg)))
        self.exit(0, message=quit_message(self.board.unfinished, reopen_command(root)))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, MainScreen):
            for key in KEYS:
                yield SystemCommand(f"{key.label} ({key_label(key)})", key_help(key.help),
                                    lambda a=key.action: self.run_action(a))


def key_help(text: str) -> str:
    """A key's help line with the manager's own words filled in (the hand-off file, what pause does)."""
    if "{" not in text:
        return text
    from dialsum_tui.manager.insights.handoff import HANDOFF_FILE
    from dialsum_tui.manager.service import Manager

    return text.format(handoff=HANDOFF_FILE, pause=Manager.PAUSE_MEANING)


def key_table() -> list[tuple[str, str]]:
    """Return (key, what it does) for every key of the main screen (:data:`KEYS`), and the app's own."""
    keys = [(key_label(key), key_help(key.help)) for key in KEYS]
    return keys + [("↑ ↓ pgup pgdn", "move in the queue (the log follows the selected run)"),
                   ("home / end", "the first / the last run in the queue"),
                   ("ctrl+p", "command palette: every action above by name"),
                   ("tab", "move the focus between the queue and the log (arrows then scroll it)")]


def rerun_plan(manager: Manager, run: Run, action: str) -> str:
    """What ``t``/``i``/``e`` queue, for the confirm dialog: the stages, the config, what the new run
    reads from ``run`` and where it may run.

    Raises:
        ConfigError: the preflight's refusal (a model or predictions file missing, a CSV broken, …),
            naming the file and the fix, as ``Manager.retry`` would raise it.
    """
    from dialsum_tui.manager.guards.disk import projected_footprint
    from dialsum_tui.manager.guards.preflight import describe, preflight
    from dialsum_tui.manager.runs import identity
    from dialsum_tui.manager.runs.models import Action, parse_gpus
    from engine.config import ConfigError
    from engine.contract import load_snapshot
    from engine.units import format_bytes

    ws = manager.workspace
    action_ = Action(action)
    cfg = load_snapshot(run.config_yaml, f"run {run.id} config snapshot")
    keys = identity.source_keys(action_, run.nickname, run, ws.checkpoints_dir)
    reads = (keys.get("model_key") or cfg.model.nickname, keys.get("predictions_key") or cfg.model.nickname)
    problems = preflight(ws, cfg, action_.stages, parse_gpus(run.gpus), manager.gpu_source(), keys=reads)
    if problems:
        raise ConfigError(f"run {run.id}: not queued; {len(problems)} problem(s) would fail it later:\n"
                          f"{describe(problems)}")
    lines = [f"stages: {' → '.join(stage.value for stage in action_.stages)}",
             f"config: run {run.id}'s snapshot of {run.config_path}, unchanged (T changes a key)"]
    if action_ in (Action.INFER, Action.EVALUATE):
        what = "final_model" if action_ is Action.INFER else "dev predictions"
        lines.append(f"reads: run {keys.get('source_run', run.id)}'s {what} ({reads[0 if action_ is Action.INFER else 1]})")
    lines.append(f"GPU: {run.gpus or 'any free one'} · starts when the guards admit it")
    try:
        adds = projected_footprint(cfg, action_.value, ws.root)
    except Exception:  # a projection is advice
        adds = 0
    if adds:
        lines.append(f"disk: adds ~{format_bytes(adds)}")
    return "\n".join(lines)


def _fileno(stream: Any) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a test, or closed
        return None


def _is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)  # a hung-up tty answers EIO to the ioctl behind isatty: False
    except OSError:
        return False


def quit_message(unfinished: int, reopen: str = "dialsum-tui") -> str:
    """The line printed after quitting: the worker is detached, so runs keep going.

    Args:
        reopen: the command that reopens the TUI from where the user is (:func:`dialsum_tui.reopen.reopen_command`).
    """
    if unfinished:
        return f"dialsum-tui closed; {unfinished} unfinished run(s) keep going in the worker. Reopen with `{reopen}`."
    return f"dialsum-tui closed; the worker keeps watching the queue. Reopen with `{reopen}`."


def _queue_retry(manager: Manager, run: Run, overrides: list[str], resume: bool) -> str:
    """Queue the retry the dialog showed (planned again: the store may have moved on meanwhile)."""
    plan = manager.plan_retry(run.id, resume=resume, overrides=overrides)
    new = manager.retry(run.id, plan=plan)
    return f"queued run {new.id} ({run.nickname})" + (f", resuming from {plan.resume.where}" if plan.resume else "")


def _write_text(path: Path, text: str) -> None:
    from engine.artifacts import (
        atomic_write_text,  # torch-free; imported here to keep startup light
    )

    atomic_write_text(path, text)


def _open_manager(workspace: Workspace | str | Path) -> Manager:
    from dialsum_tui.manager.service import Manager
    from dialsum_tui.manager.workspace.layout import Workspace, find_workspace

    ws = workspace if isinstance(workspace, Workspace) else find_workspace(str(workspace))
    return Manager.open(ws)


def make_app(
    workspace: Workspace | str | Path,
    gpu_source: GpuSource | None = None,
    manager: Manager | None = None,
    poll_interval: float = 1.0,
    start_worker: bool = False,
) -> DialsumApp:
    """Build the app for the CLI and the tests alike.

    Args:
        workspace: the workspace (or its directory) whose runs to show.
        gpu_source: where GPU samples come from; default the manager's (NVML, or the
            ``$DIALSUM_FAKE_GPU`` script). Tests pass a ``ScriptedGpuSource``.
        manager: an open manager; default ``Manager.open(workspace)``, done off the UI thread.
        poll_interval: seconds between snapshots.
        start_worker: start the detached worker if none runs (``Manager.ensure_worker``).

    Returns:
        The app, not yet running.
    """
    return DialsumApp(workspace, manager=manager, gpu_source=gpu_source, poll_interval=poll_interval,
                      start_worker=start_worker)


def run_app(workspace: Workspace | str | Path) -> int:
    """Open the app on ``workspace``, starting the detached worker if none runs.

    Returns:
        The exit status for the CLI.
    """
    app = make_app(workspace, start_worker=True)
    app.run()
    return app.return_code or 0
