"""Provides what a run's end sets off besides its own record: its ping (a sweep's variants are announced
together, once, when the whole sweep ends, with its best run), the failure streak that pauses the
runs sharing its cause (``pause_after_failures``), and admission's hold on those runs.

Called by the worker's loop for every run it records as final; nothing here may stop the loop, so
each part logs its own error and lets the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from dialsum_tui.manager.runs.models import Run, RunState
from dialsum_tui.manager.runs.streaks import FailurePause, failure_streak, holding, run_scope
from dialsum_tui.manager.runs.sweeps import SweepNotFound, SweepStatus, sweep_status
from dialsum_tui.manager.store.database import Store
from dialsum_tui.manager.worker.notify import notify_paused, notify_run_ended, notify_sweep_ended
from dialsum_tui.manager.workspace.settings import Settings

log = logging.getLogger("dialsum.worker")


def after_run_ended(store: Store, settings: Settings, root: Path, run: Run) -> None:
    """A run was just recorded final: ping, pause what its failure streak covers, announce its sweep's end."""
    try:
        if not (run.sweep and run.state is RunState.SUCCEEDED):  # a sweep's successes are told at its end
            notify_run_ended(settings.notify, run, root)
    except Exception:
        log.exception("run %d: its end could not be announced", run.id)
    try:
        record_failure_streak(store, settings, root, run)
    except Exception:
        log.exception("run %d: the failure streak could not be judged", run.id)
    try:
        announce_sweep_end(store, settings, root, run)
    except Exception:
        log.exception("run %d: its sweep's end could not be judged", run.id)


def record_failure_streak(store: Store, settings: Settings, root: Path, run: Run) -> FailurePause | None:
    """Pause the runs that share ``run``'s failure when it completes a streak (:func:`runs.streaks.failure_streak`);
    the pause is recorded in the store and announced once. Returns it (None: no streak, or off)."""
    if settings.pause_after_failures <= 0 or run.state is not RunState.FAILED:
        return None
    pause = failure_streak(store.list(), run, settings.pause_after_failures, settings.early_failure_s,
                           lambda r: run_scope(r, root), since=store.failures_cleared_at())
    if pause is None:
        return None
    if store.add_failure_pause(pause):
        log.warning("%s", pause.message)
        notify_paused(settings.notify, pause, run, root)
    return pause


def announce_sweep_end(store: Store, settings: Settings, root: Path, run: Run) -> SweepStatus | None:
    """When ``run`` was its sweep's last unfinished variant: mark the sweep ended and send its one ping."""
    if not run.sweep:
        return None
    try:
        sweep = store.get_sweep(run.sweep)
    except SweepNotFound:
        return None
    status = sweep_status(sweep, store.list())
    if not status.ended or not store.end_sweep(sweep.id):
        return None
    from dialsum_tui.manager.worker.notify import sweep_message

    log.info("%s", sweep_message(status))
    notify_sweep_ended(settings.notify, status, root)
    return status


def failure_hold(store: Store, root: Path) -> Callable[[Run], str | None] | None:
    """Admission's ``hold``: why a pending run waits for a failure pause; None when nothing is paused."""
    return holding(store.failure_pauses(), lambda r: run_scope(r, root))
