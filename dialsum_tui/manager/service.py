"""Provides the Manager facade: the one API the CLI, the TUI and scripts call to read and change runs.

It writes intents into the store (add, cancel, pause) and the detached worker acts on them, so every
front end sees the same truth and nothing depends on the front end staying open.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialsum_tui.manager import process, procfs
from dialsum_tui.manager.errors import DialsumError
from dialsum_tui.manager.guards.gpu import GpuSource, open_gpu_source
from dialsum_tui.manager.runs import identity
from dialsum_tui.manager.runs.models import Action, Run, RunState
from dialsum_tui.manager.store.database import Store
from dialsum_tui.manager.store.rebuild import Rebuilt, mark_cancelled, open_store, write_queue_record
from dialsum_tui.manager.worker.admission import PAUSE_MEANING
from dialsum_tui.manager.worker.following import run_owners
from dialsum_tui.manager.workspace import sharing
from dialsum_tui.manager.workspace.layout import Workspace, WorkspaceError, find_workspace, init_workspace
from dialsum_tui.manager.workspace.lock import read_lock_holder
from engine import artifacts
from engine.config import ConfigError, load_config
from engine.contract import RunFiles, load_snapshot

if TYPE_CHECKING:
    from dialsum_tui.manager.guards.disk import DiskUsage
    from dialsum_tui.manager.guards.gpu import GpuProcess
    from dialsum_tui.manager.guards.memory import Estimate
    from dialsum_tui.manager.guards.prune import PruneItem
    from dialsum_tui.manager.insights.compare import Comparison
    from dialsum_tui.manager.insights.leaderboard import Submitted
    from dialsum_tui.manager.insights.results import ResultRow
    from dialsum_tui.manager.insights.samples import SampleSet
    from dialsum_tui.manager.runs.logs import LogTail
    from dialsum_tui.manager.runs.retry import RetryPlan
    from dialsum_tui.manager.runs.streaks import FailurePause
    from dialsum_tui.manager.runs.sweeps import Sweep, SweepStatus
    from engine.contract import EventRecord
    from engine.event_reader import RunEvents

WORKER_START_TIMEOUT_S = 10.0
# A worker whose heartbeat is older than this (and than STALL_POLLS of its ticks) is stalled: its
# lock is held, so nothing else may serve the queue, yet it admits and follows nothing.
STALL_AFTER_S = 60.0
STALL_POLLS = 20


@dataclass(frozen=True)
class WorkspaceOps:
    """What a front end does to a workspace without opening its store: find or create it, choose
    who shares it and what the disk quota counts, repair a broken store, stop the worker.

    ``repair`` and ``worker stop`` need only the lock file and ``runs/``: they must work exactly when
    the store does not. :meth:`open` gives the :class:`Manager` for everything else.
    """

    workspace: Workspace

    @classmethod
    def find(cls, where: str | None = None) -> WorkspaceOps:
        """``where`` (``--workspace``), else ``$DIALSUM_WORKSPACE``, else the current directory upwards.

        Raises:
            WorkspaceNotFound: naming the places looked at and ``dialsum-tui init``.
        """
        return cls(find_workspace(where))

    @classmethod
    def at(cls, directory: str | Path) -> WorkspaceOps:
        """The workspace that is or would be at ``directory`` (nothing is checked or created)."""
        return cls(Workspace(Path(directory).expanduser().resolve()))

    @classmethod
    def create(cls, directory: str | Path) -> WorkspaceOps:
        """Create the layout in ``directory`` (or adopt an existing directory); the store is made by :meth:`open`.

        Raises:
            WorkspaceError: the directory cannot be created or written (a read-only mount, /proc, …).
        """
        try:
            return cls(init_workspace(directory))
        except OSError as err:  # /proc/foo, a read-only mount, no permission: say so, no traceback
            raise WorkspaceError(f"{directory}: cannot create a workspace there ({err.strerror or err}); "
                                 "pick a directory you can write to") from None

    def open(self) -> Manager:
        """The facade on this workspace's store (:meth:`Manager.open`)."""
        return Manager.open(self.workspace)

    def share(self, group: str | None) -> str:
        """Share the workspace with Unix group ``group`` (None: private again); the line saying what was done.

        Raises:
            WorkspaceError: the group does not exist or the user is not in it.
        """
        return sharing.set_share_group(self.workspace, group)

    def choose_quota_path(self, chosen: str | None) -> str:
        """Record the tree the disk quota counts (``chosen``, else the workspace); the line saying so.

        Raises:
            WorkspaceError: ``chosen`` is not a directory, or settings.yaml is invalid.
        """
        from dialsum_tui.manager.guards.quota import choose_quota_path

        return choose_quota_path(self.workspace, chosen)

    def model_folders(self) -> list[Path]:
        """Model folders already on disk (relative to the root): ``results`` shows one row each."""
        from dialsum_tui.manager.insights.disk_models import disk_models

        return [m.directory.relative_to(self.workspace.root) for m in disk_models(self.workspace) if m.directory.exists()]

    def repair(self) -> Rebuilt:
        """Keep a broken ``state.db`` as ``state.db.broken-<time>`` and rebuild the store from ``runs/``;
        a healthy store is left alone (an empty :class:`Rebuilt`).

        Raises:
            StoreBroken: a worker still holds the workspace (stop it first).
        """
        from dialsum_tui.manager.store.rebuild import repair

        return repair(self.workspace)

    def worker_pid(self) -> int | None:
        """The pid of the worker serving this workspace, None when none runs (the lock file says)."""
        held, ident = read_lock_holder(self.workspace.lock_path)
        return ident.pid if held and ident else None

    def stop_worker(self, timeout_s: float = 10.0) -> bool:
        """SIGTERM the worker and wait for it to let go of the lock. Running stages keep running.

        Returns:
            True if a worker was running and stopped; False if none was running, or it held on
            past ``timeout_s`` (:meth:`worker_pid` tells the two apart).

        Raises:
            OperationFailed: the worker runs as another user (only they or root may stop it).
        """
        from dialsum_tui.manager.store.integrity import stop_worker

        pid = self.worker_pid()
        if pid is not None:  # another user's worker: refused at once, naming who can stop it
            sharing.stop_route(pid, None, "the worker serving this workspace", "dialsum-tui worker stop")
        return stop_worker(self.workspace, timeout_s)

    def broken_store_message(self, err: BaseException) -> str:
        """What to do about a store SQLite refused (``err``): make it writable, or ``dialsum-tui repair``."""
        from dialsum_tui.manager.store.integrity import broken_message

        return broken_message(self.workspace.db_path, err)


def _request(config_path: str, action: str, gpus: str | None) -> tuple[Action, str | None, Path]:
    """What ``add`` and ``add_sweep`` were asked, checked: the action, the GPU indices, the config's
    absolute path (relative ones start at the caller's directory).

    Raises:
        ConfigError: naming the flag and what it takes.
    """
    try:
        action_ = Action(action)
    except ValueError:
        raise ConfigError(f"--action {action!r}: use one of {', '.join(a.value for a in Action)}") from None
    if gpus is not None:
        gpus = gpus.strip()
        if not all(part.strip().isdigit() for part in gpus.split(",")):
            raise ConfigError(f"--gpu {gpus!r}: expected device indices such as 0 or 0,1")
    path = Path(config_path).expanduser()
    return action_, gpus, path if path.is_absolute() else (Path.cwd() / path).resolve()


@dataclass
class Manager:
    """Everything a front end needs, on one workspace."""

    workspace: Workspace
    store: Store
    _gpu: GpuSource | None = field(default=None, repr=False)
    rebuilt: Rebuilt | None = None  # set when open() found state.db missing and rebuilt it from runs/

    @classmethod
    def open(cls, workspace: Workspace) -> Manager:
        """Open the workspace's store: created on first use, rebuilt from runs/ when it was lost;
        private or shared as its settings say.

        Raises:
            StoreBroken: the database is not usable; the message names ``dialsum-tui repair``.
        """
        sharing.enter(workspace)  # umask and file modes of this process: before anything is created
        store, rebuilt = open_store(workspace)
        return cls(workspace, store, rebuilt=rebuilt)

    # --- runs ---------------------------------------------------------------------------------

    def runs(self) -> list[Run]:
        return self.store.list()

    def get(self, run_id: int) -> Run:
        return self.store.get(run_id)

    def add(self, config_path: str, action: str = "pipeline", gpus: str | None = None, after: int | None = None,
            *, check: bool = True, priority: int | str = 0, overrides: list[str] | None = None) -> Run:
        """Validate a config and queue it; the resolved snapshot goes to ``runs/<id>/config.yaml``.

        ``check=False`` skips the preflight here (the demo's broken-data run): the worker's admission
        preflight then fails the run before its first step, naming the file and line. ``priority``
        (``high``, ``normal``, ``low``) places it before every pending run of a lower one; ``overrides``
        are ``--set KEY=VALUE`` pairs, validated like the file's own values. ``after`` must not name a run
        that already ended without success (nothing would ever start).

        Raises:
            ConfigError: the config is invalid (message names file and key), or an argument is wrong.
        """
        action_, gpus, path = _request(config_path, action, gpus)
        cfg = load_config(path, list(overrides) if overrides else None)
        identity.check_nickname(cfg.model.nickname)
        self._check_after(after)
        placed = _placed(priority)
        checkpoints = self.workspace.resolve(cfg.paths.checkpoints)
        source = identity.latest_source(self.runs(), cfg.model.nickname, checkpoints)
        keys = identity.source_keys(action_, cfg.model.nickname, source, checkpoints)
        if check:
            self._preflight(str(path), cfg, action_, gpus, keys)
        return self._queue(str(path), cfg.model.nickname, cfg.to_yaml(), action_, gpus or None, after,
                           keys | placed)

    def _queue(self, config_path: str, nickname: str, config_yaml: str, action: Action,
               gpus: str | None, after: int | None, keys: dict[str, Any] | None = None, prepare=None,
               sweep: Sweep | None = None) -> Run:
        identity.check_nickname(nickname)  # a retry may bring an old or a --set nickname: never one that cannot run
        # The run directory is made inside the store's transaction: one that cannot be made (a
        # dangling runs/<id> link, a full disk) leaves no ghost run queued behind it.
        run = self.store.add(nickname=nickname, config_path=self.workspace.relative(config_path),
                             config_yaml=config_yaml, action=action, gpus=gpus, after=after,
                             user=procfs.current_user(), first_id=identity.next_free_id(self.workspace.runs_dir),
                             prepare=partial(self._make_run_dir, config_yaml, prepare),
                             gpu_predicted=self._predicted(config_yaml, action, gpus), **(keys or {}))
        write_queue_record(self.workspace, run, sweep)  # so a lost store can be rebuilt with the run's intent
        return run

    def _predicted(self, config_yaml: str, action: Action, gpus: str | None) -> dict[str, float]:
        """``run.gpu_predicted``: each stage's predicted peak GPU GiB (engine.footprint); empty when the
        model's shape is not on disk. A prediction is advice: nothing it raises keeps a run from the queue."""
        from dialsum_tui.manager.guards.memory import gpu_count, predicted_by_stage
        from engine.footprint import predict

        try:
            cfg = load_snapshot(config_yaml, "config snapshot")
            return predicted_by_stage(predict(cfg, self.workspace.root, gpus=gpu_count(gpus)), action.stages)
        except (ConfigError, OSError, ValueError, KeyError, TypeError):
            return {}

    def _measured(self, cfg: Any, gpus: str | None, runs: list[Run] | None = None,
                  key_of: Any = None) -> dict[str, Any]:
        """stage → the peak measured on a stored run of the same memory key as ``cfg`` (guards.memory);
        ``runs`` and a ``key_of`` cache when matching many configs against the same store."""
        from dialsum_tui.manager.guards.memory import gpu_count, measured_peaks, memory_key, snapshot_key

        return measured_peaks(memory_key(cfg, gpu_count(gpus)), self.runs() if runs is None else runs,
                              key_of or snapshot_key)

    def _make_run_dir(self, config_yaml: str, then: Any, run_id: int) -> None:
        """``runs/<id>/`` with the config snapshot, then ``then(run_id)`` (a retry's record).

        Raises:
            WorkspaceError: ``runs/<id>`` is there but is no directory (a dangling link, a file).
        """
        run_dir = self.workspace.run_dir(run_id)
        try:
            run_dir.mkdir(mode=sharing.dir_mode(), parents=True, exist_ok=True)
        except FileExistsError:
            raise WorkspaceError(f"{run_dir} exists and is not a directory (a dangling link?); nothing was queued: "
                                 "move it out of runs/ and add again") from None
        os.chmod(run_dir, sharing.dir_mode())
        artifacts.atomic_write_text(RunFiles(run_dir).config, config_yaml, mode=sharing.file_mode())
        if then is not None:
            then(run_id)

    def _preflight(self, source: str, cfg: Any, action: Action, gpus: str | None,
                   keys: dict[str, Any] | None = None, checks: Any = None) -> None:
        """Refuse a run that would fail later for a reason known now (data, model path, GPUs, ...).

        Raises:
            ConfigError: listing every problem with the key or file to change (the CLI exits 2).
        """
        from dialsum_tui.manager.guards.preflight import describe, preflight
        from dialsum_tui.manager.runs.models import parse_gpus

        # What an infer/evaluate-only run reads: its source's model and predictions (identity.source_keys).
        fallback = cfg.model.nickname
        reads = ((keys or {}).get("model_key") or fallback, (keys or {}).get("predictions_key") or fallback)
        problems = preflight(self.workspace, cfg, action.stages, parse_gpus(gpus), self.gpu_source(), checks=checks, keys=reads,
                             measured=self._measured(cfg, gpus))
        if problems:
            raise ConfigError(f"{source}: not queued; {len(problems)} problem(s) would fail it later:\n"
                              f"{describe(problems)}")

    def _check_after(self, after: int | None) -> None:
        """``--after ID``: the run must exist and may not have ended without success already.

        Raises:
            RunNotFound, DialsumError: exit 2, naming the run and what to do.
        """
        if after is None:
            return
        dep = self.store.get(after)
        if dep.state.is_final and dep.state is not RunState.SUCCEEDED:
            kind = f" ({dep.failure_kind})" if dep.failure_kind else ""
            raise DialsumError(f"--after {after}: run {after} ({dep.nickname}) ended {dep.state.value}{kind}, so this "
                               f"run would never start; `dialsum-tui retry {after}`, then --after the new run")

    # --- sweeps -------------------------------------------------------------------------------

    def add_sweep(self, config_path: str, *, axes: list[str] | None = None, seeds: int | None = None,
                  sweep_file: str | None = None, overrides: list[str] | None = None, action: str = "pipeline",
                  gpus: str | None = None, after: int | None = None, priority: int | str = 0,
                  check: bool = True) -> tuple[Sweep, list[Run]]:
        """Expand one config into a sweep (``--sweep KEY=V1,V2`` axes as a grid, ``--seeds N``, a sweep
        file of override sets: :func:`runs.sweeps.plan_sweep`), validate and preflight every variant as
        ``add`` does, record the sweep (``s1``, ``s2``…) and queue its runs together, in order.

        Raises:
            ConfigError: the config or a flag is wrong, or one variant is invalid or would fail
                (``SweepError`` names the variant and its values); then nothing is queued.
        """
        from dialsum_tui.manager.guards.preflight import DataChecks
        from dialsum_tui.manager.runs.sweeps import SweepError, plan_sweep

        action_, gpus, path = _request(config_path, action, gpus)
        plan = plan_sweep(path, axes, seeds, sweep_file, overrides)
        self._check_after(after)
        placed = _placed(priority)
        checks = DataChecks()  # the variants share their data: each CSV is read once
        runs_now = self.runs() if action_ not in identity.TRAINS else []
        keyed = []
        for variant in plan.variants:
            identity.check_nickname(variant.nickname)
            checkpoints = self.workspace.resolve(variant.config.paths.checkpoints)
            source = identity.latest_source(runs_now, variant.nickname, checkpoints) if runs_now else None
            keys = identity.source_keys(action_, variant.nickname, source, checkpoints)
            if check:
                try:
                    self._preflight(f"{path} [sweep variant {variant.nickname}: {variant.label}]", variant.config,
                                    action_, gpus, keys, checks=checks)
                except ConfigError as err:
                    raise SweepError(f"sweep not queued: variant {variant.nickname} ({variant.label}) of "
                                     f"{len(plan.variants)} would fail:\n{err}") from None
            keyed.append((variant, keys))
        record = plan.record()  # its config path as the runs keep theirs: relative to the workspace
        sweep = self.store.new_sweep(replace(record, config_path=self.workspace.relative(record.config_path)))
        queued: list[Run] = []
        try:
            for variant, keys in keyed:
                queued.append(self._queue(str(path), variant.nickname, variant.config.to_yaml(), action_,
                                          gpus or None, after, keys | placed | {"sweep": sweep.id}, sweep=sweep))
        except BaseException:
            for run in queued:  # all or nothing: what got in before the error does not run
                self.cancel(run.id)
            raise
        return sweep, queued

    def sweeps(self) -> list[SweepStatus]:
        """Every sweep as it is now: its latest run per variant, progress, best (oldest sweep first)."""
        from dialsum_tui.manager.runs.sweeps import sweep_statuses

        return sweep_statuses(self.store.sweeps(), self.runs())

    def sweep(self, sweep_id: str | int) -> SweepStatus:
        """One sweep now (``s3``, or ``3``).

        Raises:
            SweepNotFound: no such sweep (exit 2).
        """
        from dialsum_tui.manager.runs import sweeps

        return sweeps.sweep_status(self.store.get_sweep(sweeps.sweep_id(sweep_id)), self.runs())

    def cancel_sweep(self, sweep_id: str | int) -> list[Run]:
        """Cancel every run of the sweep that has not ended (:meth:`cancel` each); the runs as they are after."""
        status = self.sweep(sweep_id)
        return [self.cancel(run.id) if not run.state.is_final else run for run in status.runs]

    def retry_sweep(self, sweep_id: str | int) -> list[Run]:
        """Queue again each variant whose latest run failed or was interrupted (:meth:`retry`, same config,
        in the sweep); the sweep's end is announced again when they end.

        Raises:
            DialsumError: no variant failed (exit 2).
        """
        status = self.sweep(sweep_id)
        failed = [run for run in status.runs if run.state in (RunState.FAILED, RunState.INTERRUPTED)]
        if not failed:
            raise DialsumError(f"sweep {status.id}: no variant failed or was interrupted ({status.progress_text}); "
                               "nothing to retry")
        self.store.reopen_sweep(status.id)  # before: a variant retried quickly must not end it unannounced
        return [self.retry(run.id) for run in failed]

    def compare_sweep(self, sweep_id: str | int) -> Comparison:
        """Compare the sweep's runs (the latest of each variant) on metrics, curves and its swept keys only.

        Raises:
            SweepNotFound, InsightsError: no such sweep, fewer than two runs.
        """
        from dialsum_tui.manager.insights.compare import compare_runs

        status = self.sweep(sweep_id)
        return compare_runs(self.workspace, list(status.runs), keys=list(status.sweep.keys))

    def failure_pauses(self) -> list[FailurePause]:
        """What failure streaks paused (``pause_after_failures``): each pause's cause, runs and scope;
        :meth:`resume` lifts them."""
        return self.store.failure_pauses()

    def cancel(self, run_id: int) -> Run:
        """Cancel a pending run now, or ask the worker to stop a running one (SIGINT first).

        With no worker running, a running run is stopped here: its stage by pid and start time
        (SIGINT → SIGTERM → SIGKILL, never a reused pid), then marked cancelled; its ``reason`` says
        which signals were really sent.

        A stage belongs to whoever's worker launched it, and Unix lets only that user (or root)
        signal it: when the running worker may not, the stop is delivered here if this user may,
        else refused at once, naming who can (``sharing.stop_route``).

        Raises:
            OperationFailed: neither the worker nor this user may signal the stage; nothing was changed.
        """
        current = self.store.get(run_id)
        running, worker = self.worker_status()
        stop_here = not running
        if current.state is RunState.RUNNING and current.pid and \
                process.is_alive(current.pid, current.pid_start_time or 0.0):
            stop_here = sharing.stop_route(current.pid, worker if running else None,
                                           f"run {run_id}'s {current.stage or 'stage'}", f"dialsum-tui cancel {run_id}")
        run = self.store.request_cancel(run_id)
        if run.state is RunState.RUNNING and stop_here:
            why = (f"the worker (pid {worker}, user {sharing.process_user(worker)}) may not signal it"
                   if running and worker else "no worker was running")
            run = self._cancel_without_worker(run, why)
        if run.state is RunState.CANCELLED and run.started_at is None:
            mark_cancelled(self.workspace, run)  # a rebuilt store must not queue it again
        return run

    def _cancel_without_worker(self, run: Run, why: str = "no worker was running") -> Run:
        from dialsum_tui.manager.backends.protocol import BackendUnavailable
        from dialsum_tui.manager.backends.registry import open_backends
        from dialsum_tui.manager.store.database import IllegalTransition
        from dialsum_tui.manager.workspace.settings import env_settings

        stage = run.stage or "its stage"
        grace = tuple(env_settings().stop_grace or ()) + process.DEFAULT_GRACE_S
        try:
            settings = self.workspace.settings()
        except WorkspaceError:  # a broken settings file must not keep a run from being cancelled
            from dialsum_tui.manager.workspace.settings import Settings

            settings = Settings()
        backend = open_backends(settings)[run.backend]
        handle = backend.handle_of(run)
        if handle is None:
            reason = f"cancelled before {stage} started ({why})"
        else:
            try:
                what = backend.stop_now(handle, grace[:2])
            except BackendUnavailable as err:  # the stage may still run: keep the run as it is, say why
                raise RuntimeError(f"run {run.id}: could not stop {handle.ref}: {err}") from None
            reason = f"cancelled during {stage}: {why}, so {what}"
        try:
            return self.store.transition(run.id, RunState.CANCELLED, reason=reason, pid=None, pid_start_time=None)
        except IllegalTransition:
            return self.store.get(run.id)  # a worker started meanwhile and recorded its end

    def retry(self, run_id: int, action: str | None = None, plan: RetryPlan | None = None) -> Run:
        """Queue a new run with the same config snapshot (e.g. ``action="infer"`` re-infers without retraining),
        or the one of ``plan`` (:meth:`plan_retry`: changed keys, resume), recorded in ``runs/<new>/retry.json``."""
        old = self.store.get(run_id)
        try:
            action_ = Action(action) if action else old.action
        except ValueError:
            raise ConfigError(f"--action {action!r}: use one of {', '.join(a.value for a in Action)}") from None
        # An infer/evaluate-only retry reads the model/predictions of the run it came from, never a namesake's.
        keys = identity.source_keys(action_, old.nickname, old, self.workspace.checkpoints_dir)
        keys = keys | _carried(old, plan)  # its priority; its sweep, unless the retry changes the config
        config_yaml = plan.config_yaml if plan is not None else old.config_yaml
        self._preflight(f"run {run_id}", load_snapshot(config_yaml, f"run {run_id} config snapshot"), action_,
                        old.gpus, keys)
        if plan is None:
            return self._queue(old.config_path, old.nickname, old.config_yaml, action_, old.gpus, None, keys)
        from dialsum_tui.manager.runs.retry import write_record

        return self._queue(plan.config_path, plan.nickname, plan.config_yaml, action_, old.gpus, None, keys,
                           prepare=lambda new_id: write_record(self.workspace.run_dir(new_id), plan))
    def plan_retry(self, run_id: int, resume: bool = False, overrides: list[str] | None = None,
                   config_file: str | None = None, action: str | None = None) -> RetryPlan:
        """Work out a retry with changes or a resume, without queueing it (:func:`manager.retry.plan_retry`).

        Raises:
            ConfigError: invalid config or --set; ``RetryRefused`` (a ConfigError) when it cannot resume.
        """
        from dialsum_tui.manager.runs.retry import plan_retry

        try:
            action_ = Action(action) if action else None
        except ValueError:
            raise ConfigError(f"--action {action!r}: use one of {', '.join(a.value for a in Action)}") from None
        run = self.store.get(run_id)
        if resume:
            _refuse_finished_training(run, action_ or run.action)
        return plan_retry(self.workspace, run, resume=resume, overrides=overrides, config_file=config_file,
                          action=action_)

    PAUSE_MEANING = PAUSE_MEANING  # what pause does, for every front end to say the same way

    def pause(self) -> None:
        self.store.set_paused(True)

    def resume(self) -> None:
        self.store.set_paused(False)
        self.store.clear_failure_pauses()  # the user fixed the cause: the streak starts over

    def is_paused(self) -> bool:
        return self.store.paused()

    def move(self, run_id: int, delta: int) -> None:
        self.store.move(run_id, delta)

    def pending(self) -> list[Run]:
        """The queued and waiting runs, in the order the worker admits them."""
        return [run for run in self.runs() if run.state in (RunState.QUEUED, RunState.WAITING)]

    def move_to(self, run_id: int, *, position: int | None = None, before: int | None = None,
                last: bool = False) -> list[Run]:
        """Reorder the queue: put run ``run_id`` at ``position`` (1 = next to start) among the pending
        runs, or just before run ``before``, or ``last``. Runs that started keep their places.

        Returns:
            The pending runs in their new order.

        Raises:
            DialsumError: a run that is not queued or waiting, or a position out of range (exit 2).
        """
        order = [run.id for run in self.pending()]
        if run_id not in order:
            run = self.get(run_id)  # RunNotFound for an unknown id
            raise DialsumError(f"run {run_id} is {run.state.value}; only queued or waiting runs can be moved "
                               "(`dialsum-tui ls` shows the queue)")
        if before is not None:
            if before not in order:
                other = self.get(before)
                raise DialsumError(f"--before {before}: run {before} is {other.state.value}, not in the queue; "
                                   f"pending runs: {', '.join(map(str, order))}")
            target = order.index(before) - (order.index(before) > order.index(run_id))
        elif last:
            target = len(order) - 1
        elif position is not None:
            if not 1 <= position <= len(order):
                raise DialsumError(f"--to {position}: the queue has {len(order)} pending run(s); "
                                   f"give a position from 1 to {len(order)}")
            target = position - 1
        else:
            raise DialsumError("say where to: --to N, --top, --bottom or --before ID")
        target = _within_priority(run_id, target, order, {run.id: run.priority for run in self.pending()},
                                  ends=last or position == 1)
        delta = target - order.index(run_id)
        if delta:
            try:
                self.store.move(run_id, delta)
            except ValueError as err:  # it started meanwhile
                raise DialsumError(str(err)) from None
        return self.pending()

    # --- worker -------------------------------------------------------------------------------

    def worker_status(self) -> tuple[bool, int | None]:
        """(running, pid) of this workspace's worker."""
        held, ident = read_lock_holder(self.workspace.lock_path)
        return held, (ident.pid if held and ident else None)

    def ensure_worker(self) -> int:
        """Start the detached worker unless one runs; return its pid.

        Raises:
            RuntimeError: if it did not take the lock in time (its log is named).
        """
        running, pid = self.worker_status()
        if running and pid:
            return pid
        self.workspace.state_dir.mkdir(mode=sharing.dir_mode(), exist_ok=True)
        # Created here with this workspace's mode: the process module opens it 0600 (private) otherwise.
        os.close(os.open(self.workspace.worker_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, sharing.file_mode()))
        process.spawn_detached(
            [sys.executable, "-m", "dialsum_tui.manager.worker", str(self.workspace.root)],
            cwd=self.workspace.root,
            log_path=self.workspace.worker_log,
        )
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            running, pid = self.worker_status()
            if running and pid:
                return pid
            time.sleep(0.05)
        raise RuntimeError(f"the worker did not start; see {self.workspace.worker_log}")

    def stop_worker(self, timeout_s: float = 10.0) -> bool:
        """SIGTERM the worker and wait for it to let go of the lock. Running stages keep running.

        Returns:
            True if a worker was running and stopped.
        """
        return WorkspaceOps(self.workspace).stop_worker(timeout_s)

    def worker_heartbeat_age(self) -> float | None:
        """Seconds since the running worker last completed a pass (its heartbeat, ``beat`` in its
        health file, trusted only while the file carries the live worker's pid); None when no worker
        runs or it wrote none yet."""
        import json

        from dialsum_tui.manager.worker.health import health_path

        running, pid = self.worker_status()
        if not running or pid is None:
            return None
        try:
            body = json.loads(health_path(self.workspace).read_text(encoding="utf-8"))
            beat = float(body["beat"]) if body.get("pid") == pid else None
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
        return None if beat is None else max(0.0, time.time() - beat)  # a clock stepped back: fresh

    def worker_stalled(self) -> str | None:
        """Why the running worker looks stuck (stopped by a signal, or no pass completed for
        :data:`STALL_AFTER_S` / :data:`STALL_POLLS` ticks), or None when it works or none runs."""
        from dialsum_tui.manager.worker.health import HEARTBEAT_S, stall_reason
        from dialsum_tui.manager.workspace.settings import env_settings

        running, pid = self.worker_status()
        if not running or pid is None:
            return None
        try:
            poll_s = env_settings().worker_poll_s
        except (DialsumError, ValueError):  # a bad DIALSUM_WORKER_POLL_S: the worker itself says so
            poll_s = 0.0
        limit = max(STALL_AFTER_S, STALL_POLLS * poll_s, 4 * HEARTBEAT_S)
        return stall_reason(self.workspace, pid, self.worker_heartbeat_age(), limit)

    # --- files --------------------------------------------------------------------------------

    def log_path(self, run_id: int) -> Path:
        return RunFiles(self.workspace.run_dir(run_id)).log

    def log_tail(self, run_id: int) -> LogTail:
        """A reader of run ``run_id``'s whole log from its start, a chunk at a time (tqdm redraws collapsed)."""
        from dialsum_tui.manager.runs.logs import LogTail

        return LogTail(self.log_path(run_id), window=None)

    def store_problem(self) -> str | None:
        """What the running worker said about its ``state.db`` (removed or replaced under it), or None."""
        from dialsum_tui.manager.store.integrity import worker_store_problem

        return worker_store_problem(self.workspace)

    def events(self, run_id: int) -> tuple[EventRecord, ...]:
        """Run ``run_id``'s events as typed records in file order, bounded whatever the file's size:
        every rare one (started, phase, eval, artifact, warning, finished, failed), each stage's last
        progress and a loss curve of a few hundred points (:meth:`event_summary`'s ``kept``)."""
        return self.event_summary(run_id).kept

    def event_summary(self, run_id: int) -> RunEvents:
        """The bounded summary of run ``run_id``'s ``events.jsonl``, per stage (read once per file state)."""
        from dialsum_tui.manager.runs.events import run_summary

        return run_summary(RunFiles(self.workspace.run_dir(run_id)).events)

    # --- results, GPU, disk -------------------------------------------------------------------

    def results(self) -> list[ResultRow]:
        from dialsum_tui.manager.insights.results import result_rows

        return result_rows(self.workspace, self.runs())

    def results_text(self, fmt: str) -> str:
        """The results table as ``table``, ``markdown``, ``csv`` or ``json`` (:meth:`result_formats`)."""
        from dialsum_tui.manager.insights.results import format_results

        return format_results(self.results(), fmt)

    @staticmethod
    def result_formats() -> tuple[str, ...]:
        from dialsum_tui.manager.insights.results import FORMATS

        return tuple(FORMATS)

    def compare(self, run_ids: list[int]) -> Comparison:
        """Metrics, differing config keys and curves of two or more runs.

        Raises:
            RunNotFound, InsightsError: an unknown id, fewer than two different runs.
        """
        from dialsum_tui.manager.insights.compare import compare_runs

        return compare_runs(self.workspace, [self.get(run_id) for run_id in run_ids])

    @staticmethod
    def run_label(run: Run) -> str:
        """How a run is named in tables and legends: ``"koBART #3"``."""
        from dialsum_tui.manager.insights.compare import run_label

        return run_label(run)

    def samples(self, run_id: int, vs: int | None = None) -> SampleSet:
        """Per-dialogue dev predictions and ROUGE of a run (beside run ``vs``'s when given).

        Raises:
            InsightsError: the run has no dev predictions (the message names the command that makes them).
        """
        from dialsum_tui.manager.insights.samples import load_samples

        return load_samples(self.workspace, self.get(run_id), self.get(vs) if vs is not None else None)

    @staticmethod
    def samples_text(sample_set: SampleSet, sort: str, filter_: str | None, limit: int | None) -> str:
        from dialsum_tui.manager.insights.samples import format_samples

        return format_samples(sample_set, sort, filter_, limit)

    @staticmethod
    def sample_choices() -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(sorts, filters) that :meth:`samples_text` and ``SampleSet.view`` accept."""
        from dialsum_tui.manager.insights.samples import FILTERS, SORTS

        return tuple(SORTS), tuple(FILTERS)

    def submit(self, run_id: int, to: str | None = None) -> Submitted:
        """Validate run ``run_id``'s submission (test order, no empty summary) and copy it for upload.

        Raises:
            InsightsError: the file is missing or invalid (the message says which row).
        """
        from dialsum_tui.manager.insights.leaderboard import submit

        return submit(self.workspace, self.get(run_id), to)

    def record_score(self, run_id: int, score: str) -> dict[str, Any]:
        """Record a public-leaderboard score next to the run; the entry (``score``, ``at``, ``dev_final``,
        ``tokenizer``, ``scorer``, ``submission``).

        Raises:
            InsightsError: the score is not a number in 0..100.
        """
        from dialsum_tui.manager.insights.leaderboard import record_score

        return record_score(self.workspace, self.get(run_id), score)

    def handoff(self) -> str:
        """The Markdown hand-off note (results table, GPU, disk, active runs, failures, next steps)."""
        from dialsum_tui.manager.insights.handoff import handoff_markdown
        from dialsum_tui.manager.insights.results import result_rows

        runs = self.runs()
        source = self.gpu_source()
        try:
            devices = source.devices()
        except Exception as err:  # the note must still be written when NVML misbehaves
            devices, note = [], f"{source.describe()} (query failed: {err})"
        else:
            note = source.describe()
        return handoff_markdown(self.workspace, runs, result_rows(self.workspace, runs), devices, note, self.disk())

    def disk(self) -> DiskUsage | None:
        """The worker's cached measurement, judged against today's settings (quota, margin); never
        runs du here (it can take a minute). Its ``summary()`` says how old it is."""
        from dialsum_tui.manager.guards.disk import read_cached
        from dialsum_tui.manager.worker.disk_meter import judge_cache

        # Another tree than today's quota_path (or unreadable settings): shown as measured; attention() says why.
        return judge_cache(self.workspace)[0] or read_cached(self.workspace)

    def attention(self) -> list[str]:
        """What needs the user now: the worker down, a part of it failing, a disk the guard cannot
        vouch for, a disk over quota. Empty when all is well (``check`` and ``worker status`` exit 0)."""
        from dialsum_tui.manager.worker.disk_meter import judge_cache
        from dialsum_tui.manager.worker.health import read_ailments
        from engine.units import format_used_of

        running, pid = self.worker_status()
        out = [] if running else ["worker not running: nothing is admitted or followed (`dialsum-tui worker start`)"]
        ailments = read_ailments(self.workspace, pid)
        out += [f"worker {a.part}: {a.message}" for a in ailments]
        measure_error = next((a.message for a in ailments if a.part == "disk"), None)
        usage, problem = judge_cache(self.workspace, measure_error)
        if problem is not None and not any(a.part in ("disk", "settings") for a in ailments):
            out.append(f"disk guard: {problem}")
        if usage is not None and usage.full:
            out.append(f"disk over quota: {format_used_of(usage.used_bytes, usage.limit_bytes)} used on {usage.path}, "
                       "within the margin; `dialsum-tui prune` or raise quota_gb")
        out += [pause.message for pause in self.store.failure_pauses()]  # check exits 1 while one holds runs
        stalled = self.worker_stalled() if running else None
        if stalled:
            out.append(f"worker stalled: {stalled}")
        return out

    def held_by_guards(self) -> list[Run]:
        """Waiting runs that a guard holds back (GPU memory held, the disk over or unmeasured, NVML
        unreadable), not the pause, a failure streak's pause, a run they depend on, or a run on the same device."""
        from dialsum_tui.manager.runs.streaks import HELD_PREFIX
        from dialsum_tui.manager.worker.admission import PAUSED_REASON, SAME_DEVICE_REASON, dependency

        runs = self.runs()
        by_id = {run.id: run for run in runs}
        return [run for run in runs if run.state is RunState.WAITING and run.reason != PAUSED_REASON
                and not (run.reason or "").startswith(SAME_DEVICE_REASON)  # a shared GPU's "no room yet" too
                and dependency(run, by_id) is None and not (run.reason or "").startswith(HELD_PREFIX)]

    def backend_check(self) -> BackendCheck:
        """Who runs the stages; on Slurm, whether sbatch/squeue/sacct answer and accept the settings."""
        try:
            settings = self.workspace.settings()
        except WorkspaceError as err:  # attention already names the broken key; the backend is unknown meanwhile
            return BackendCheck("unknown", False, f"settings.yaml is invalid: {err}")
        from dialsum_tui.manager.backends.registry import backend_check

        ok, detail = backend_check(settings)
        return BackendCheck(settings.backend, ok, detail)

    def gpu_source(self) -> GpuSource:
        if self._gpu is None:
            self._gpu = open_gpu_source()
        return self._gpu

    def _memory_devices(self) -> tuple[list[Any], str]:
        """This host's GPUs for a memory check, and what to say when there are none to check against."""
        try:
            settings = self.workspace.settings()
        except WorkspaceError:
            settings = None
        from dialsum_tui.manager.backends.registry import places_devices

        if settings is not None and not places_devices(settings.backend):
            return [], f"backend {settings.backend}: the cluster's GPUs are not visible here"
        source = self.gpu_source()
        try:
            return source.devices(), f"no GPU visible here: {source.describe()}"
        except Exception as err:  # NVML can fail at any call: the prediction is still worth showing
            return [], f"GPUs unreadable ({source.describe()}: {err})"

    def estimate(self, config_path: str, gpus: str | None = None) -> Estimate:
        """Each stage's predicted GPU memory for a config file, its parts, the peaks measured on runs of
        the same memory-relevant config, and whether it fits ``gpus`` (default: the host's largest GPU).

        Raises:
            ConfigError: the config is invalid, or ``--gpu`` names no device of this host.
        """
        from dialsum_tui.manager.guards.preflight import check_gpus, estimate
        from dialsum_tui.manager.runs.models import parse_gpus
        from engine.contract import PIPELINE

        if gpus is not None and not all(part.strip().isdigit() for part in gpus.strip().split(",")):
            raise ConfigError(f"--gpu {gpus!r}: expected device indices such as 0 or 0,1")
        path = Path(config_path).expanduser()
        cfg = load_config(path if path.is_absolute() else (Path.cwd() / path).resolve())
        devices, no_gpu = self._memory_devices()
        wanted = parse_gpus(gpus)
        if devices and wanted:
            problems = check_gpus(wanted, self.gpu_source(), devices)
            if problems:
                raise ConfigError(str(problems[0]))
        return estimate(self.workspace, cfg, PIPELINE, wanted, devices, self._measured(cfg, gpus),
                        source=config_path, no_gpu=no_gpu)

    def memory_outlook(self) -> list[tuple[Run, Estimate]]:
        """The memory estimate of every queued or waiting run against its GPU(s) (``check``): what each
        stage needs (measured, else predicted), whether it fits, and the cheapest fix when it does not."""
        from dialsum_tui.manager.guards.memory import key_cache
        from dialsum_tui.manager.guards.preflight import estimate
        from dialsum_tui.manager.runs.models import parse_gpus

        runs = self.runs()
        pending = [run for run in runs if run.state in (RunState.QUEUED, RunState.WAITING)]
        if not pending:
            return []
        devices, no_gpu = self._memory_devices()
        key_of = key_cache()
        out = []
        for run in pending:
            try:
                cfg = load_snapshot(run.config_yaml, f"run {run.id} config snapshot")
            except ConfigError:
                continue  # the worker fails it at admission, naming the key
            out.append((run, estimate(self.workspace, cfg, run.stages, parse_gpus(run.gpus), devices,
                                      self._measured(cfg, run.gpus, runs, key_of), source=f"run {run.id}",
                                      no_gpu=no_gpu)))
        return out

    def leftovers(self) -> list[tuple[GpuProcess, int, str]]:
        """Processes of our finished runs still holding GPU memory."""
        from dialsum_tui.manager.guards.checks import GpuGuard

        runs = self.runs()
        active = [r.id for r in runs if r.state is RunState.RUNNING]
        return GpuGuard(self.gpu_source(), self.workspace.settings()).leftovers(run_owners(runs), active)

    def owners(self, runs: list[Run]) -> dict[int, tuple[int, str]]:
        """pid → (run id, nickname) for our runs' processes (launcher and ranks), reused pids excluded."""
        return run_owners(runs)

    def kill_leftovers(self, pids: list[int]) -> list[int]:
        """Stop the given leftover processes (only those :meth:`leftovers` lists as ours).

        Returns:
            The pids that were signalled; foreign or unknown pids are skipped.
        """
        ours = {proc.pid for proc, _run, _nick in self.leftovers()}
        done = []
        for pid in pids:
            started = process.start_time(pid)
            if pid not in ours or started is None:
                continue
            ident = process.Identity(pid, started)
            if os.getpgid(pid) == pid:  # a stage leader: its forked workers go with it
                process.stop_group(ident, grace=(5.0, 5.0))
            else:  # a surviving forked child of a stage: signal it alone
                process.signal_pid(ident, 15)
            done.append(pid)
        return done

    def shared_caches(self) -> list[Path]:
        """HF caches outside the workspace: :meth:`prune_plan` leaves them alone unless ``include_shared``."""
        from dialsum_tui.manager.guards.prune import shared_caches

        return shared_caches(self.workspace)

    def prune_plan(self, include_shared: bool = False) -> list[PruneItem]:
        from dialsum_tui.manager.guards.prune import prune_plan

        return prune_plan(self.workspace, self.runs(), include_shared)

    def prune_kept(self) -> list[PruneItem]:
        """Checkpoints prune leaves alone, each saying why (an active run, a resume point)."""
        from dialsum_tui.manager.guards.prune import prune_kept

        return prune_kept(self.workspace, self.runs())

    def prune_effect(self, freed_bytes: int) -> str:
        """The one line relating what prune frees to the quota (CLI and TUI)."""
        from dialsum_tui.manager.guards.prune import quota_effect

        usage = self.disk()
        return quota_effect(freed_bytes, usage.used_bytes if usage else None, usage.limit_bytes if usage else None)

    def prune(self, items: list[PruneItem]) -> int:
        from dialsum_tui.manager.guards.prune import prune

        return prune(items)


@dataclass(frozen=True)
class BackendCheck:
    """Who runs the stages, whether it can now, and the detail (Slurm's answers, or why not)."""

    name: str
    ok: bool
    detail: str


def _within_priority(run_id: int, target: int, order: list[int], priority: dict[int, int], ends: bool) -> int:
    """Where a move may put ``run_id``: among the pending runs of its own priority (a high-priority run
    starts before every normal one whatever the order). ``--top``/``--bottom`` stop at the edge of
    that band; a place beyond it is refused.

    Raises:
        DialsumError: ``--to``/``--before`` names a place among runs of another priority (exit 2).
    """
    from dialsum_tui.manager.runs.priority import priority_name

    mine = priority.get(run_id, 0)
    band = [i for i, rid in enumerate(order) if priority.get(rid, 0) == mine]
    if band[0] <= target <= band[-1]:
        return target
    if ends:
        return min(max(target, band[0]), band[-1])
    name = priority_name(mine)
    raise DialsumError(f"run {run_id} has {name} priority: it moves among positions {band[0] + 1}-{band[-1] + 1} "
                       f"(the {name}-priority runs); higher-priority runs start first, lower ones after, "
                       "whatever the order")


def _placed(priority: int | str | None) -> dict[str, int]:
    """The store fields of ``--priority`` (none for normal)."""
    from dialsum_tui.manager.runs.priority import parse_priority

    value = parse_priority(priority)
    return {"priority": value} if value else {}


def _carried(old: Run, plan: RetryPlan | None) -> dict[str, Any]:
    """What a retry keeps of the run it retries: its priority, and its sweep while the config stays the variant's."""
    fields: dict[str, Any] = {"priority": old.priority} if old.priority else {}
    if old.sweep and (plan is None or not plan.diff):
        fields["sweep"] = old.sweep
    return fields


def _refuse_finished_training(run: Run, action: Action) -> None:
    """A resume of a run whose training finished has nothing to continue: refuse it with the reason
    (it would queue "resuming from step 400/400") and the retry that does what was meant.

    Raises:
        RetryRefused: the run succeeded, or stopped after its train stage.
    """
    from dialsum_tui.manager.runs.retry import RetryRefused
    from engine.contract import Stage

    if Stage.TRAIN not in action.stages or Stage.TRAIN not in run.stages or not run.state.is_final:
        return  # plan_retry says what is wrong with those
    if run.state is RunState.SUCCEEDED:
        raise RetryRefused(f"--resume: run {run.id} succeeded, its training finished; there is nothing to resume. "
                           f"`dialsum-tui retry {run.id}` trains again from the start, "
                           f"`dialsum-tui retry {run.id} --action infer` re-infers from its final_model")
    stage = run.failed_stage or run.stage
    if stage not in (None, Stage.TRAIN):
        raise RetryRefused(f"--resume: run {run.id} finished its training and stopped in {stage} "
                           f"({run.state.value}); there is nothing to resume. "
                           f"`dialsum-tui retry {run.id} --action {stage}` runs {stage} again from its final_model")
