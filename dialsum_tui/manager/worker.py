"""Provides the detached worker: one per workspace (:mod:`~dialsum_tui.manager.lock`), a thin loop
that wires the parts — admission decides (:mod:`~dialsum_tui.manager.admission`), launching starts
a stage (:mod:`~dialsum_tui.manager.launching`), following reads its events
(:mod:`~dialsum_tui.manager.following`), the verdict judges how it ended
(:mod:`~dialsum_tui.manager.verdict`), stopping acts on cancels and the disk watch
(:mod:`~dialsum_tui.manager.stopping`) — and repairs the store after a restart.

Run it as ``python -m dialsum_tui.manager.worker WORKSPACE``; the CLI and the TUI start it on demand
(:meth:`dialsum_tui.manager.service.Manager.ensure_worker`). Stopping it leaves stages running: the
next worker re-adopts them by pid and start time.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from dialsum_tui.manager import disk, process
from dialsum_tui.manager.admission import Blocked, Cancel, Launch, Wait, decide
from dialsum_tui.manager.following import ActiveStage, absorb, run_owners, stage_events
from dialsum_tui.manager.gpu import GpuSource, open_gpu_source
from dialsum_tui.manager.guards import GpuGuard, check_disk
from dialsum_tui.manager.launching import LaunchError, parse_gpus, run_config, start_stage
from dialsum_tui.manager.lock import WorkerLock
from dialsum_tui.manager.logs import read_tail
from dialsum_tui.manager.models import Run, RunState
from dialsum_tui.manager.rebuild import open_store
from dialsum_tui.manager.settings import SettingsError, env_settings
from dialsum_tui.manager.stopping import handle_cancels, watch_disk
from dialsum_tui.manager.store import IllegalTransition
from dialsum_tui.manager.store_health import StoreWatch
from dialsum_tui.manager.verdict import Ended, Outcome, config_artifacts_done, judge, record
from dialsum_tui.manager.workspace import Workspace
from engine.artifacts import EventTail
from engine.config import ConfigError
from engine.contract import RunFiles
from engine.failures import Failure
from engine.units import format_gib

log = logging.getLogger("dialsum.worker")

CONFIRM_POLL_S = 0.1


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
        self.settings = workspace.settings()
        self.gpu = gpu_source if gpu_source is not None else open_gpu_source()
        self.guard = GpuGuard(self.gpu, self.settings)
        self.lock = WorkerLock(workspace.lock_path)
        self.active: dict[int, ActiveStage] = {}
        self.seen_pids: dict[int, tuple[int, str]] = {}  # every stage pid this worker launched or adopted
        self._stopping = threading.Event()
        self._disk_thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Leave the loop at the next poll; running stages keep running (re-adopted next start)."""
        self._stopping.set()

    def serve(self) -> None:
        """Reconcile, start the disk measurer, then loop until :meth:`request_stop`."""
        self.reconcile()
        self._disk_thread = threading.Thread(target=self._measure_disk_loop, name="disk-measure", daemon=True)
        self._disk_thread.start()
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # one bad tick must not end the queue; the log keeps the traceback
                log.exception("worker tick failed")
            # While the GPU guard is counting good samples, sample faster: the K confirmations then
            # take ~0.2 s instead of K × poll_s (measured: 1.0 s at 0.5 s polls, docs/benchmarks.md).
            self._stopping.wait(min(self.poll_s, CONFIRM_POLL_S) if self.guard.confirming else self.poll_s)
        log.info("worker stopping; %d stage(s) keep running and will be re-adopted", len(self.active))

    def _measure_disk_loop(self) -> None:
        # du-like and slow: in its own thread, so admission reads the cache and never waits.
        while not self._stopping.is_set():
            try:
                disk.write_cache(self.ws, disk.measure(self.ws))
            except Exception:
                log.exception("disk measurement failed")
            self._stopping.wait(max(1.0, self.ws.settings().disk_refresh_s))

    # --- restart repair -----------------------------------------------------------------------

    def reconcile(self) -> None:
        """Repair the store after a restart: re-adopt live stages, judge vanished ones.

        A running run whose pid is alive with the recorded start time is followed again; one whose
        process is gone is judged from its events, log tail and artifacts. A pid that is alive with
        another start time was reused by the system: it is never signalled.
        """
        for run in self.store.list():
            if run.state is not RunState.RUNNING:
                continue
            if run.pid is None:
                log.info("run %d: between stages (next %s); continuing", run.id, run.stage)
                continue
            ident = process.Identity(run.pid, run.pid_start_time or 0.0)
            tail = EventTail(RunFiles(self.ws.run_dir(run.id)).events)
            events = stage_events(tail.read_new(), run.stage or "")
            stage = ActiveStage(run.id, run.stage or run.stages[0], ident, None, tail, events)
            if process.is_alive(run.pid, run.pid_start_time):
                log.info("run %d: re-adopted %s stage pid %d", run.id, stage.stage, run.pid)
                self.active[run.id] = stage
                self.seen_pids[run.pid] = (run.id, run.nickname)
            else:
                log.info("run %d: %s stage pid %d is gone; judging from evidence", run.id, stage.stage, run.pid)
                self._finish_stage(stage, None)

    # --- the loop -----------------------------------------------------------------------------

    def tick(self) -> None:
        """One pass: follow events, reap exits, cancel, watch the disk, admit the next run."""
        for stage in list(self.active.values()):
            self._follow(stage)
        handle_cancels(self.store, self.store.list(), self.active, self.stop_grace)
        if self.active:
            watch_disk(self.store, disk.read_cached(self.ws), self.active, self.stop_grace)
        if self.store_watch.ok():  # a removed or replaced state.db: follow what runs, admit nothing
            self._admit()

    def _follow(self, stage: ActiveStage) -> None:
        self._absorb(stage)
        for member in stage.track_members():
            self.seen_pids[member.pid] = self.seen_pids.get(stage.ident.pid, (stage.run_id, ""))
        if stage.stop is not None:
            stage.stop.advance()
        gone, rc = stage.exited()
        if not gone:
            return
        if stage.stop is not None and not stage.stop.advance():
            return  # the leader exited but its group (forked workers) is still being stopped
        if not stage.members_stopped(self.stop_grace):
            return  # the launcher is gone but ranks outlived it: they are being stopped
        self._absorb(stage)
        self._finish_stage(stage, rc)

    def _absorb(self, stage: ActiveStage) -> None:
        """Copy new events of the stage into the store (progress, metrics)."""
        new = stage.read_new_events()
        if not new:
            return
        run = self.store.get(stage.run_id)
        progress, metrics = absorb(dict(run.progress), dict(run.metrics), new, stage.stage)
        self.store.update(stage.run_id, progress=progress, metrics=metrics)

    def _finish_stage(self, stage: ActiveStage, rc: int | None) -> None:
        """Record how a stage ended and move the run on (next stage, or a final state)."""
        self.active.pop(stage.run_id, None)
        run = self.store.get(stage.run_id)
        log_tail = read_tail(RunFiles(self.ws.run_dir(run.id)).log)
        ended = Ended(stage.stage, stage.ident.pid, rc, stage.events, log_tail, stage.stop_reason)
        outcome = judge(run, ended,
                        artifacts_done=lambda: config_artifacts_done(self.ws, lambda: run_config(run), stage.stage,
                                                                     stage.events, run),
                        others_held=lambda: self._others_held(stage))
        if outcome.state is not None:
            record(self.store, run, stage.stage, outcome)
            return
        # Next stage: a fresh process, admitted only once the GPU is released by this one.
        self.store.update(run.id, stage=outcome.next_stage, pid=None, pid_start_time=None,
                          exit_code=outcome.exit_code, reason=outcome.reason)
        log.info("run %d: %s done, next %s", run.id, stage.stage, outcome.next_stage)

    def _others_held(self, stage: ActiveStage) -> str | None:
        """Who else held GPU memory when the stage ended (tells an OOM caused by a leftover apart)."""
        try:
            devices = self.gpu.devices()
        except Exception:
            return None
        ours = {pid for pid, (rid, _n) in self.seen_pids.items() if rid == stage.run_id} | {stage.ident.pid}
        others = [f"pid {p.pid} held {format_gib(p.used_bytes)} on GPU {p.gpu_index}"
                  for d in devices for p in d.processes if p.pid not in ours]
        return "; ".join(others) or None

    # --- admission ----------------------------------------------------------------------------

    def _admit(self) -> None:
        runs = self.store.list()
        for decision in decide(runs, self.active.keys(), self.store.paused(), lambda run, stage: self._guards(run, stage, runs)):
            if isinstance(decision, Wait):
                self._wait(decision.run, decision.reason)
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

    def _guards(self, run: Run, stage: str, runs: list[Run]) -> Blocked | None:
        """None when the run may start now; otherwise the reason naming the holder or the numbers,
        and what it blocks: the run's devices for a GPU verdict, everything (None) for the shared disk."""
        gpus = parse_gpus(run.gpus)
        gpu = self.guard.check(gpus, run_owners(runs, self.seen_pids))
        if not gpu.ok:
            return Blocked(gpus, gpu.reason or "GPU not free")
        try:
            projected = disk.projected_footprint(run_config(run), stage, self.ws.root)
        except ConfigError as err:
            return Blocked(None, f"config snapshot invalid: {err}")
        verdict = check_disk(disk.read_cached(self.ws), projected)
        return None if verdict.ok else Blocked(None, verdict.reason or "disk guard")

    def _launch(self, run: Run, stage: str) -> None:
        if run.state is not RunState.RUNNING:
            try:
                run = self.store.transition(run.id, RunState.RUNNING, stage=stage, reason=None)
            except IllegalTransition:
                return  # cancelled between our read and now
        try:
            popen, ident = start_stage(self.ws, run, stage)
        except LaunchError as err:
            self._fail_before_start(run, stage, err.failure)
            return
        self.store.update(run.id, pid=ident.pid, pid_start_time=ident.start_time, stage=stage, reason=None)
        self.guard.note_launch(parse_gpus(run.gpus))
        self.seen_pids[ident.pid] = (run.id, run.nickname)
        tail = EventTail(RunFiles(self.ws.run_dir(run.id)).events)
        # Skip earlier stages' events: this stage's verdict is what matters now.
        tail.read_new()
        self.active[run.id] = ActiveStage(run.id, stage, ident, popen, tail)
        log.info("run %d: launched %s pid %d", run.id, stage, ident.pid)

    def _fail_before_start(self, run: Run, stage: str, failure: Failure) -> None:
        record(self.store, run, stage, Outcome(RunState.FAILED, None, failure=failure))


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
    except SettingsError as err:
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
