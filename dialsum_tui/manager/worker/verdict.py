"""Provides the judgement on a stage that ended: from its exit status, its events, the log tail and
the artifacts on disk, what the run becomes (the next stage, succeeded, failed with a kind, cancelled
or interrupted). Pure: the worker gathers the evidence and applies the :class:`Outcome`.

:func:`classify` names the failure: the engine says why it failed when it can (a ``failed``
event); a process killed from outside says nothing, so the exit status and the log tail decide.
Signatures come from :mod:`engine.failures`, the table the engine uses too.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from dialsum_tui.manager.backends.protocol import Exited, Gone, verdict
from dialsum_tui.manager.runs.identity import run_key
from dialsum_tui.manager.runs.logs import error_lines
from dialsum_tui.manager.runs.models import Run, RunState
from dialsum_tui.manager.store.database import IllegalTransition, Store
from dialsum_tui.manager.workspace.layout import Workspace
from dialsum_tui.manager.workspace.space import FilesystemProblem
from engine.artifacts import dev_predictions_path, final_model_dir, is_complete_model, submission_path
from engine.config import ConfigError, RunConfig
from engine.contract import OTHERS_HELD_HINT, Eval, EventRecord, ExitCode, Failed, FailureKind, Finished, Stage, Started
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
    events: list[EventRecord]  # the stage's records (bounded: worker.following.ActiveStage.events)
    log_tail: str
    stop_reason: str | None = None
    oom_evidence: str | None = None  # the host OOM killer's trace, when one was found (oom.evidence)
    space_problem: FilesystemProblem | None = None  # a filesystem of the run's, full or read-only now


def root_failure(events: list[EventRecord]) -> list[EventRecord]:
    """Keep one ``failed`` event of a distributed stage: the rank that broke first.

    When one rank crashes, torchrun tears the others down, and they record ``interrupted`` or a
    lost-connection error after it. The earliest failure that is not an interruption is the cause;
    its message is prefixed with its rank. Single-process stages pass through unchanged.
    """
    failed = [e for e in events if isinstance(e, Failed)]
    if len(failed) < 2 and not any(e.rank is not None for e in failed):
        return events
    cause = min(failed, key=lambda e: (FailureKind.parse(e.kind) is FailureKind.INTERRUPTED, e.ts))
    if cause.rank is not None:
        cause = replace(cause, message=f"rank {cause.rank}: {cause.message or ''}")
    return [e for e in events if not isinstance(e, Failed)] + [cause]


def stage_artifacts_done(ws: Workspace, cfg: RunConfig, stage: str, events: list[EventRecord],
                         run: Run | None = None) -> bool:
    """Whether a stage's outputs are complete on disk (evidence when its process vanished silently).

    The outputs are the run's own (``<slug>-r<id>``, :mod:`dialsum_tui.manager.runs.identity`); without
    a run, the old nickname layout.
    """
    key = run_key(run) if run is not None else cfg.model.nickname
    if stage == Stage.TRAIN:
        return is_complete_model(final_model_dir(ws.resolve(cfg.paths.checkpoints), key))
    if stage == Stage.INFER:
        subs = ws.resolve(cfg.paths.submissions)
        return all(p.is_file() for p in (submission_path(subs, key), dev_predictions_path(subs, key)))
    return any(isinstance(e, Eval) and e.command == Stage.EVALUATE for e in events)


def config_artifacts_done(ws: Workspace, load: Callable[[], RunConfig], stage: str,
                          events: list[EventRecord], run: Run | None = None) -> bool:
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
    verdicts = [e for e in ended.events if isinstance(e, Finished | Failed)]
    adopted_silent = rc is None and not verdicts
    if rc is None and verdicts:
        last = verdicts[-1]
        rc = (ExitCode.OK if isinstance(last, Finished)
              else ExitCode.INTERRUPTED if FailureKind.parse(last.kind) is FailureKind.INTERRUPTED else ExitCode.ERROR)
        rc = int(rc)

    if adopted_silent:
        # Gone while no worker watched and it said nothing: look for evidence before giving up.
        known = match_text(ended.log_tail)
        if artifacts_done():
            failure = None
        elif known is not None:
            failure = Failure(known.kind, known.message, known.hint)
        elif ended.space_problem is not None:  # it could not even write its verdict
            failure = Failure.of(FailureKind.DISK, f"{ended.stage} ended without a verdict")
        else:
            return Outcome(RunState.INTERRUPTED, rc, reason=(
                f"{ended.stage} process {ended.pid} vanished while no worker watched it, with no verdict, "
                "no known error in run.log and no complete output; retry it"))
    else:
        failure = classify(rc, root_failure(ended.events), ended.log_tail, others_held(), ended.oom_evidence)

    # A cancel is the user's whoever delivered it: this worker, or the stage's owner from their CLI
    # when this worker (another user's) may not signal it (sharing.stop_route).
    if ended.stop_reason == CANCEL or run.cancel_requested:
        if failure is None and ended.stage == run.stages[-1]:
            return Outcome(RunState.SUCCEEDED, rc, reason="finished before the cancel took effect")
        return Outcome(RunState.CANCELLED, rc, reason=f"cancelled during {ended.stage}")
    if ended.stop_reason is not None and failure is not None:  # stopped by the disk watch
        failure = Failure(FailureKind.DISK, ended.stop_reason, FailureKind.DISK.hint)
    if failure is not None and ended.space_problem is not None:
        failure = on_full_filesystem(failure, ended.space_problem)
    if failure is not None:
        return Outcome(RunState.FAILED, rc, failure=failure)
    remaining = run.stages[run.stages.index(ended.stage) + 1:] if ended.stage in run.stages else ()
    if not remaining:
        return Outcome(RunState.SUCCEEDED, rc)
    return Outcome(None, rc, reason=f"{ended.stage} done; {remaining[0]} starts when the GPU is released",
                   next_stage=remaining[0])


# Kinds a full or read-only filesystem explains better: a stage that cannot write dies oddly.
_SPACE_EXPLAINS = frozenset({FailureKind.DISK, FailureKind.UNKNOWN, FailureKind.KILLED})


def on_full_filesystem(failure: Failure, problem: FilesystemProblem) -> Failure:
    """The failure once a full or read-only filesystem of the run's is known: a ``disk`` failure
    naming the filesystem, with the fix for that case (the quota's advice fits neither)."""
    if failure.kind not in _SPACE_EXPLAINS:
        return failure  # an OOM or a data error stands on its own
    return Failure(FailureKind.DISK, f"{problem.message}; {failure.message}", problem.hint)


def record(store: Store, run: Run, stage: str, outcome: Outcome) -> Run | None:
    """Write a final outcome into the store (a run cancelled meanwhile keeps its state).

    Returns the run as recorded, or None when the store refused the transition.
    """
    assert outcome.state is not None, "a next-stage outcome is not final"
    fields_: dict[str, Any] = {"exit_code": outcome.exit_code, "stage": stage, "reason": outcome.reason, "launch": {}}
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


def with_backend_reason(outcome: Outcome, result: Exited | Gone | None, stage: str) -> Outcome:
    """The outcome once the backend's reason is heard: Slurm's TIMEOUT, OUT_OF_MEMORY or cancel
    explains an exit the events only call interrupted or killed; a job Slurm lost (NODE_FAIL,
    PREEMPTED) says so instead of "vanished while no worker watched it". A cancel asked for by the
    user stays a cancel."""
    if outcome.state is RunState.CANCELLED:
        return outcome
    if isinstance(result, Gone):
        if outcome.state is RunState.INTERRUPTED:
            return replace(outcome, reason=f"{stage} ended without a verdict: {result.detail}; retry it")
        return outcome
    if result is None or result.kind is None:
        return outcome
    failure = verdict(result, outcome.failure)
    if failure is None or failure == outcome.failure:
        return outcome
    return Outcome(RunState.FAILED, outcome.exit_code, failure=failure)


# --- how a stage process ended: success, or a failure kind ----------------------------------



def _signal_of(exit_code: int | None) -> int | None:
    # subprocess reports death by signal N as -N; a shell-style wrapper reports 128 + N.
    if exit_code is None:
        return None
    if exit_code < 0:
        return -exit_code
    if 128 < exit_code < 128 + 65:
        return exit_code - 128
    return None


def last_stage_events(events: list[EventRecord]) -> list[EventRecord]:
    """Return the events of the last stage in ``events`` (a run's file holds every stage's)."""
    starts = [i for i, e in enumerate(events) if isinstance(e, Started)]
    return events[starts[-1]:] if starts else events


def classify(
    exit_code: int | None, events: list[EventRecord], log_tail: str, others_held: str | None = None,
    oom_evidence: str | None = None,
) -> Failure | None:
    """Classify how a stage process ended.

    Args:
        exit_code: as ``subprocess`` reports it (negative = killed by that signal); None if unknown
            (the process vanished while the worker was down).
        events: the run's events (only the last stage's are considered).
        log_tail: the last lines of ``run.log``.
        others_held: who else held GPU memory when the run started or failed (from the GPU guard),
            e.g. "pid 4711 (run 12, ...) holds 14.2 GiB on GPU 0"; added to an OOM verdict.
        oom_evidence: why the host's OOM killer is known to have struck (:func:`dialsum_tui.manager.worker.oom.evidence`);
            a SIGKILL is ``host_oom`` only with it, ``killed`` without.

    Returns:
        None for success (exit 0 and a ``finished`` event); otherwise a Failure with an
        :class:`engine.contract.FailureKind` and (unless the engine wrote its own) that kind's hint.
    """
    stage = last_stage_events(events)
    finished = any(isinstance(e, Finished) for e in stage)
    failed = [e for e in stage if isinstance(e, Failed)]
    if exit_code == 0 and finished and not failed:
        return None
    failure = _verdict(exit_code, failed[-1] if failed else None, log_tail, finished, oom_evidence)
    if failure.kind is FailureKind.OOM:
        failure = _with_holder(failure, others_held)
    return failure


def _verdict(exit_code: int | None, failed: Failed | None, log_tail: str, finished: bool,
             oom_evidence: str | None = None) -> Failure:
    if failed is not None:
        kind = FailureKind.parse(failed.kind)
        message = str(failed.message or "")
        return Failure(kind, message or f"{kind} (no message)", str(failed.hint or kind.hint))
    sig = _signal_of(exit_code)
    if sig in (signal.SIGINT, signal.SIGTERM):
        return Failure.of(FailureKind.INTERRUPTED, f"interrupted by user ({signal.Signals(sig).name})")
    known = match_text(log_tail)
    if known is not None:
        return known
    if sig == signal.SIGKILL:
        if oom_evidence:
            return Failure.of(FailureKind.HOST_OOM, f"killed by SIGKILL (exit {exit_code}): {oom_evidence}")
        return Failure.of(FailureKind.KILLED, f"killed by SIGKILL (exit {exit_code}) with nothing in the log and no "
                                              "sign of the OOM killer (cgroup memory.events, kernel log)")
    lines = error_lines(log_tail) or "(empty log)"
    if exit_code == 0 and not finished:
        return Failure.of(FailureKind.UNKNOWN, f"exited 0 without a 'finished' event; last lines: {lines}")
    if exit_code is None:
        return Failure.of(FailureKind.UNKNOWN, f"process vanished, exit status unknown; last lines: {lines}")
    what = f"killed by {signal.Signals(sig).name}" if sig and sig in signal.Signals._value2member_map_ else f"exit {exit_code}"
    return Failure.of(FailureKind.UNKNOWN, f"{what}; last lines: {lines}")


def _with_holder(failure: Failure, others_held: str | None) -> Failure:
    if not others_held:
        return failure
    return Failure(failure.kind, f"{failure.message} — meanwhile {others_held}", OTHERS_HELD_HINT)
