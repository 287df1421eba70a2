"""Provides what following a running stage needs: the stage being followed (its backend handle,
the ranks it started, its events so far, its stop), how new events become the run's progress and
metrics, which pids belong to which run, and the tail of ``run.log``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from dialsum_tui.manager import process
from dialsum_tui.manager.backends.protocol import Backend, BackendUnavailable, Handle, Poll, Stopper
from dialsum_tui.manager.runs.events import keep_bounded, stage_records
from dialsum_tui.manager.runs.models import Run
from engine.artifacts import EventTail
from engine.contract import EventRecord

log = logging.getLogger("dialsum.worker")


@dataclass
class ActiveStage:
    """A stage the worker follows (launched by it, or re-adopted after a restart), on its backend."""

    run_id: int
    stage: str
    handle: Handle  # a local process (pid + start time, its Popen when ours) or a Slurm job id
    backend: Backend
    tail: EventTail
    # The stage's records so far, bounded (runs.events.keep_bounded): every rare one, the newest
    # warnings, the last progress and train_log — what the verdict and the store need, not the file.
    events: list[EventRecord] = field(default_factory=list)
    stop: Stopper | None = None
    stop_reason: str | None = None  # "cancel" or the disk-guard message
    members: dict[int, process.Identity] = field(default_factory=dict)  # ranks in their own groups
    member_stops: dict[int, process.GroupStop] = field(default_factory=dict)
    note: str | None = None  # the run's reason as the backend last set it ("Slurm: Priority …")
    allocation: str | None = None  # what Slurm gave the job, once it runs
    # The store could not take a write (disk full, read-only): what is owed to it, kept here and
    # written at the next pass that can — a stage is forgotten only once its end is on record.
    verdict: Any | None = None  # the Outcome reached for the ended stage, not yet recorded
    unsaved: bool = False  # progress/metrics of some events did not reach the store

    @property
    def ident(self) -> process.Identity | None:
        """The local stage process; None on Slurm, where no process of ours can be looked at."""
        return getattr(self.handle, "ident", None)

    @property
    def popen(self) -> Any | None:
        """The local stage's Popen when this worker started it (None when re-adopted, or on Slurm)."""
        return getattr(self.handle, "popen", None)

    def read_new_events(self) -> list[EventRecord]:
        """This stage's records appended since the last read (other stages' lines are skipped),
        bounded like :attr:`events`: read ``max_bytes`` at a time up to the file's end now, and of
        the frequent ones only the last of each kind kept (the store keeps only the latest anyway)."""
        new = keep_bounded(stage_records(self.tail.drain(), self.stage))
        if new:
            self.events = keep_bounded(self.events + new)
        return new

    def poll(self) -> Poll:
        """How the stage is doing (Running, Pending, Exited, Gone).

        Raises:
            BackendUnavailable: the backend cannot answer now; ask again next tick.
        """
        return self.backend.poll(self.handle)

    def begin_stop(self, reason: str, grace: tuple[float, float]) -> None:
        """Start stopping the stage (SIGINT now, escalating on later ``stop.advance()`` calls)."""
        self.stop_reason = reason
        self.stop = self.backend.stop(self.handle, grace)
        try:
            self.stop.advance()
        except BackendUnavailable as err:  # the follow loop's next advance() tries again
            log.warning("run %d: the stop waits for the backend: %s", self.run_id, err)

    def track_members(self) -> list[process.Identity]:
        """Learn the ranks of a launcher while it lives (they are in groups of their own); returns new ones."""
        if self.ident is None or not process.is_alive(self.ident.pid, self.ident.start_time):
            return []
        found = [m for m in process.group_leaders_below(self.ident.pid) if m.pid not in self.members]
        self.members.update({m.pid: m for m in found})
        return found

    def members_stopped(self, grace: tuple[float, float]) -> bool:
        """Once the launcher has exited, stop any rank still running (SIGINT → SIGTERM → SIGKILL).

        The launcher forwards a stop to its ranks itself; only ranks left behind (launcher killed,
        or crashed) are signalled here, so a rank never gets the same stop twice.
        """
        done = True
        for pid, member in self.members.items():
            stopper = self.member_stops.get(pid)
            if stopper is None:
                if not process.group_running(member):
                    continue
                log.warning("run %d: rank pid %d outlived its launcher; stopping it", self.run_id, pid)
                stopper = self.member_stops[pid] = process.GroupStop(member, grace)
            done = stopper.advance() and done
        return done


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
                owners.update({m.pid: (run.id, run.nickname) for m in process.group_leaders_below(run.pid)})
    return owners


