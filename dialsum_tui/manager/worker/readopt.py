"""Provides what a restarted worker finds in the store: the stage each running run was in, rebuilt
for following again (a local pid, a Slurm job id), and whether that stage still runs.

A stage outlives the worker that started it (SSH drops, an upgrade): the next worker follows it
again, or judges it from its evidence when it ended meanwhile (:mod:`~dialsum_tui.manager.worker.verdict`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping

from dialsum_tui.manager.backends.protocol import Backend
from dialsum_tui.manager.runs.events import catch_up
from dialsum_tui.manager.runs.models import Run, RunState
from dialsum_tui.manager.worker.following import ActiveStage
from dialsum_tui.manager.workspace.layout import Workspace
from engine.artifacts import EventTail
from engine.contract import EventRecord, RunFiles, Started

log = logging.getLogger("dialsum.worker")


def stages_left_running(ws: Workspace, runs: Iterable[Run],
                        backends: Mapping[str, Backend]) -> Iterator[tuple[Run, ActiveStage, bool]]:
    """Each running run's stage with its events so far, and True while it may still run.

    A local stage runs while its pid is alive with the recorded start time (a pid the system reused
    for another process is never taken for ours). A Slurm job is Slurm's: the next poll says how it
    is. A run between stages (no pid, no job) has nothing to follow; admission starts its next stage.
    """
    for run in runs:
        if run.state is not RunState.RUNNING:
            continue
        stage_name = run.stage or run.stages[0]
        launch = run.launch if run.launch.get("stage") == stage_name else {}
        # The stage's events begin where its launch intent says; without one, from the start. A
        # stage that wrote GBs meanwhile costs what its summary costs (runs.events.catch_up).
        tail = EventTail(RunFiles(ws.run_dir(run.id)).events, offset=int(launch.get("events_offset") or 0))
        events = catch_up(tail, stage_name)
        backend = backends[run.backend]
        handle = backend.handle_of(run)
        if handle is not None:
            yield run, ActiveStage(run.id, stage_name, handle, backend, tail, events), backend.may_still_run(handle)
        elif launch:
            found = unrecorded_stage(run, stage_name, events, backend, tail)
            if found is not None:
                yield run, *found
        else:
            log.info("run %d: between stages (next %s); continuing", run.id, run.stage)


def unrecorded_stage(run: Run, stage: str, events: list[EventRecord], backend: Backend,
                     tail: EventTail) -> tuple[ActiveStage, bool] | None:
    """A stage whose launch was recorded as an intent but whose handle never was (the worker stopped
    in between): follow it if it runs, judge it from its events if it ran and ended, and leave it to
    admission (None) if it never started — launching it then is its first start."""
    handle = backend.find_unrecorded(run)
    if handle is not None:
        log.info("run %d: found %s stage %s by its launch token; re-adopting", run.id, stage, handle.ref)
        return ActiveStage(run.id, stage, handle, backend, tail, events), True
    gone = backend.gone()
    if gone is not None and any(isinstance(e, Started) for e in events):
        log.info("run %d: %s started (its events say) and ended while no worker watched; judging", run.id, stage)
        return ActiveStage(run.id, stage, gone, backend, tail, events), False
    log.info("run %d: %s was about to start when the last worker stopped; it never did: starting it", run.id, stage)
    return None
