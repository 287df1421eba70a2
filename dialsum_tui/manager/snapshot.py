"""Provides the front end's one door to the manager: immutable snapshots of the whole board and of
one run, and :class:`SnapshotSource`, which refreshes them cheaply on the caller's poll thread.

A front end never reads a run's files or measures anything itself (nvitop's snapshot idea): the
board is the store, the GPU source, the worker's cached disk figure and the projected footprint of
the queued runs; a run is its store record with typed progress, its loss and ROUGE series (typed
records from :mod:`engine.contract`) and the end of its log. Files are followed by byte offset
(``events.jsonl``) and read from their end (``run.log``), so a 1 GB log costs one 64 kB read.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any

# The front end imports this module for its first frame; the manager's packages (pydantic, SQLite,
# psutil, NVML behind them) are imported by the poll thread when it opens the workspace, so the
# first frame never waits for them. Names a widget needs only as types come from here, lazily.
if TYPE_CHECKING:
    from pathlib import Path

    from dialsum_tui.manager.guards.disk import DiskUsage
    from dialsum_tui.manager.guards.gpu import GpuDevice, GpuSource
    from dialsum_tui.manager.runs.models import Run
    from dialsum_tui.manager.runs.retry import ResumePoint
    from dialsum_tui.manager.runs.streaks import FailurePause
    from dialsum_tui.manager.runs.sweeps import SweepStatus
    from dialsum_tui.manager.service import Manager
    from engine.contract import Eval, Progress

__all__ = ["BoardSnapshot", "DiskUsage", "Eval", "GpuDevice", "Progress", "ResumePoint", "Run", "RunSnapshot",
           "SnapshotSource", "failure_headline", "focus_run", "run_progress", "LOG_LINES"]

_LAZY = {"DiskUsage": "dialsum_tui.manager.guards.disk", "GpuDevice": "dialsum_tui.manager.guards.gpu",
         "ResumePoint": "dialsum_tui.manager.runs.retry", "Run": "dialsum_tui.manager.runs.models",
         "Eval": "engine.contract", "Progress": "engine.contract"}


def __getattr__(name: str) -> Any:
    """The re-exported manager types, imported when first asked for (PEP 562)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


LOG_LINES = 5000  # the log lines a run snapshot keeps; older ones live on in the file
FOOTPRINT_BUDGET_S = 0.05  # projected footprints worked out per board at most (each loads a config)


def slurm_note(runs: Sequence[Run]) -> str:
    """The GPU panel on Slurm: what the cluster allocated to each running job (NVML cannot see the
    nodes), e.g. ``run 3 · job 1234 · gpu-07: cpu=8,mem=64G,gres/gpu=2``."""
    from dialsum_tui.manager.backends.registry import places_devices
    from dialsum_tui.manager.runs.models import RunState

    lines = [f"run {r.id} · job {r.job_id or '-'} · " + (r.allocation or r.reason or "submitted")
             for r in runs if r.state is RunState.RUNNING and not places_devices(r.backend) and r.job_id]
    return "Slurm allocates the GPUs" + ("".join(f"\n{line}" for line in lines) if lines else ": no job running")


def run_progress(run: Run) -> Progress | None:
    """The store's progress of ``run`` as the engine's typed record (None before the first report).

    While a run runs, a report of an earlier stage is not its progress: between train's last report
    and infer's first, the queue would show "infer 400/400, 100%" for a stage just loading.
    """
    from dialsum_tui.manager.runs.models import RunState  # loaded by then: a run came from the store
    from engine.contract import Event, Progress, parse_event

    if not run.progress:
        return None
    if run.state is RunState.RUNNING and run.progress.get("stage") not in (None, run.stage):
        return None
    record = parse_event({**run.progress, "event": Event.PROGRESS})
    return record if isinstance(record, Progress) else None


def failure_headline(run: Run) -> str:
    """A failed run in one line that leads with the cause: ``dev.csv line 73: unescaped quote · data in
    train`` (the cause is :func:`runs.models.headline` of the message, never its opening heading such as
    ``preflight before train:``). Empty when the run did not fail."""
    from dialsum_tui.manager.runs.models import RunState, headline

    if run.state is not RunState.FAILED or not run.failure_kind:
        return ""
    where = f"{run.failure_kind} in {run.failed_stage}" if run.failed_stage else run.failure_kind
    cause = _ABSOLUTE.sub(r"…/\1", headline(run.failure_message))
    return f"{cause} · {where}" if cause else where


# An absolute path in a one-line view keeps its last two parts (``…/data-broken/dev.csv``): the
# workspace's own prefix pushed the cause off a narrow column. The whole message keeps it.
_ABSOLUTE = re.compile(r"(?<![\w.~])/(?:[^\s/:'\"]+/)+([^\s/:'\"]+/[^\s/:'\"]+)")


def focus_run(runs: Sequence[Run]) -> int | None:
    """The run a front end opens on: the first running one in queue order, else the one that
    started or ended last (the run a user comes back to look at), else the first."""
    from dialsum_tui.manager.runs.models import RunState

    if not runs:
        return None
    running = next((run for run in runs if run.state is RunState.RUNNING), None)
    if running is not None:
        return running.id
    latest = max(runs, key=lambda r: (max(r.finished_at or 0.0, r.started_at or 0.0), r.id))
    return latest.id if (latest.finished_at or latest.started_at) else runs[0].id


@dataclass(frozen=True)
class DeviceRun:
    """One of our runs on a GPU (several with ``gpu_sharing``): what its processes hold there now, and
    its current stage's GPU memory as predicted at ``add`` and as measured (its peak so far)."""

    run_id: int
    nickname: str
    stage: str | None
    used_bytes: int  # its processes on this device now (0 while loading, or where NVML cannot attribute)
    predicted_gib: float | None
    measured_gib: float | None


@dataclass(frozen=True)
class BoardSnapshot:
    """The queue, the GPUs and the disk at one moment."""

    runs: tuple[Run, ...]
    paused: bool
    worker_pid: int | None  # None: no worker is running
    gpus: tuple[GpuDevice, ...]
    gpu_note: str  # the GPU source's description: says when there is no GPU at all
    disk: DiskUsage | None  # the worker's cached measurement; None until it measured once
    projected_bytes: int = 0  # what the queued and waiting runs are projected to add to the disk
    projecting: int = 0  # queued runs whose footprint is still being worked out (not in projected_bytes yet)
    owners: Mapping[int, tuple[int, str]] = field(default_factory=dict)  # GPU pid → (run id, nickname) of ours
    attention: tuple[str, ...] = ()  # Manager.attention(): the worker down or failing, the disk in doubt
    # Each sweep now (runs.sweeps.SweepStatus: id, its latest run per variant, members, progress_text
    # "3/4 done", keys_text, best), oldest first: the queue's group rows.
    sweeps: tuple[SweepStatus, ...] = ()
    # What failure streaks paused (runs.streaks.FailurePause: where, kind, runs, message): the banner's line.
    failure_pauses: tuple[FailurePause, ...] = ()

    @property
    def device_runs(self) -> dict[int, tuple[DeviceRun, ...]]:
        """Device index → every running run of ours on it, in queue order: the runs its ``--gpu`` names
        (none named: the devices its processes are on, else the first), with what each holds there now."""
        from dialsum_tui.manager.backends.registry import places_devices
        from dialsum_tui.manager.runs.models import RunState, parse_gpus

        held: dict[tuple[int, int], int] = {}  # (device, run) -> bytes
        for device in self.gpus:
            for proc in device.processes:
                owner = self.owners.get(proc.pid)
                if owner is not None:
                    held[(device.index, owner[0])] = held.get((device.index, owner[0]), 0) + proc.used_bytes
        present = [d.index for d in self.gpus]
        out: dict[int, list[DeviceRun]] = {}
        for run in self.runs:
            if run.state is not RunState.RUNNING or not places_devices(run.backend) or not present:
                continue
            named = parse_gpus(run.gpus)
            on = [i for i in named if i in present] if named else sorted({i for i, rid in held if rid == run.id})
            for index in on or ([] if named else present[:1]):
                stage = run.stage
                out.setdefault(index, []).append(DeviceRun(
                    run.id, run.nickname, stage, held.get((index, run.id), 0),
                    run.gpu_predicted.get(stage) if stage else None, run.gpu_peaks.get(stage) if stage else None))
        return {index: tuple(found) for index, found in out.items()}

    def run(self, run_id: int | None) -> Run | None:
        """The run with ``run_id``, or None."""
        return next((run for run in self.runs if run.id == run_id), None)

    def sweep_of(self, run: Run) -> SweepStatus | None:
        """The sweep ``run`` is a variant of, or None."""
        return next((sweep for sweep in self.sweeps if sweep.id == run.sweep), None) if run.sweep else None

    @property
    def unfinished(self) -> int:
        """Runs that are queued, waiting or running: they go on after the front end closes."""
        return sum(not run.state.is_final for run in self.runs)


@dataclass(frozen=True)
class RunSnapshot:
    """One run as a front end shows it.

    The log is the last :data:`LOG_LINES` complete lines (tqdm redraws collapsed) plus the
    unfinished one. ``log_total`` counts the lines appended since ``log_generation`` began, so a
    view that already shows some of them appends only the rest; a new generation (the log was
    opened, replaced or truncated) means "start over".
    """

    run: Run
    progress: Progress | None = None
    loss: tuple[tuple[float, float], ...] = ()  # (step, loss) of every train_log event
    evals: tuple[Eval, ...] = ()  # eval events that carry scores, oldest first
    log_lines: tuple[str, ...] = ()
    log_live: str | None = None
    log_total: int = 0
    log_generation: int = 0
    footprint: int = 0  # bytes the run is projected to add to the disk; 0 when it cannot tell
    resume: ResumePoint | None = None  # a stopped training's last complete checkpoint (`retry --resume`)
    resumed: str | None = None  # "resumed from step 758 of run 12" for a run that resumed

    @property
    def run_id(self) -> int:
        return self.run.id


class RunReader:
    """Follows one run directory's ``events.jsonl`` and ``run.log``; one thread only."""

    def __init__(self, run_dir: Path, window: int | None = None) -> None:
        from dialsum_tui.manager.runs.logs import DEFAULT_WINDOW, LogTail
        from engine.contract import RunFiles

        files = RunFiles(run_dir)
        self._log = LogTail(files.log, window=window or DEFAULT_WINDOW)
        self._events_path = files.events
        self._events: Any = None  # an EventTail from where the first read's bounded summary ends
        self._lines: deque[str] = deque(maxlen=LOG_LINES)
        self._live: str | None = None
        self._total = 0
        self._generation = 0
        self._loss: list[tuple[float, float]] = []
        self._evals: list[Eval] = []
        self._series: tuple[tuple, tuple, tuple] = ((), (), ())  # built once per change, shared after

    def read(self) -> bool:
        """Take what was appended since the last call; True when anything changed."""
        changed = self._read_log()
        if self._events is None:  # a 2 GB file costs what its summary costs, then only what is appended
            from dialsum_tui.manager.runs.events import run_summary
            from engine.artifacts import EventTail

            summary = run_summary(self._events_path)
            self._events = EventTail(self._events_path, offset=summary.end)
            records = chain(summary.kept, self._events.drain())
        else:
            records = self._events.drain()
        from engine.contract import Eval, TrainLog

        for record in records:
            if isinstance(record, TrainLog) and record.loss is not None:
                self._loss.append((float(record.step if record.step is not None else len(self._loss)), record.loss))
                changed = True
            elif isinstance(record, Eval) and (record.rouge1 is not None or record.final is not None):
                self._evals.append(record)
                changed = True
        if changed:
            self._series = (tuple(self._lines), tuple(self._loss), tuple(self._evals))
        return changed

    def _read_log(self) -> bool:
        chunk = self._log.read_new()
        if chunk is None:
            return False
        if chunk.reset:
            self._lines.clear()
            self._total = 0
            self._generation += 1
        lines = list(chunk.lines)
        if chunk.skipped:
            lines.insert(0, f"… {chunk.skipped:,} bytes skipped (writer faster than the view) …")
        self._lines.extend(lines)
        self._total += len(lines)
        self._live = chunk.live
        return True

    def snapshot(self, run: Run, footprint: int, resume: tuple[ResumePoint | None, str | None] = (None, None)) -> RunSnapshot:
        lines, loss, evals = self._series
        return RunSnapshot(run=run, progress=run_progress(run), loss=loss, evals=evals, log_lines=lines,
                           log_live=self._live, log_total=self._total, log_generation=self._generation,
                           footprint=footprint, resume=resume[0], resumed=resume[1])


class SnapshotSource:
    """Builds snapshots for one front end from its poll thread; repeats none that did not change."""

    def __init__(self, manager: Manager, gpu_source: GpuSource) -> None:
        self.manager = manager
        self.gpu_source = gpu_source
        self.gpu_note = gpu_source.describe()
        try:  # on Slurm the GPU panel shows the jobs' allocations, not this host's devices
            from dialsum_tui.manager.backends.registry import places_devices

            self.slurm = not places_devices(manager.workspace.settings().backend)
        except Exception:  # a broken settings file is reported by the worker and `check`
            self.slurm = False
        self._last_board: tuple | None = None
        self._runs: Sequence[Run] = ()
        self._footprints: dict[tuple[int, str], int] = {}
        self._by_config: dict[tuple[int, str], int] = {}  # (hash of the snapshot, action) -> bytes: a sweep shares configs
        self._reader: RunReader | None = None
        self._reader_id: int | None = None
        self._last_run: RunSnapshot | None = None
        self._resume: dict[tuple[int, str], tuple[ResumePoint | None, str | None]] = {}

    def board(self) -> BoardSnapshot | None:
        """The board now, or None when it equals the one returned last.

        The queued runs' footprints (a config load each) are worked out for at most
        :data:`FOOTPRINT_BUDGET_S` per board: a 1,000-run queue shows at once, its projection a few
        boards later (``projecting`` says how many are still to come).
        """
        from dialsum_tui.manager.runs.models import RunState

        runs = tuple(self.manager.runs())
        self._runs = runs
        alive, pid = self.manager.worker_status()
        devices = () if self.slurm else tuple(self.gpu_source.devices())
        pending = [run for run in runs if run.state in (RunState.QUEUED, RunState.WAITING)]
        deadline = time.monotonic() + FOOTPRINT_BUDGET_S
        known = [self.footprint(run, deadline) for run in pending]
        projected = (sum(b for b in known if b is not None), sum(b is None for b in known))
        key = (runs, self.manager.is_paused(), pid if alive else None, devices, self.manager.disk(),
               tuple(self.manager.attention()), projected)
        if key == self._last_board:
            return None
        self._last_board = key
        # Ownership needs a process lookup per run: only pay for it when a GPU lists processes.
        owners = self.manager.owners(list(runs)) if any(d.processes for d in key[3]) else {}
        note = slurm_note(runs) if self.slurm else self.gpu_note
        return BoardSnapshot(sweeps=self._sweeps(runs), failure_pauses=tuple(self.manager.failure_pauses()),
                             runs=runs, paused=key[1], worker_pid=key[2], gpus=key[3], gpu_note=note,
                             disk=key[4], projected_bytes=projected[0], projecting=projected[1], owners=owners,
                             attention=key[5])

    def _sweeps(self, runs: Sequence[Run]) -> tuple[SweepStatus, ...]:
        """Each sweep's status from the runs just read (one pass; a 200-run sweep costs one dict)."""
        from dialsum_tui.manager.runs.sweeps import sweep_statuses

        return tuple(sweep_statuses(self.manager.store.sweeps(), list(runs)))

    def run(self, run_id: int | None) -> RunSnapshot | None:
        """The run ``run_id`` now (all anew when it differs from the last one asked for), or None
        when nothing changed. Call :meth:`board` first: the run record comes from that read."""
        if run_id is None:
            self._reader_id, self._reader, self._last_run = None, None, None
            return None
        if run_id != self._reader_id or self._reader is None:
            self._reader_id, self._last_run = run_id, None
            self._reader = RunReader(self.manager.workspace.run_dir(run_id))
        changed = self._reader.read()
        run = next((r for r in self._runs if r.id == run_id), None) or self.manager.get(run_id)
        last = self._last_run
        if last is not None and not changed and last.run == run:
            return None
        self._last_run = self._reader.snapshot(run, self.footprint(run) or 0, self.resume_facts(run))
        return self._last_run

    def resume_facts(self, run: Run) -> tuple[ResumePoint | None, str | None]:
        """Where a stopped run can resume, and where a resumed one came from; read once per run and state."""
        key = (run.id, run.state.value)
        if key not in self._resume:
            from dialsum_tui.manager.runs.retry import resumable, resumed_note

            self._resume[key] = (resumable(self.manager.workspace, run), resumed_note(self.manager.workspace.run_dir(run.id)))
        return self._resume[key]

    def footprint(self, run: Run, deadline: float | None = None) -> int | None:
        """Bytes ``run`` is projected to add to the disk, computed once per run and action (and once
        per config snapshot); None when ``deadline`` (``time.monotonic()``) has passed before it was."""
        key = (run.id, run.action.value)
        if key not in self._footprints:
            shared = (hash(run.config_yaml), run.action.value)
            if shared not in self._by_config:
                if deadline is not None and time.monotonic() > deadline:
                    return None
                self._by_config[shared] = _footprint(run, self.manager.workspace.root)
            self._footprints[key] = self._by_config[shared]
        return self._footprints[key]


def _footprint(run: Run, root: Path) -> int:
    from dialsum_tui.manager.guards.disk import projected_footprint

    try:
        from engine.contract import load_snapshot

        return projected_footprint(load_snapshot(run.config_yaml, f"run {run.id}"), run.action.value, root)
    except Exception:  # a projection is advice; a config it cannot read is reported when the run starts
        return 0
