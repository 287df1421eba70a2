"""Provides the detached worker: one per workspace (:mod:`~dialsum_tui.manager.workspace.lock`), a thin loop
that wires the parts — admission decides (:mod:`~dialsum_tui.manager.worker.admission`), launching starts
a stage (:mod:`~dialsum_tui.manager.worker.launching`), following reads its events
(:mod:`~dialsum_tui.manager.worker.following`), the verdict judges how it ended
(:mod:`~dialsum_tui.manager.worker.verdict`), stopping acts on cancels and the disk watch
(:mod:`~dialsum_tui.manager.worker.stopping`) — and repairs the store after a restart
(:mod:`~dialsum_tui.manager.worker.readopt`).

Run it as ``python -m dialsum_tui.manager.worker WORKSPACE``; the CLI and the TUI start it on demand
(:meth:`dialsum_tui.manager.service.Manager.ensure_worker`). Stopping it leaves stages running: the
next worker re-adopts them by pid and start time (local) or by job id (Slurm, :mod:`~dialsum_tui.manager.backends.registry`).
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path

from dialsum_tui.manager import process
from dialsum_tui.manager.backends.protocol import BackendUnavailable, Exited, Gone, Pending, Running
from dialsum_tui.manager.backends.registry import (
    open_backends,
    poll_note,
    unanswered_note,
)
from dialsum_tui.manager.guards import disk
from dialsum_tui.manager.guards.checks import GpuGuard, check_disk
from dialsum_tui.manager.guards.disk import DiskUsage
from dialsum_tui.manager.guards.gpu import GpuSource, foreign_holders, open_gpu_source
from dialsum_tui.manager.guards.preflight import DataChecks, refusal
from dialsum_tui.manager.runs.events import absorb
from dialsum_tui.manager.runs.logs import read_tail
from dialsum_tui.manager.runs.models import Run, RunState, parse_gpus
from dialsum_tui.manager.store.database import IllegalTransition
from dialsum_tui.manager.store.integrity import StoreWatch
from dialsum_tui.manager.store.rebuild import open_store
from dialsum_tui.manager.worker import oom
from dialsum_tui.manager.worker.admission import Blocked, Cancel, Launch, Wait, decide
from dialsum_tui.manager.worker.disk_meter import DiskMeter
from dialsum_tui.manager.worker.following import ActiveStage, run_owners
from dialsum_tui.manager.worker.health import Health
from dialsum_tui.manager.worker.launching import LaunchError, launch_intent, run_config, start_stage
from dialsum_tui.manager.worker.notify import BlockedWatch, notify_blocked
from dialsum_tui.manager.worker.peaks import MemoryWatch
from dialsum_tui.manager.worker.readopt import stages_left_running
from dialsum_tui.manager.worker.run_end import after_run_ended, failure_hold
from dialsum_tui.manager.worker.stopping import handle_cancels, watch_disk
from dialsum_tui.manager.worker.verdict import Ended, Outcome, config_artifacts_done, judge, record, with_backend_reason
from dialsum_tui.manager.workspace import sharing
from dialsum_tui.manager.workspace.layout import Workspace, WorkspaceError
from dialsum_tui.manager.workspace.lock import WorkerLock
from dialsum_tui.manager.workspace.settings import Settings, SettingsError, env_settings
from dialsum_tui.manager.workspace.space import (
    FilesystemProblem,
    filesystem_problems,
    run_write_dirs,
    stage_space_problem,
)
from engine.artifacts import EventTail
from engine.config import ConfigError
from engine.contract import RunFiles
from engine.failures import Failure

log = logging.getLogger("dialsum.worker")

CONFIRM_POLL_S = 0.1
FULL_BELOW_BYTES = 64 * 1024 * 1024  # a filesystem with less free is "full" when judging a stage that died
# What a store write raises when the disk is full or read-only (sqlite3.OperationalError: "database
# or disk is full", "attempt to write a readonly database"; OSError from the files beside it).
STORE_WRITE_ERRORS = (sqlite3.Error, OSError)


class Worker:
    """The queue loop. Call :meth:`tick` (tests) or :meth:`serve` (the detached process)."""

    def __init__(
        self,
        workspace: Workspace,
        *,
        poll_s: float = 0.5,
        gpu_source: GpuSource | None = None,
        stop_grace: tuple[float, float] = process.DEFAULT_GRACE_S,
    ):
        self.ws = workspace
        self.store, _rebuilt = open_store(workspace)  # a lost state.db is rebuilt from runs/, never recreated empty
        self.store_watch = StoreWatch(workspace)
        self.poll_s = poll_s
        self.stop_grace = stop_grace
        try:
            self.settings = workspace.settings()
        except WorkspaceError:  # start anyway: the disk meter reports the error and admits nothing until fixed
            self.settings = Settings()
        self.gpu = gpu_source if gpu_source is not None else open_gpu_source()
        self.guard = GpuGuard(self.gpu, self.settings)
        self.backends = open_backends(self.settings)  # both: a run keeps the backend it started on
        self.backend = self.backends[self.settings.backend]  # where new stages go
        self.lock = WorkerLock(workspace.lock_path)
        self.active: dict[int, ActiveStage] = {}
        self.seen_pids: dict[int, tuple[int, str]] = {}  # every stage pid this worker launched or adopted
        self.oom_marks: dict[int, oom.OomMark] = {}  # run id -> its stage cgroup's oom_kill counter at start
        self._stopping = threading.Event()
        self.health = Health(workspace)
        self.meter = DiskMeter(workspace, self.health, self._stopping)
        self.data_checks = DataChecks()  # CSV verdicts by file stamp: a waiting queue re-reads nothing
        self.blocked = BlockedWatch(self.settings.notify.blocked_after_s)  # "held back for long" pings
        self.memory = MemoryWatch(workspace, self.gpu, self.store)  # GPU peaks per stage, sharing, exclusive configs
        self.store_failing = False  # the last store write failed (disk full, read-only): admit nothing

    # --- lifecycle ----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Leave the loop at the next poll; running stages keep running (re-adopted next start)."""
        self._stopping.set()

    def serve(self) -> None:
        """Reconcile, start the disk measurer, then loop until :meth:`request_stop`.

        Nothing a part raises ends the worker: a failing tick or a dead disk thread is logged,
        reported in ``.dialsum/health.json`` (``check``, the TUI) and retried on the next pass.
        """
        self.health.clear()
        self.reconcile()
        while not self._stopping.is_set():
            self.meter.ensure_running()
            try:
                self.tick()
            except Exception as err:  # one bad tick must not end the queue; the log keeps the traceback
                log.exception("worker tick failed")
                self.health.fail("loop", f"a worker pass failed: {type(err).__name__}: {err}")
            else:
                self.health.ok("loop")
                self.health.beat()
            # While the GPU guard is counting good samples, sample faster: the K confirmations then
            # take ~0.2 s instead of K × poll_s (measured: 1.0 s at 0.5 s polls, docs/benchmarks.md).
            self._stopping.wait(min(self.poll_s, CONFIRM_POLL_S) if self.guard.confirming else self.poll_s)
        log.info("worker stopping; %d stage(s) keep running and will be re-adopted", len(self.active))

    # --- restart repair -----------------------------------------------------------------------

    def reconcile(self) -> None:
        """Repair the store after a restart: follow stages that still run, judge those that ended
        meanwhile from their events, log tail and artifacts (:mod:`~dialsum_tui.manager.worker.readopt`)."""
        for run, stage, alive in stages_left_running(self.ws, self.store.list(), self.backends):
            if not alive:
                log.info("run %d: %s stage is gone; judging from evidence", run.id, stage.stage)
                self._finish_stage(stage, None)
                continue
            self.active[run.id] = stage
            if stage.ident is not None and run.pid != stage.ident.pid:  # found by its launch token
                self.store.update(run.id, pid=stage.ident.pid, pid_start_time=stage.ident.start_time)
            if stage.ident is None:
                log.info("run %d: re-adopted %s stage, Slurm job %s", run.id, stage.stage, run.job_id)
                continue
            log.info("run %d: re-adopted %s stage pid %d", run.id, stage.stage, stage.ident.pid)
            self.oom_marks[run.id] = oom.mark(stage.ident.pid)  # from now on: kills before it are not seen
            self.seen_pids[stage.ident.pid] = (run.id, run.nickname)

    # --- the loop -----------------------------------------------------------------------------

    def tick(self) -> None:
        """One pass: follow events, reap exits, cancel, watch the disk, admit the next run."""
        for stage in list(self.active.values()):
            try:
                self._follow(stage)
            except STORE_WRITE_ERRORS as err:  # the stage stays followed; its news waits for the store
                self._store_failing(f"run {stage.run_id}'s state cannot be recorded", err)
        try:
            handle_cancels(self.store, self.store.list(), self.active, self.stop_grace)
            self.memory.sample(self.active, self.seen_pids, self.guard.baselines)  # each stage's peak GPU memory
            usage, disk_problem = self._disk_reading()
            if self.active:
                watch_disk(self.store, usage, self.active, self.stop_grace)
            if self.store_failing and self.store.writable():
                self._store_writes()
            # A removed or replaced state.db, or one that refuses writes: follow what runs, admit nothing.
            if self.store_watch.ok() and not self.store_failing:
                self._admit(usage, disk_problem)
            for run, waited in self.blocked.due(self.store.list()):
                notify_blocked(self.settings.notify, run, self.ws.root, waited)
        except STORE_WRITE_ERRORS as err:
            self._store_failing("the queue cannot be updated (nothing new starts)", err)

    def _disk_reading(self) -> tuple[DiskUsage | None, str | None]:
        """The disk as admission may trust it now, and why not when it may not (fail safe)."""
        settings, usage, problem = self.meter.admission_reading()
        if settings is not None:  # edits of settings.yaml count without a restart
            self.guard.settings = self.settings = settings
        return usage, problem

    def _follow(self, stage: ActiveStage) -> None:
        if stage.verdict is not None:  # ended, but its end is not on record yet: only that is left
            self._finish_stage(stage, None)
            return
        self._absorb(stage)
        for member in stage.track_members():
            self.seen_pids[member.pid] = self.seen_pids.get(stage.ident.pid, (stage.run_id, ""))
        try:
            if stage.stop is not None:
                stage.stop.advance()
            result = stage.poll()
        except BackendUnavailable as err:  # never judged gone: the job is Slurm's, and Slurm is just slow
            self._note(stage, unanswered_note(err))
            return
        if isinstance(result, Pending | Running):
            self._note(stage, poll_note(result))
            if isinstance(result, Running) and stage.ident is None and stage.allocation is None:
                self._record_allocation(stage)
            return
        if stage.stop is not None and not stage.stop.advance():
            return  # the leader exited but its group (forked workers) is still being stopped
        if not stage.members_stopped(self.stop_grace):
            return  # the launcher is gone but ranks outlived it: they are being stopped
        self._absorb(stage)
        self._finish_stage(stage, result)

    def _record_allocation(self, stage: ActiveStage) -> None:
        """What Slurm gave a job that started (the GPU panel's line, where NVML cannot look)."""
        try:
            stage.allocation = stage.backend.allocation(stage.handle)
        except BackendUnavailable:
            return  # asked again next tick
        if stage.allocation is not None:
            self.store.update(stage.run_id, allocation=stage.allocation)

    def _note(self, stage: ActiveStage, note: str | None) -> None:
        """Show the backend's word on a stage in its run's reason (Slurm's pending reason), once per change."""
        if note != stage.note:
            stage.note = note
            self.store.update(stage.run_id, reason=note)

    def _absorb(self, stage: ActiveStage) -> None:
        """Copy new events of the stage into the store (progress, metrics).

        A write the store refuses (disk full, read-only) is owed, not lost: the stage's events are
        kept, and the next write replays all of them (the latest of each kind wins, so it is the same).
        """
        new = stage.read_new_events()
        if not new and not stage.unsaved:
            return
        try:
            run = self.store.get(stage.run_id)
            progress, metrics = absorb(dict(run.progress), dict(run.metrics),
                                       stage.events if stage.unsaved else new, stage.stage)
            self.store.update(stage.run_id, progress=progress, metrics=metrics)
        except STORE_WRITE_ERRORS as err:
            stage.unsaved = True
            self._store_failing(f"run {stage.run_id}'s progress cannot be recorded", err)
            return
        stage.unsaved = False

    def _finish_stage(self, stage: ActiveStage, result: Exited | Gone | None) -> None:
        """Record how a stage ended and move the run on (next stage, or a final state).

        ``result`` is the backend's last poll (None: a local stage found gone at restart).
        The stage stays followed until its end is on record: when the store cannot take the write
        (disk full, filesystem read-only), the verdict is kept on the stage, the health says so
        (``check`` exits 1), and every pass tries again — the run never shows "running" forever.
        """
        try:
            run = self.store.get(stage.run_id)
            if stage.verdict is None:
                stage.verdict = self._judge(stage, run, result)
            outcome = stage.verdict
            if outcome.state is not None:
                ended = record(self.store, run, stage.stage, outcome)
            else:  # next stage: a fresh process, admitted only once the GPU is released by this one
                self.store.update(run.id, stage=outcome.next_stage, pid=None, pid_start_time=None, job_id=None,
                                  launch={}, exit_code=outcome.exit_code, reason=outcome.reason)
                log.info("run %d: %s done, next %s", run.id, stage.stage, outcome.next_stage)
                ended = None
        except STORE_WRITE_ERRORS as err:
            self._store_failing(f"run {stage.run_id}'s {stage.stage} ended but its end cannot be recorded "
                                "(kept in memory, retried every pass)", err)
            return
        self.active.pop(stage.run_id, None)
        self._store_writes()
        self._ended(ended)

    def _judge(self, stage: ActiveStage, run: Run, result: Exited | Gone | None) -> Outcome:
        """Gather the evidence on an ended stage and judge it (:func:`~dialsum_tui.manager.worker.verdict.judge`)."""
        log_tail = read_tail(RunFiles(self.ws.run_dir(run.id)).log)
        rc = result.code if isinstance(result, Exited) else None
        pid = stage.ident.pid if stage.ident is not None else 0
        ended = Ended(stage.stage, pid, rc, stage.events, log_tail, stage.stop_reason, self._oom_evidence(stage, rc),
                      self._space_now(run))
        outcome = judge(run, ended,
                        artifacts_done=lambda: config_artifacts_done(self.ws, lambda: run_config(run), stage.stage,
                                                                     stage.events, run),
                        others_held=lambda: self._others_held(stage))
        outcome = with_backend_reason(outcome, result, stage.stage)  # Slurm's TIMEOUT, OUT_OF_MEMORY…
        return self.memory.judged(run, stage.stage, outcome, self.active)  # last peak; an OOM beside another run

    def _space_now(self, run: Run) -> FilesystemProblem | None:
        """A filesystem of the run's that is full or read-only now (why a stage may have died oddly)."""
        try:
            cfg = run_config(run)
        except ConfigError:
            cfg = None
        problems = filesystem_problems(run_write_dirs(self.ws, run.id, cfg), floor_bytes=FULL_BELOW_BYTES)
        return problems[0] if problems else None

    def _store_failing(self, what: str, err: Exception) -> None:
        problem = self._space_now_state_dir()
        advice = f"{problem.message}: {problem.hint}" if problem else f"{type(err).__name__}: {err}"
        self.health.fail("store", f"{what}: {advice}")
        self.store_failing = True

    def _store_writes(self) -> None:
        if self.store_failing:
            self.store_failing = False
            self.health.ok("store")

    def _space_now_state_dir(self) -> FilesystemProblem | None:
        problems = filesystem_problems([self.ws.state_dir], floor_bytes=FULL_BELOW_BYTES)
        return problems[0] if problems else None

    def _oom_evidence(self, stage: ActiveStage, rc: int | None) -> str | None:
        """The OOM killer's trace for a local stage that ended by SIGKILL (Slurm's verdict says OOM itself)."""
        start = self.oom_marks.pop(stage.run_id, None)
        return oom.sigkill_evidence(start, stage.ident, rc) if stage.ident is not None else None

    def _others_held(self, stage: ActiveStage) -> str | None:
        """Who else held GPU memory when the stage ended (tells an OOM caused by a leftover apart)."""
        if stage.ident is None:
            return None  # a Slurm job's GPUs are on another node, out of NVML's sight
        ours = {pid for pid, (rid, _n) in self.seen_pids.items() if rid == stage.run_id} | {stage.ident.pid}
        return foreign_holders(self.gpu, ours)

    # --- admission ----------------------------------------------------------------------------

    def _admit(self, usage: DiskUsage | None, disk_problem: str | None) -> None:
        runs = self.store.list()
        guards = lambda run, stage: self._guards(run, stage, runs, usage, disk_problem)  # noqa: E731
        hold = failure_hold(self.store, self.ws.root)  # runs a failure streak paused
        shares = self.memory.shares if self.settings.gpu_sharing else None
        for decision in decide(runs, self.active.keys(), self.store.paused(), guards, hold=hold, devices=self.backend.places_devices,
                               shares=shares):
            if isinstance(decision, Wait):
                self._wait(decision.run, decision.reason)
                if decision.by_guard:
                    self.blocked.held_back(decision.run.id)
            elif isinstance(decision, Cancel):
                try:
                    self.store.transition(decision.run.id, RunState.CANCELLED, reason=decision.reason)
                except IllegalTransition as err:
                    log.warning("%s", err)
            elif isinstance(decision, Launch):
                self._launch(decision.run, decision.stage)

    def _wait(self, run: Run, reason: str) -> None:
        """Show why a run does not start (running runs between stages keep their state)."""
        if run.state is RunState.RUNNING:
            if run.reason != reason:
                self.store.update(run.id, reason=reason)
            return
        if run.state is RunState.WAITING and run.reason == reason:
            return
        try:
            self.store.transition(run.id, RunState.WAITING, reason=reason)
        except IllegalTransition:
            pass  # cancelled meanwhile

    def _guards(self, run: Run, stage: str, runs: list[Run], usage: DiskUsage | None,
                disk_problem: str | None) -> Blocked | None:
        """None when the run may start now; otherwise the reason naming the holder or the numbers,
        and what it blocks: the run's devices for a GPU verdict, everything (None) for the shared disk."""
        if disk_problem is not None:  # fail safe: an unknown disk admits nothing
            return Blocked(None, disk_problem)
        gpus = parse_gpus(run.gpus)
        gpu = None
        if self.backend.places_devices:  # else a scheduler admits GPUs; the shared disk is still ours
            try:
                gpu = self.guard.check(gpus, run_owners(runs, self.seen_pids),
                                       share=self.memory.share_plan(run, stage, runs, self.settings))
            except Exception as err:  # NVML can fail at any call: hold the run, say why
                return Blocked(gpus, f"GPU cannot be read ({type(err).__name__}: {err}); waiting for NVML")
        if gpu is not None and not gpu.ok:
            return Blocked(gpus, gpu.reason or "GPU not free", queueing=gpu.queueing)
        try:
            projected = disk.projected_footprint(run_config(run), stage, self.ws.root)
        except ConfigError as err:
            return Blocked(None, f"config snapshot invalid: {err}")
        verdict = check_disk(usage, projected)
        if not verdict.ok:
            return Blocked(None, verdict.reason or "disk guard")
        space = stage_space_problem(self.ws, run.id, run_config(run), projected, self.settings.min_free_gb)
        return None if space is None else Blocked(None, f"{space.message}; {space.hint}")

    def _launch(self, run: Run, stage: str) -> None:
        if self._refused(run, stage):
            return
        if run.state is not RunState.RUNNING:
            try:
                run = self.store.transition(run.id, RunState.RUNNING, stage=stage, reason=None)
            except IllegalTransition:
                return  # cancelled between our read and now
        backend = self.backend
        count = backend.gpu_request(run.gpus, stage)
        # The intent goes on record before the process exists: whatever happens to this worker
        # between spawn and the pid's record, the next one finds the stage instead of starting it twice.
        intent = launch_intent(self.ws, run, stage)
        run = self.store.update(run.id, launch=intent)
        try:
            handle = start_stage(self.ws, run, stage, backend, count, token=intent["token"])
        except LaunchError as err:
            self._fail_before_start(run, stage, err.failure)
            return
        except BackendUnavailable as err:  # nothing submitted: the run stays between stages, retried next tick
            self.store.update(run.id, launch={}, reason=f"could not submit {stage}: {unanswered_note(err)}")
            return
        # From where this stage's events begin: earlier stages' are skipped, none of its own is.
        tail = EventTail(RunFiles(self.ws.run_dir(run.id)).events, offset=intent["events_offset"])
        self.active[run.id] = ActiveStage(run.id, stage, handle, backend, tail)
        ident = self.active[run.id].ident
        if ident is None:  # Slurm: the job id is the handle
            self.store.update(run.id, backend=backend.name, job_id=handle.ref, allocation=None, stage=stage, reason=None)
            log.info("run %d: submitted %s as Slurm job %s", run.id, stage, handle.ref)
            return
        self.store.update(run.id, pid=ident.pid, pid_start_time=ident.start_time, stage=stage, reason=None)
        self.guard.note_launch(parse_gpus(run.gpus))
        self.seen_pids[ident.pid] = (run.id, run.nickname)
        self.oom_marks[run.id] = oom.mark(ident.pid)
        self.memory.launched(run, self.active)
        log.info("run %d: launched %s pid %d", run.id, stage, ident.pid)

    def _fail_before_start(self, run: Run, stage: str, failure: Failure) -> None:
        self._ended(record(self.store, run, stage, Outcome(RunState.FAILED, None, failure=failure)))

    def _ended(self, run: Run | None) -> None:
        """A run reached its final state: ping, a failure streak's pause, its sweep's end (worker.run_end)."""
        if run is not None:
            after_run_ended(self.store, self.settings, self.ws.root, run)

    def _refused(self, run: Run, stage: str) -> bool:
        """Preflight again at admission (files change while a run waits): a problem fails the run
        before its stage starts, naming what to change; True when it did (or must wait)."""
        try:
            failure = refusal(self.ws, run, stage, self.gpu, self.data_checks,
                              measured=self.memory.measured(run, self.store.list()))
        except WorkspaceError:
            return True  # settings.yaml broke since the guards ran: the disk guard holds the run next tick
        if failure is None:
            return False
        if run.state is RunState.QUEUED:  # queued → failed is not a transition; waiting → failed is
            self._wait(run, "preflight found problems")
            run = self.store.get(run.id)
        log.info("run %d: refused before %s: %s", run.id, stage, failure.message.replace("\n", "; "))
        self._fail_before_start(run, stage, failure)
        return True


def main(argv: list[str] | None = None) -> int:
    """Entry point of the detached worker process: ``python -m dialsum_tui.manager.worker ROOT``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m dialsum_tui.manager.worker WORKSPACE", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    ws = Workspace(Path(args[0]).resolve())
    try:
        env = env_settings()
        sharing.enter(ws)  # the umask its stages inherit: private, or group-writable in a shared workspace
    except (SettingsError, WorkspaceError) as err:
        print(f"dialsum worker: {err}", file=sys.stderr)
        return 2
    grace = (*(env.stop_grace or ()), *process.DEFAULT_GRACE_S[len(env.stop_grace or ()):])  # one value: SIGINT's
    worker = Worker(ws, poll_s=env.worker_poll_s, stop_grace=grace[:2])  # type: ignore[arg-type]
    if not worker.lock.acquire():
        log.info("another worker holds %s; exiting", ws.lock_path)
        return 0
    # SIGHUP: the terminal that started us is gone; we are detached and keep going.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: worker.request_stop())
    signal.signal(signal.SIGINT, lambda *_: worker.request_stop())
    log.info("worker pid %d serving %s", os.getpid(), ws.root)
    try:
        worker.serve()
    finally:
        worker.lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
