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

from dialsum_tui.manager import process
from dialsum_tui.manager.following import run_owners
from dialsum_tui.manager.gpu import GpuSource, open_gpu_source
from dialsum_tui.manager.lock import read_lock_holder
from dialsum_tui.manager.models import Action, Run, RunState
from dialsum_tui.manager.store import Store
from dialsum_tui.manager.workspace import Workspace
from engine import artifacts
from engine.config import ConfigError, load_config
from engine.contract import RunFiles

if TYPE_CHECKING:
    from dialsum_tui.manager.disk import DiskUsage
    from dialsum_tui.manager.gpu import GpuProcess
    from dialsum_tui.manager.prune import PruneItem
    from dialsum_tui.manager.results import ResultRow
    from dialsum_tui.manager.retry import RetryPlan

WORKER_START_TIMEOUT_S = 10.0


@dataclass
class Manager:
    """Everything a front end needs, on one workspace."""

    workspace: Workspace
    store: Store
    _gpu: GpuSource | None = field(default=None, repr=False)

    @classmethod
    def open(cls, workspace: Workspace) -> Manager:
        """Open the workspace's store (created on first use)."""
        return cls(workspace, Store(workspace.db_path))

    # --- runs ---------------------------------------------------------------------------------

    def runs(self) -> list[Run]:
        return self.store.list()

    def get(self, run_id: int) -> Run:
        return self.store.get(run_id)

    def add(self, config_path: str, action: str = "pipeline", gpus: str | None = None, after: int | None = None) -> Run:
        """Validate a config and queue it; the resolved snapshot goes to ``runs/<id>/config.yaml``.

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
        if after is not None:
            self.store.get(after)
        return self._queue(str(path), cfg.model.nickname, cfg.to_yaml(), action_, gpus or None, after)

    def _queue(self, config_path: str, nickname: str, config_yaml: str, action: Action,
               gpus: str | None, after: int | None, prepare=None) -> Run:
        run = self.store.add(nickname=nickname, config_path=config_path, config_yaml=config_yaml,
                             action=action, gpus=gpus, after=after, prepare=prepare)
        run_dir = self.workspace.run_dir(run.id)
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        artifacts.atomic_write_text(RunFiles(run_dir).config, config_yaml, mode=0o600)
        return run

    def cancel(self, run_id: int) -> Run:
        """Cancel a pending run now, or ask the worker to stop a running one (SIGINT first)."""
        return self.store.request_cancel(run_id)

    def retry(self, run_id: int, action: str | None = None, plan: RetryPlan | None = None) -> Run:
        """Queue a new run with the same config snapshot (e.g. ``action="infer"`` re-infers without retraining),
        or the one of ``plan`` (:meth:`plan_retry`: changed keys, resume), recorded in ``runs/<new>/retry.json``."""
        old = self.store.get(run_id)
        try:
            action_ = Action(action) if action else old.action
        except ValueError:
            raise ConfigError(f"--action {action!r}: use one of {', '.join(a.value for a in Action)}") from None
        if plan is None:
            return self._queue(old.config_path, old.nickname, old.config_yaml, action_, old.gpus, None)
        from dialsum_tui.manager.retry import write_record

        return self._queue(plan.config_path, plan.nickname, plan.config_yaml, action_, old.gpus, None,
                           prepare=lambda new_id: write_record(self.workspace.run_dir(new_id), plan))

    def plan_retry(self, run_id: int, resume: bool = False, overrides: list[str] | None = None,
                   config_file: str | None = None, action: str | None = None) -> RetryPlan:
        """Work out a retry with changes or a resume, without queueing it (:func:`manager.retry.plan_retry`).

        Raises:
            ConfigError: invalid config or --set; ``RetryRefused`` (a ConfigError) when it cannot resume.
        """
        from dialsum_tui.manager.retry import plan_retry

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
        self.workspace.state_dir.mkdir(mode=0o700, exist_ok=True)
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
        held, ident = read_lock_holder(self.workspace.lock_path)
        if not held or ident is None:
            return False
        process.signal_pid(ident, 15)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not read_lock_holder(self.workspace.lock_path)[0]:
                return True
            time.sleep(0.05)
        return False

    # --- files --------------------------------------------------------------------------------

    def log_path(self, run_id: int) -> Path:
        return RunFiles(self.workspace.run_dir(run_id)).log

    def events(self, run_id: int) -> list[dict[str, Any]]:
        return artifacts.read_events(RunFiles(self.workspace.run_dir(run_id)).events)

    # --- results, GPU, disk -------------------------------------------------------------------

    def results(self) -> list[ResultRow]:
        from dialsum_tui.manager.results import result_rows

        return result_rows(self.workspace, self.runs())

    def handoff(self) -> str:
        """The Markdown hand-off note (results table, GPU, disk, active runs, failures, next steps)."""
        from dialsum_tui.manager.results import handoff_markdown, result_rows

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
        """The worker's cached measurement; never runs du here (it can take a minute)."""
        from dialsum_tui.manager.disk import read_cached

        return read_cached(self.workspace)

    def gpu_source(self) -> GpuSource:
        if self._gpu is None:
            self._gpu = open_gpu_source()
        return self._gpu

    def leftovers(self) -> list[tuple[GpuProcess, int, str]]:
        """Processes of our finished runs still holding GPU memory."""
        from dialsum_tui.manager.guards import GpuGuard

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

    def prune_plan(self) -> list[PruneItem]:
        from dialsum_tui.manager.prune import prune_plan

        return prune_plan(self.workspace, self.runs())

    def prune(self, items: list[PruneItem]) -> int:
        from dialsum_tui.manager.prune import prune

        return prune(items)
