"""Provides the detached worker: one per workspace (flock), it admits queued runs through the GPU and
disk guards, launches each stage as its own process, follows ``events.jsonl`` into the store,
classifies every exit, cancels by signalling process groups, and repairs the store after a restart.

Run it as ``python -m dialsum_tui.manager.worker WORKSPACE``; the CLI and the TUI start it on demand
(:meth:`dialsum_tui.manager.service.Manager.ensure_worker`). Stopping it leaves stages running: the
next worker re-adopts them by pid and start time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from dialsum_tui.manager import process
from dialsum_tui.manager.gpu import GpuSource, format_gib, open_gpu_source
from dialsum_tui.manager.guards import GpuGuard, check_disk, check_running_disk
from dialsum_tui.manager.models import Run, RunState
from dialsum_tui.manager.store import IllegalTransition, Store
from dialsum_tui.manager.workspace import Workspace
from engine import artifacts
from engine.config import ConfigError, RunConfig, config_from_dict
from engine.failures import SIGNATURES, Failure, match_text

log = logging.getLogger("dialsum.worker")

ENGINE_ENV = "DIALSUM_ENGINE"  # tests: a shlex-split stand-in for [python, -m, engine]
CPU_PROCS_ENV = "DIALSUM_CPU_PROCS"  # CPU-only hosts (CI, demo): train runs without gpus with N gloo processes
POLL_ENV = "DIALSUM_WORKER_POLL_S"
CONFIRM_POLL_S = 0.1
GRACE_ENV = "DIALSUM_STOP_GRACE"  # "sigint_s,sigterm_s" before escalating a stop
LOG_TAIL_BYTES = 16_384
_DISK_HINT = next(hint for kind, _p, hint in SIGNATURES if kind == "disk")


def engine_argv() -> list[str]:
    """The command that runs an engine stage: ``$DIALSUM_ENGINE`` (shlex-split) or ``python -m engine``."""
    override = os.environ.get(ENGINE_ENV)
    return shlex.split(override) if override else [sys.executable, "-m", "engine"]


def parse_gpus(gpus: str | None) -> list[int] | None:
    """``"0,1"`` → ``[0, 1]``; None/empty → None (any device, or CPU)."""
    if not gpus:
        return None
    return [int(x) for x in gpus.split(",") if x.strip()]


def cpu_processes() -> int:
    """``$DIALSUM_CPU_PROCS`` as a process count (1 when unset).

    Raises:
        ConfigError: the variable is set but not a whole number ≥ 1.
    """
    raw = os.environ.get(CPU_PROCS_ENV, "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"${CPU_PROCS_ENV}={raw!r}: expected a whole number of CPU training processes (>= 1); "
                          "unset it to train in one process")
    return int(raw)


def accelerate_argv(engine: list[str], processes: int) -> list[str]:
    """Wrap an engine command in ``accelerate launch`` (torchrun underneath) with ``processes`` ranks.

    ``--multi_gpu`` only selects accelerate's torchrun launcher: on a host without CUDA the Trainer
    then joins the ranks with gloo on the CPU (accelerate's own ``--cpu`` flag starts one process
    unless MPI is installed). Port 0 lets accelerate pick a free rendezvous port, so two multi-GPU
    runs side by side never collide.
    """
    options = ["--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    if Path(engine[0]).name.startswith("python"):
        # accelerate starts each rank with its own interpreter: run the launcher under the same one.
        return [engine[0], "-m", "accelerate.commands.launch", *options, *engine[1:]]
    return [sys.executable, "-m", "accelerate.commands.launch", *options, "--no_python", *engine]


def stage_command(ws: Workspace, run: Run, stage: str, cfg: RunConfig) -> tuple[list[str], dict[str, str]]:
    """The argv of one stage and the environment entries it needs on top of ours.

    A train stage on N ≥ 2 GPUs (``run.gpus``, e.g. ``"0,1"``) — or, on a CPU-only host, with
    ``$DIALSUM_CPU_PROCS`` ≥ 2 — runs under ``accelerate launch`` with N ranks. Inference and
    evaluation stay single-process, on the run's first GPU.

    Raises:
        ConfigError: ``$DIALSUM_CPU_PROCS`` is not a number.
    """
    gpus = parse_gpus(run.gpus)
    env: dict[str, str] = {}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = run.gpus if stage == "train" else str(gpus[0])
        processes = len(gpus) if stage == "train" else 1
    else:
        processes = cpu_processes() if stage == "train" else 1
        if processes > 1:
            env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU switch means CPU: never pick up a GPU by accident
    argv = engine_argv()
    if processes > 1:
        argv = accelerate_argv(argv, processes)
    return argv + stage_args(ws, run, stage, cfg), env


def run_config(run: Run) -> RunConfig:
    """The validated config snapshot of a run."""
    return config_from_dict(yaml.safe_load(run.config_yaml) or {}, source=f"run {run.id} config snapshot")


def stage_args(ws: Workspace, run: Run, stage: str, cfg: RunConfig) -> list[str]:
    """Engine arguments for one stage; paths only, so no config value ever becomes a command string."""
    run_dir = ws.run_dir(run.id)
    config = str(run_dir / artifacts.CONFIG_FILE)
    if stage == "train":
        return ["train", "--config", config, "--run-dir", str(run_dir)]
    if stage == "infer":
        return ["infer", "--config", config, "--run-dir", str(run_dir), "--split", "both"]
    predictions = artifacts.dev_predictions_path(ws.resolve(cfg.paths.submissions), cfg.model.nickname)
    references = ws.resolve(cfg.data.dir) / "dev.csv"
    return ["evaluate", "--predictions", str(predictions), "--references", str(references),
            "--run-dir", str(run_dir), "--json"]


def run_owners(runs: list[Run], extra: dict[int, tuple[int, str]] | None = None) -> dict[int, tuple[int, str]]:
    """pid → (run id, nickname) for our runs' processes, skipping pids now reused by someone else."""
    owners = dict(extra or {})
    for run in runs:
        if run.pid is None:
            continue
        now = process.start_time(run.pid)
        if now is None or (run.pid_start_time is not None and abs(now - run.pid_start_time) <= process.START_TIME_TOLERANCE_S):
            owners[run.pid] = (run.id, run.nickname)
            if now is not None:  # the ranks of `accelerate launch` hold the GPUs, not the launcher
                owners.update({m.pid: (run.id, run.nickname) for m in stage_members(run.pid)})
    return owners


def stage_members(pid: int) -> list[process.Identity]:
    """Descendants of a stage process that lead their own process group: the ranks torchrun started.

    torchrun puts each rank in a new session (to kill a rank with its DataLoader workers), so a
    signal to the stage's group reaches the launcher only. Ranks are tracked by identity while the
    launcher lives, so none survives it unnoticed.
    """
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    members = []
    for child in children:
        try:
            if os.getpgid(child.pid) == child.pid:
                members.append(process.Identity(child.pid, child.create_time()))
        except (OSError, psutil.Error):
            continue  # exited while we looked
    return members


def root_failure(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep one ``failed`` event of a distributed stage: the rank that broke first.

    When one rank crashes, torchrun tears the others down, and they record ``interrupted`` or a
    lost-connection error after it. The earliest failure that is not an interruption is the cause;
    its message is prefixed with its rank. Single-process stages pass through unchanged.
    """
    failed = [e for e in events if e.get("event") == "failed"]
    if len(failed) < 2 and not any("rank" in e for e in failed):
        return events
    cause = min(failed, key=lambda e: (e.get("kind") == "interrupted", e.get("ts", 0)))
    if "rank" in cause:
        cause = cause | {"message": f"rank {cause['rank']}: {cause.get('message', '')}"}
    return [e for e in events if e.get("event") != "failed"] + [cause]


def read_log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a log, decoded leniently ('' if missing)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - limit))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def stage_artifacts_done(ws: Workspace, run: Run, stage: str, events: list[dict[str, Any]]) -> bool:
    """Whether a stage's outputs are complete on disk (evidence when its process vanished silently)."""
    try:
        cfg = run_config(run)
    except ConfigError:
        return False
    if stage == "train":
        return artifacts.is_complete_model(artifacts.final_model_dir(ws.resolve(cfg.paths.checkpoints), cfg.model.nickname))
    if stage == "infer":
        subs = ws.resolve(cfg.paths.submissions)
        return all(p.is_file() for p in (artifacts.submission_path(subs, cfg.model.nickname),
                                         artifacts.dev_predictions_path(subs, cfg.model.nickname)))
    return any(e.get("event") == "eval" and e.get("command") == "evaluate" for e in events)


@dataclass(frozen=True)
class _Blocked:
    """A run the guards hold back, and the devices it holds its place on (None = all)."""

    run_id: int
    devices: list[int] | None
    reason: str = ""


def _overlap(a: list[int] | None, b: list[int] | None) -> bool:
    """Whether two device lists can collide (None means every device)."""
    return a is None or b is None or bool(set(a) & set(b))


@dataclass
class ActiveStage:
    """A stage process the worker follows (launched by it, or re-adopted after a restart)."""

    run_id: int
    stage: str
    ident: process.Identity
    popen: Any | None  # subprocess.Popen when we are the parent; None when re-adopted
    tail: artifacts.EventTail
    events: list[dict[str, Any]] = field(default_factory=list)
    stop: process.GroupStop | None = None
    stop_reason: str | None = None  # "cancel" or the disk-guard message
    members: dict[int, process.Identity] = field(default_factory=dict)  # ranks in their own groups
    member_stops: dict[int, process.GroupStop] = field(default_factory=dict)


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
        self.store = Store(workspace.db_path)
        self.poll_s = poll_s
        self.stop_grace = stop_grace
        self.settings = workspace.settings()
        self.gpu = gpu_source if gpu_source is not None else open_gpu_source()
        self.guard = GpuGuard(self.gpu, self.settings)
        self.active: dict[int, ActiveStage] = {}
        self.seen_pids: dict[int, tuple[int, str]] = {}  # every stage pid this worker launched or adopted
        self._stopping = threading.Event()
        self._lock_fd: int | None = None
        self._disk_thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def acquire_lock(self, wait_s: float = 2.0) -> bool:
        """Take the workspace's worker lock and write ``"<pid> <start time>"`` into it.

        Retries briefly: a CLI probing the lock holds it shared for an instant.
        """
        fd = os.open(self.ws.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {process.start_time(os.getpid())}\n".encode())
        os.fsync(fd)
        self._lock_fd = fd
        return True

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

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
        from dialsum_tui.manager import (
            disk,  # the guards engineer's module; du-like and slow
        )

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
            tail = artifacts.EventTail(self.ws.run_dir(run.id) / artifacts.EVENTS_FILE)
            events = [e for e in tail.read_new() if e.get("command") in (None, run.stage)]
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
        self._handle_cancels()
        self._watch_disk()
        self._admit()

    def _follow(self, stage: ActiveStage) -> None:
        self._absorb(stage)
        self._track_members(stage)
        if stage.stop is not None:
            stage.stop.advance()
        if stage.popen is not None:
            rc = stage.popen.poll()
            if rc is None:
                return
        elif process.is_alive(stage.ident.pid, stage.ident.start_time):
            return
        else:
            rc = None  # not our child: the verdict event says how it ended
        if stage.stop is not None and not stage.stop.advance():
            return  # the leader exited but its group (forked workers) is still being stopped
        if not self._members_stopped(stage):
            return  # the launcher is gone but ranks outlived it: they are being stopped
        self._absorb(stage)
        self._finish_stage(stage, rc)

    def _track_members(self, stage: ActiveStage) -> None:
        """Learn the ranks of a launcher while it lives (they are in groups of their own)."""
        if not process.is_alive(stage.ident.pid, stage.ident.start_time):
            return
        for member in stage_members(stage.ident.pid):
            if member.pid not in stage.members:
                stage.members[member.pid] = member
                self.seen_pids[member.pid] = self.seen_pids.get(stage.ident.pid, (stage.run_id, ""))

    def _members_stopped(self, stage: ActiveStage) -> bool:
        """Once the launcher has exited, stop any rank still running (SIGINT → SIGTERM → SIGKILL).

        The launcher forwards a stop to its ranks itself; only ranks left behind (launcher killed,
        or crashed) are signalled here, so a rank never gets the same stop twice.
        """
        done = True
        for pid, member in stage.members.items():
            stopper = stage.member_stops.get(pid)
            if stopper is None:
                if not process.group_running(member):
                    continue
                log.warning("run %d: rank pid %d outlived its launcher; stopping it", stage.run_id, pid)
                stopper = stage.member_stops[pid] = process.GroupStop(member, self.stop_grace)
            done = stopper.advance() and done
        return done

    def _absorb(self, stage: ActiveStage) -> None:
        """Copy new events of the stage into the store (progress, metrics)."""
        new = [e for e in stage.tail.read_new() if e.get("command") in (None, stage.stage)]
        if not new:
            return
        stage.events.extend(new)
        run = self.store.get(stage.run_id)
        progress, metrics = dict(run.progress), dict(run.metrics)
        meta = {"v", "ts", "event", "command"}
        for event in new:
            kind = event.get("event")
            if kind == "progress":
                progress = {k: v for k, v in event.items() if k not in meta} | {"stage": stage.stage, "ts": event.get("ts")}
            elif kind == "eval":
                metrics = metrics | {k: v for k, v in event.items() if k not in meta} | {"stage": stage.stage}
            elif kind == "train_log" and "loss" in event:
                progress = progress | {"loss": event["loss"]}
        self.store.update(stage.run_id, progress=progress, metrics=metrics)

    def _finish_stage(self, stage: ActiveStage, rc: int | None) -> None:
        """Record how a stage ended and move the run on (next stage, or a final state)."""
        from dialsum_tui.manager.classify import (
            classify,  # the guards engineer's failure classes
        )

        self.active.pop(stage.run_id, None)
        run = self.store.get(stage.run_id)
        events = stage.events
        verdicts = [e for e in events if e.get("event") in ("finished", "failed")]
        log_tail = read_log_tail(self.ws.run_dir(run.id) / artifacts.LOG_FILE)
        adopted_silent = rc is None and not verdicts
        if rc is None and verdicts:
            rc = 0 if verdicts[-1]["event"] == "finished" else (130 if verdicts[-1].get("kind") == "interrupted" else 1)

        if adopted_silent:
            # Gone while no worker watched and it said nothing: look for evidence before giving up.
            known = match_text(log_tail)
            if stage_artifacts_done(self.ws, run, stage.stage, events):
                failure = None
            elif known is not None:
                failure = Failure(known.kind, known.message, known.hint)
            else:
                self._set_final(run, RunState.INTERRUPTED, stage.stage, rc, reason=(
                    f"{stage.stage} process {stage.ident.pid} vanished while no worker watched it, with no verdict, "
                    "no known error in run.log and no complete output; retry it"))
                return
        else:
            failure = classify(rc, root_failure(events), log_tail, self._others_held(stage))

        if stage.stop_reason == "cancel":
            if failure is None and stage.stage == run.stages[-1]:
                self._set_final(run, RunState.SUCCEEDED, stage.stage, rc, reason="finished before the cancel took effect")
            else:
                self._set_final(run, RunState.CANCELLED, stage.stage, rc, reason=f"cancelled during {stage.stage}")
            return
        if stage.stop_reason is not None and failure is not None:  # stopped by the disk watch
            failure = Failure("disk", stage.stop_reason, _DISK_HINT)
        if failure is not None:
            self._set_final(run, RunState.FAILED, stage.stage, rc, failure=failure)
            return
        remaining = run.stages[run.stages.index(stage.stage) + 1:] if stage.stage in run.stages else ()
        if not remaining:
            self._set_final(run, RunState.SUCCEEDED, stage.stage, rc)
            return
        # Next stage: a fresh process, admitted only once the GPU is released by this one.
        self.store.update(run.id, stage=remaining[0], pid=None, pid_start_time=None, exit_code=rc,
                          reason=f"{stage.stage} done; {remaining[0]} starts when the GPU is released")
        log.info("run %d: %s done, next %s", run.id, stage.stage, remaining[0])

    def _set_final(self, run: Run, state: RunState, stage: str, rc: int | None,
                   failure: Failure | None = None, reason: str | None = None) -> None:
        fields_: dict[str, Any] = {"exit_code": rc, "stage": stage, "reason": reason}
        if failure is not None:
            fields_.update(failure_kind=failure.kind, failure_message=failure.message,
                           failure_hint=failure.hint, failed_stage=stage)
        try:
            self.store.transition(run.id, state, **fields_)
        except IllegalTransition as err:
            log.warning("%s", err)
        log.info("run %d: %s (%s)", run.id, state.value, failure.kind if failure else reason or stage)

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

    def _handle_cancels(self) -> None:
        for run in self.store.list():
            if run.state is not RunState.RUNNING or not run.cancel_requested:
                continue
            stage = self.active.get(run.id)
            if stage is None:  # between stages: nothing to signal
                self._set_final(run, RunState.CANCELLED, run.stage or "", run.exit_code,
                                reason=f"cancelled before {run.stage} started")
            elif stage.stop is None:
                log.info("run %d: cancelling (SIGINT to group %d)", run.id, stage.ident.pid)
                stage.stop_reason = "cancel"
                stage.stop = process.GroupStop(stage.ident, self.stop_grace)
                stage.stop.advance()

    def _watch_disk(self) -> None:
        if not self.active:
            return
        from dialsum_tui.manager import disk

        verdict = check_running_disk(disk.read_cached(self.ws))
        if verdict.ok:
            return
        for stage in self.active.values():
            if stage.stop is None:
                log.warning("run %d: %s", stage.run_id, verdict.reason)
                stage.stop_reason = verdict.reason
                stage.stop = process.GroupStop(stage.ident, self.stop_grace)
                stage.stop.advance()
        if not self.store.paused():
            self.store.set_paused(True)

    # --- admission ----------------------------------------------------------------------------

    def _busy_gpus(self, runs: list[Run], candidate: Run) -> bool:
        """Whether another active run shares the candidate's devices (unnamed devices = all)."""
        mine = parse_gpus(candidate.gpus)
        for run in runs:
            if run.id == candidate.id or run.state is not RunState.RUNNING:
                continue
            theirs = parse_gpus(run.gpus)
            if mine is None or theirs is None or set(mine) & set(theirs):
                return True
        return False

    def _admit(self) -> None:
        runs = self.store.list()
        by_id = {r.id: r for r in runs}
        paused = self.store.paused()
        # Runs between stages go first: they already hold their place.
        between = [r for r in runs if r.state is RunState.RUNNING and r.pid is None and r.id not in self.active]
        pending = [r for r in runs if r.state in (RunState.QUEUED, RunState.WAITING)]
        blocked: list[_Blocked] = []
        for run in between + pending:
            if run.state is not RunState.RUNNING:
                dependency = self._dependency_block(run, by_id)
                if dependency is not None:
                    self._wait(run, dependency)
                    continue
            if paused:
                self._wait(run, "queue paused: `dialsum-tui resume` to continue")
                continue
            if self._busy_gpus(runs, run):
                self._wait(run, "waiting for the running run(s) on the same device(s)")
                continue
            mine = parse_gpus(run.gpus)
            ahead = next((b for b in blocked if _overlap(mine, b.devices)), None)
            if ahead is not None:
                # In order: a later run must not take a device an earlier blocked run waits for.
                self._wait(run, f"queued behind run {ahead.run_id} for the same device(s)")
                continue
            stage = run.stage if run.state is RunState.RUNNING else run.stages[0]
            verdict = self._guards(run, stage, runs)
            if verdict is not None:
                self._wait(run, verdict.reason)
                blocked.append(_Blocked(run.id, verdict.devices))
                continue  # runs on other devices may still start (guards are per device)
            self._launch(run, stage)
            return  # one launch per tick: its memory must show before the next is judged

    def _dependency_block(self, run: Run, by_id: dict[int, Run]) -> str | None:
        if run.after is None:
            return None
        dep = by_id.get(run.after)
        if dep is None or dep.state is RunState.SUCCEEDED:
            return None
        if dep.state.is_final:
            self._set_cancelled(run, f"run {dep.id} it depends on ended {dep.state.value}; retry that one first")
            return "dependency ended"
        return f"after run {dep.id} ({dep.nickname}, {dep.state.value})"

    def _set_cancelled(self, run: Run, reason: str) -> None:
        try:
            self.store.transition(run.id, RunState.CANCELLED, reason=reason)
        except IllegalTransition as err:
            log.warning("%s", err)

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

    def _guards(self, run: Run, stage: str, runs: list[Run]) -> _Blocked | None:
        """None when the run may start now; otherwise the reason naming the holder or the numbers,
        and what it blocks: the run's devices for a GPU verdict, everything (None) for the shared disk."""
        from dialsum_tui.manager import disk

        gpus = parse_gpus(run.gpus)
        gpu = self.guard.check(gpus, run_owners(runs, self.seen_pids))
        if not gpu.ok:
            return _Blocked(run.id, gpus, gpu.reason or "GPU not free")
        try:
            projected = disk.projected_footprint(run_config(run), stage, self.ws.root)
        except ConfigError as err:
            return _Blocked(run.id, None, f"config snapshot invalid: {err}")
        verdict = check_disk(disk.read_cached(self.ws), projected)
        return None if verdict.ok else _Blocked(run.id, None, verdict.reason or "disk guard")

    def _launch(self, run: Run, stage: str) -> None:
        try:
            cfg = run_config(run)
        except ConfigError as err:
            self._fail_before_start(run, stage, Failure("config", str(err), "fix the config and add it again"))
            return
        if run.state is not RunState.RUNNING:
            try:
                run = self.store.transition(run.id, RunState.RUNNING, stage=stage, reason=None)
            except IllegalTransition:
                return  # cancelled between our read and now
        run_dir = self.ws.run_dir(run.id)
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            argv, extra_env = stage_command(self.ws, run, stage, cfg)
        except ConfigError as err:
            self._fail_before_start(run, stage, Failure("config", str(err), f"fix or unset ${CPU_PROCS_ENV}"))
            return
        env = dict(os.environ, PYTHONUNBUFFERED="1") | extra_env
        log_path = run_dir / artifacts.LOG_FILE
        with open(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a", encoding="utf-8") as fh:
            fh.write(f"\n=== dialsum: {stage} started {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(argv)}\n")
        try:
            popen, ident = process.launch(argv, cwd=self.ws.root, log_path=log_path, env=env)
        except OSError as err:
            self._fail_before_start(run, stage, Failure("config", f"cannot start {argv[0]}: {err}",
                                                        f"check ${ENGINE_ENV} or the Python environment"))
            return
        self.store.update(run.id, pid=ident.pid, pid_start_time=ident.start_time, stage=stage, reason=None)
        self.guard.note_launch(parse_gpus(run.gpus))
        self.seen_pids[ident.pid] = (run.id, run.nickname)
        tail = artifacts.EventTail(run_dir / artifacts.EVENTS_FILE)
        # Skip earlier stages' events: this stage's verdict is what matters now.
        tail.read_new()
        self.active[run.id] = ActiveStage(run.id, stage, ident, popen, tail)
        log.info("run %d: launched %s pid %d", run.id, stage, ident.pid)

    def _fail_before_start(self, run: Run, stage: str, failure: Failure) -> None:
        if run.state is not RunState.RUNNING:
            try:
                run = self.store.transition(run.id, RunState.RUNNING, stage=stage)
            except IllegalTransition:
                return
        self._set_final(run, RunState.FAILED, stage, None, failure=failure)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the detached worker process: ``python -m dialsum_tui.manager.worker ROOT``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m dialsum_tui.manager.worker WORKSPACE", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    ws = Workspace(Path(args[0]).resolve())
    grace = tuple(float(x) for x in os.environ.get(GRACE_ENV, "").split(",") if x) or process.DEFAULT_GRACE_S
    worker = Worker(ws, poll_s=float(os.environ.get(POLL_ENV, "0.5")), stop_grace=grace[:2])  # type: ignore[arg-type]
    if not worker.acquire_lock():
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
        worker.release_lock()
    return 0


if __name__ == "__main__":
    sys.exit(main())
