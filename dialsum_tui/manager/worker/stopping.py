"""Provides the two reasons the worker stops a running stage: the user cancelled its run, or the
disk watch found the quota nearly used up while stages were writing (then the queue is paused too).
Stops escalate SIGINT → SIGTERM → SIGKILL through the stage's backend (a process group, or scancel).
"""

from __future__ import annotations

import logging

from dialsum_tui.manager.guards.checks import check_running_disk
from dialsum_tui.manager.guards.disk import DiskUsage
from dialsum_tui.manager.procfs import current_user
from dialsum_tui.manager.runs.models import Run, RunState
from dialsum_tui.manager.store.database import Store
from dialsum_tui.manager.worker.following import ActiveStage
from dialsum_tui.manager.worker.verdict import CANCEL, Outcome, record
from dialsum_tui.manager.workspace import sharing

log = logging.getLogger("dialsum.worker")


def handle_cancels(store: Store, runs: list[Run], active: dict[int, ActiveStage], grace: tuple[float, float]) -> None:
    """Act on cancel requests: a run between stages ends now; a followed stage starts stopping."""
    for run in runs:
        if run.state is not RunState.RUNNING or not run.cancel_requested:
            continue
        stage = active.get(run.id)
        if stage is None:  # between stages: nothing to signal
            record(store, run, run.stage or "",
                   Outcome(RunState.CANCELLED, run.exit_code, reason=f"cancelled before {run.stage} started"))
        elif stage.stop is None and stage.ident is not None and not sharing.may_signal(stage.ident.pid):
            if stage.stop_reason != CANCEL:
                refuse_cancel(store, run, stage)
        elif stage.stop is None:
            log.info("run %d: cancelling (SIGINT to %s)", run.id,
                     f"group {stage.ident.pid}" if stage.ident else f"Slurm job {stage.handle.ref}")
            stage.begin_stop(CANCEL, grace)


def refuse_cancel(store: Store, run: Run, stage: ActiveStage) -> None:
    """A cancel this worker cannot deliver: the stage belongs to another user (a worker of theirs
    launched it; this one re-adopted it), and Unix lets only them or root signal it.

    Never a stop "sent" into EPERM while the stage trains on: the run says who can stop it
    (``dialsum-tui cancel`` run by them stops it from their side) and the cancel still holds
    between stages: its end is judged as cancelled, and no later stage starts.
    """
    assert stage.ident is not None
    owner = sharing.process_user(stage.ident.pid)
    note = (f"cancel requested, but {run.stage or 'its stage'} (pid {stage.ident.pid}) runs as {owner} and this "
            f"worker as {current_user()}: only {owner} or root can stop it now (`dialsum-tui cancel {run.id}`); "
            f"otherwise it ends after this stage")
    log.warning("run %d: %s", run.id, note)
    stage.stop_reason = CANCEL  # its end is the cancel's: no later stage starts
    store.update(run.id, reason=note)


def watch_disk(store: Store, usage: DiskUsage | None, active: dict[int, ActiveStage], grace: tuple[float, float]) -> None:
    """Stop every running stage and pause the queue once the running-disk guard says the quota is near."""
    verdict = check_running_disk(usage)
    if verdict.ok:
        return
    for stage in active.values():
        if stage.stop is None and stage.ident is not None and not sharing.may_signal(stage.ident.pid):
            if stage.stop_reason is None:  # another user's stage: no stop "sent" into EPERM
                log.warning("run %d: %s; its stage runs as %s, whom this worker may not signal: the engine's own "
                            "guard stops it at the same byte count", stage.run_id, verdict.reason,
                            sharing.process_user(stage.ident.pid))
                stage.stop_reason = verdict.reason or "disk guard"
        elif stage.stop is None:
            log.warning("run %d: %s", stage.run_id, verdict.reason)
            stage.begin_stop(verdict.reason or "disk guard", grace)
    if not store.paused():
        store.set_paused(True)
