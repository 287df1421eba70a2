"""Provides the judgement on a stage that ended: from its exit status, its events, the log tail and
the artifacts on disk, what the run becomes (the next stage, succeeded, failed with a kind, cancelled
or interrupted). Pure: the worker gathers the evidence and applies the :class:`Outcome`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dialsum_tui.manager.classify import classify
from dialsum_tui.manager.identity import run_key
from dialsum_tui.manager.models import Run, RunState
from dialsum_tui.manager.store import IllegalTransition, Store
from dialsum_tui.manager.workspace import Workspace
from engine.artifacts import dev_predictions_path, final_model_dir, is_complete_model, submission_path
from engine.config import ConfigError, RunConfig
from engine.contract import Event, ExitCode, FailureKind, Stage
from engine.failures import Failure, match_text

log = logging.getLogger("dialsum.worker")

CANCEL = "cancel"  # ActiveStage.stop_reason of a stop the user asked for (any other reason is the disk watch's)


@dataclass(frozen=True)
class Outcome:
    """What a finished stage makes of its run: a final ``state``, or (state None) ``next_stage``."""

    state: RunState | None
    exit_code: int | None
    failure: Failure | None = None
    reason: str | None = None
    next_stage: str | None = None


@dataclass(frozen=True)
class Ended:
    """The evidence about one stage that ended."""

    stage: str
    pid: int
    exit_code: int | None  # None: not our child (re-adopted or found gone at restart)
    events: list[dict[str, Any]]
    log_tail: str
    stop_reason: str | None = None
    oom_evidence: str | None = None  # the host OOM killer's trace, when one was found (oom.evidence)


def root_failure(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep one ``failed`` event of a distributed stage: the rank that broke first.

    When one rank crashes, torchrun tears the others down, and they record ``interrupted`` or a
    lost-connection error after it. The earliest failure that is not an interruption is the cause;
    its message is prefixed with its rank. Single-process stages pass through unchanged.
    """
    failed = [e for e in events if e.get("event") == Event.FAILED]
    if len(failed) < 2 and not any("rank" in e for e in failed):
        return events
    cause = min(failed, key=lambda e: (e.get("kind") == FailureKind.INTERRUPTED, e.get("ts", 0)))
    if "rank" in cause:
        cause = cause | {"message": f"rank {cause['rank']}: {cause.get('message', '')}"}
    return [e for e in events if e.get("event") != Event.FAILED] + [cause]


def stage_artifacts_done(ws: Workspace, cfg: RunConfig, stage: str, events: list[dict[str, Any]],
                         run: Run | None = None) -> bool:
    """Whether a stage's outputs are complete on disk (evidence when its process vanished silently).

    The outputs are the run's own (``<slug>-r<id>``, :mod:`dialsum_tui.manager.identity`); without
    a run, the old nickname layout.
    """
    key = run_key(run) if run is not None else cfg.model.nickname
    if stage == Stage.TRAIN:
        return is_complete_model(final_model_dir(ws.resolve(cfg.paths.checkpoints), key))
    if stage == Stage.INFER:
        subs = ws.resolve(cfg.paths.submissions)
        return all(p.is_file() for p in (submission_path(subs, key), dev_predictions_path(subs, key)))
    return any(e.get("event") == Event.EVAL and e.get("command") == Stage.EVALUATE for e in events)


def config_artifacts_done(ws: Workspace, load: Callable[[], RunConfig], stage: str,
                          events: list[dict[str, Any]], run: Run | None = None) -> bool:
    """:func:`stage_artifacts_done` for a run whose snapshot may not load (then: not done)."""
    try:
        cfg = load()
    except ConfigError:
        return False
    return stage_artifacts_done(ws, cfg, stage, events, run)


def judge(run: Run, ended: Ended, artifacts_done: Callable[[], bool],
          others_held: Callable[[], str | None]) -> Outcome:
    """How the run goes on after ``ended``.

    Args:
        run: the run as stored now.
        ended: the stage's exit status, events, log tail and why it was stopped, if it was.
        artifacts_done: whether its outputs are complete on disk; asked only for a stage that
            vanished silently.
        others_held: who else held GPU memory (tells an OOM caused by a leftover apart); asked only
            when the exit is classified.
    """
    rc = ended.exit_code
    verdicts = [e for e in ended.events if e.get("event") in (Event.FINISHED, Event.FAILED)]
    adopted_silent = rc is None and not verdicts
    if rc is None and verdicts:
        last = verdicts[-1]
        rc = (ExitCode.OK if last["event"] == Event.FINISHED
              else ExitCode.INTERRUPTED if last.get("kind") == FailureKind.INTERRUPTED else ExitCode.ERROR)
        rc = int(rc)

    if adopted_silent:
        # Gone while no worker watched and it said nothing: look for evidence before giving up.
        known = match_text(ended.log_tail)
        if artifacts_done():
            failure = None
        elif known is not None:
            failure = Failure(known.kind, known.message, known.hint)
        else:
            return Outcome(RunState.INTERRUPTED, rc, reason=(
                f"{ended.stage} process {ended.pid} vanished while no worker watched it, with no verdict, "
                "no known error in run.log and no complete output; retry it"))
    else:
        failure = classify(rc, root_failure(ended.events), ended.log_tail, others_held(), ended.oom_evidence)

    if ended.stop_reason == CANCEL:
        if failure is None and ended.stage == run.stages[-1]:
            return Outcome(RunState.SUCCEEDED, rc, reason="finished before the cancel took effect")
        return Outcome(RunState.CANCELLED, rc, reason=f"cancelled during {ended.stage}")
    if ended.stop_reason is not None and failure is not None:  # stopped by the disk watch
        failure = Failure(FailureKind.DISK, ended.stop_reason, FailureKind.DISK.hint)
    if failure is not None:
        return Outcome(RunState.FAILED, rc, failure=failure)
    remaining = run.stages[run.stages.index(ended.stage) + 1:] if ended.stage in run.stages else ()
    if not remaining:
        return Outcome(RunState.SUCCEEDED, rc)
    return Outcome(None, rc, reason=f"{ended.stage} done; {remaining[0]} starts when the GPU is released",
                   next_stage=remaining[0])


def record(store: Store, run: Run, stage: str, outcome: Outcome) -> Run | None:
    """Write a final outcome into the store (a run cancelled meanwhile keeps its state).

    Returns the run as recorded, or None when the store refused the transition.
    """
    assert outcome.state is not None, "a next-stage outcome is not final"
    fields_: dict[str, Any] = {"exit_code": outcome.exit_code, "stage": stage, "reason": outcome.reason}
    failure = outcome.failure
    if failure is not None:
        fields_.update(failure_kind=failure.kind, failure_message=failure.message,
                       failure_hint=failure.hint, failed_stage=stage)
    try:
        recorded = store.transition(run.id, outcome.state, **fields_)
    except IllegalTransition as err:
        log.warning("%s", err)
        return None
    log.info("run %d: %s (%s)", run.id, outcome.state.value, failure.kind if failure else outcome.reason or stage)
    return recorded
