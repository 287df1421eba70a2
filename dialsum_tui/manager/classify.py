"""Provides the verdict on a finished stage process: success, or a failure kind with a one-line
hint, from its exit status, its events and the tail of its log.

The engine says why it failed when it can (a ``failed`` event); a process killed from outside
says nothing, so the exit status and the log tail decide. Signatures come from
:mod:`engine.failures`, the table the engine uses too.
"""

from __future__ import annotations

import re
import signal
from typing import Any

from engine.contract import Event, FailureKind
from engine.failures import Failure, match_text

# Not a kind's hint but advice for an OOM while someone else held memory: shrinking the batch
# would not help, freeing the GPU would.
OTHERS_HELD_HINT = "another process held GPU memory at the time: free it (`dialsum-tui check`) and retry before shrinking the batch"
_ERROR_LINE = re.compile(r"error|exception|traceback|fatal|killed|abort", re.IGNORECASE)


def _signal_of(exit_code: int | None) -> int | None:
    # subprocess reports death by signal N as -N; a shell-style wrapper reports 128 + N.
    if exit_code is None:
        return None
    if exit_code < 0:
        return -exit_code
    if 128 < exit_code < 128 + 65:
        return exit_code - 128
    return None


def last_stage_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the events of the last stage in ``events`` (a run's file holds every stage's)."""
    starts = [i for i, e in enumerate(events) if e.get("event") == Event.STARTED]
    return events[starts[-1]:] if starts else events


def error_lines(log_tail: str, limit: int = 3) -> str:
    """Return the last lines that look like an error (or the last non-empty lines), joined by " | "."""
    lines = [ln.strip() for ln in log_tail.splitlines() if ln.strip()]
    picked = [ln for ln in lines if _ERROR_LINE.search(ln)][-limit:] or lines[-limit:]
    return " | ".join(ln[:300] for ln in picked)


def classify(
    exit_code: int | None, events: list[dict[str, Any]], log_tail: str, others_held: str | None = None,
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
        oom_evidence: why the host's OOM killer is known to have struck (:func:`dialsum_tui.manager.oom.evidence`);
            a SIGKILL is ``host_oom`` only with it, ``killed`` without.

    Returns:
        None for success (exit 0 and a ``finished`` event); otherwise a Failure with an
        :class:`engine.contract.FailureKind` and (unless the engine wrote its own) that kind's hint.
    """
    stage = last_stage_events(events)
    finished = any(e.get("event") == Event.FINISHED for e in stage)
    failed = [e for e in stage if e.get("event") == Event.FAILED]
    if exit_code == 0 and finished and not failed:
        return None
    failure = _verdict(exit_code, failed[-1] if failed else None, log_tail, finished, oom_evidence)
    if failure.kind is FailureKind.OOM:
        failure = _with_holder(failure, others_held)
    return failure


def _verdict(exit_code: int | None, failed: dict[str, Any] | None, log_tail: str, finished: bool,
             oom_evidence: str | None = None) -> Failure:
    if failed is not None:
        kind = FailureKind.parse(failed.get("kind"))
        message = str(failed.get("message") or "")
        return Failure(kind, message or f"{kind} (no message)", str(failed.get("hint") or kind.hint))
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
