"""Provides the Manager facade: the one API the CLI, the TUI and scripts call to read and change runs.

It writes intents into the store (add, cancel, pause) and the detached worker acts on them, so every
front end sees the same truth and nothing depends on the front end staying open.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialsum_tui.manager import process, procfs
from dialsum_tui.manager.guards.gpu import GpuSource, open_gpu_source
from dialsum_tui.manager.runs import identity
from dialsum_tui.manager.runs.models import Action, Run, RunState
from dialsum_tui.manager.store.database import Store
from dialsum_tui.manager.store.rebuild import Rebuilt, mark_cancelled, open_store, write_queue_record
from dialsum_tui.manager.worker.following import run_owners
from dialsum_tui.manager.workspace import sharing
from dialsum_tui.manager.workspace.layout import Workspace
from dialsum_tui.manager.workspace.lock import read_lock_holder
from engine import artifacts
from engine.config import ConfigError, load_config
from engine.contract import RunFiles, load_snapshot

if TYPE_CHECKING:
    from dialsum_tui.manager.guards.disk import DiskUsage
    from dialsum_tui.manager.guards.gpu import GpuProcess
    from dialsum_tui.manager.guards.prune import PruneItem
    from dialsum_tui.manager.insights.results import ResultRow
    from dialsum_tui.manager.runs.retry import RetryPlan

WORKER_START_TIMEOUT_S = 10.0


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
            *, check: bool = True) -> Run:
        """Validate a config and queue it; the resolved snapshot goes to ``runs/<id>/config.yaml``.

        ``check=False`` skips the preflight here (the demo's broken-data run): the worker's admission
        preflight then fails the run before its first step, naming the file and line.

        Raises:
            ConfigError: the config is invalid (message names file and key), or an argument is wrong.
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
        if not path.is_absolute():
            path = (Path.cwd() / path).resolve()
        cfg = load_config(path)
        identity.check_nickname(cfg.model.nickname)
        if after is not None:
            self.store.get(after)
        checkpoints = self.workspace.resolve(cfg.paths.checkpoints)
        source = identity.latest_source(self.runs(), cfg.model.nickname, checkpoints)
        keys = identity.source_keys(action_, cfg.model.nickname, source, checkpoints)
        if check:
            self._preflight(str(path), cfg, action_, gpus, keys)
        return self._queue(str(path), cfg.model.nickname, cfg.to_yaml(), action_, gpus or None, after, keys)

    def _queue(self, config_path: str, nickname: str, config_yaml: str, action: Action,
               gpus: str | None, after: int | None, keys: dict[str, Any] | None = None, prepare=None) -> Run:
        run = self.store.add(nickname=nickname, config_path=config_path, config_yaml=config_yaml,
                             action=action, gpus=gpus, after=after, user=procfs.current_user(),
                             first_id=identity.next_free_id(self.workspace.runs_dir), prepare=prepare, **(keys or {}))
        run_dir = self.workspace.run_dir(run.id)
        run_dir.mkdir(mode=sharing.dir_mode(), parents=True, exist_ok=True)
        os.chmod(run_dir, sharing.dir_mode())
        artifacts.atomic_write_text(RunFiles(run_dir).config, config_yaml, mode=sharing.file_mode())
        write_queue_record(self.workspace, run)  # so a lost store can be rebuilt with the run's intent
        return run

    def _preflight(self, source: str, cfg: Any, action: Action, gpus: str | None,
                   keys: dict[str, Any] | None = None) -> None:
        """Refuse a run that would fail later for a reason known now (data, model path, GPUs, ...).

        Raises:
            ConfigError: listing every problem with the key or file to change (the CLI exits 2).
        """
        from dialsum_tui.manager.guards.preflight import describe, preflight
        from dialsum_tui.manager.runs.models import parse_gpus

        # What an infer/evaluate-only run reads: its source's model and predictions (identity.source_keys).
        fallback = cfg.model.nickname
        reads = ((keys or {}).get("model_key") or fallback, (keys or {}).get("predictions_key") or fallback)
        problems = preflight(self.workspace, cfg, action.stages, parse_gpus(gpus), self.gpu_source(), keys=reads)
        if problems:
            raise ConfigError(f"{source}: not queued; {len(problems)} problem(s) would fail it later:\n"
                              f"{describe(problems)}")

    def cancel(self, run_id: int) -> Run:
        """Cancel a pending run now, or ask the worker to stop a running one (SIGINT first).

        With no worker running, a running run is stopped here: its stage by pid and start time
        (SIGINT → SIGTERM → SIGKILL, never a reused pid), then marked cancelled; its ``reason`` says
        which signals were really sent.
        """
        run = self.store.request_cancel(run_id)
        if run.state is RunState.RUNNING and not self.worker_status()[0]:
            run = self._cancel_without_worker(run)
        if run.state is RunState.CANCELLED and run.started_at is None:
            mark_cancelled(self.workspace, run)  # a rebuilt store must not queue it again
        return run

    def _cancel_without_worker(self, run: Run) -> Run:
        import signal

        from dialsum_tui.manager.store.database import IllegalTransition
        from dialsum_tui.manager.workspace.settings import env_settings

        stage = run.stage or "its stage"
        if run.backend == "slurm" and run.job_id:
            from dialsum_tui.manager.backends import slurm

            grace = (tuple(env_settings().stop_grace or ()) + process.DEFAULT_GRACE_S)[0]
            try:
                final = slurm.cancel(run.job_id, grace_s=grace)
            except slurm.SlurmError as err:  # the job may still run: keep the run as it is, say why
                raise RuntimeError(f"run {run.id}: could not cancel Slurm job {run.job_id}: {err}") from None
            reason = f"cancelled during {stage}: no worker was running, so Slurm job {run.job_id} was cancelled here " \
                     f"(scancel; Slurm says {final.status})"
        elif run.pid is None:
            reason = f"cancelled before {stage} started (no worker was running)"
        elif not process.group_running(process.Identity(run.pid, run.pid_start_time or 0.0)):
            reason = f"cancelled; its {stage} process {run.pid} was already gone (no worker was running)"
        else:
            grace = tuple(env_settings().stop_grace or ()) + process.DEFAULT_GRACE_S
            ranks = process.group_leaders_below(run.pid)  # torchrun's ranks lead their own groups
            sent = process.stop_group(process.Identity(run.pid, run.pid_start_time or 0.0), grace=grace[:2])
            for rank in ranks:  # any rank the launcher did not take down with it
                process.stop_group(rank, grace=grace[:2])
            names = " → ".join(signal.Signals(s).name for s in sent) or "no signal (it ended meanwhile)"
            reason = f"cancelled during {stage}: no worker was running, so its process {run.pid} was stopped here ({names})"
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
        return plan_retry(self.workspace, self.store.get(run_id), resume=resume, overrides=overrides,
                          config_file=config_file, action=action_)

    def pause(self) -> None:
        self.store.set_paused(True)

    def resume(self) -> None:
        self.store.set_paused(False)

    def is_paused(self) -> bool:
        return self.store.paused()

    def move(self, run_id: int, delta: int) -> None:
        self.store.move(run_id, delta)

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
        from dialsum_tui.manager.store.integrity import stop_worker

        return stop_worker(self.workspace, timeout_s)

    # --- files --------------------------------------------------------------------------------

    def log_path(self, run_id: int) -> Path:
        return RunFiles(self.workspace.run_dir(run_id)).log

    def events(self, run_id: int) -> list[dict[str, Any]]:
        return artifacts.read_events(RunFiles(self.workspace.run_dir(run_id)).events)

    # --- results, GPU, disk -------------------------------------------------------------------

    def results(self) -> list[ResultRow]:
        from dialsum_tui.manager.insights.results import result_rows

        return result_rows(self.workspace, self.runs())

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
        return out

    def gpu_source(self) -> GpuSource:
        if self._gpu is None:
            self._gpu = open_gpu_source()
        return self._gpu

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

    def prune_plan(self, include_shared: bool = False) -> list[PruneItem]:
        from dialsum_tui.manager.guards.prune import prune_plan

        return prune_plan(self.workspace, self.runs(), include_shared)

    def prune(self, items: list[PruneItem]) -> int:
        from dialsum_tui.manager.guards.prune import prune

        return prune(items)
