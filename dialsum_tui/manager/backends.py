"""Provides what the worker needs to run stages on either backend: picking the backend a run uses,
the GPU count of a stage on Slurm, the note a pending or unanswering backend leaves on the run,
and how the backend's reason for an exit joins the worker's own verdict.

The protocol itself is :mod:`dialsum_tui.manager.backend`; the two backends are
:mod:`~dialsum_tui.manager.local_backend` and :mod:`~dialsum_tui.manager.slurm`.
"""

from __future__ import annotations

from dataclasses import replace

from dialsum_tui.manager.backend import Backend, Exited, Gone, Pending, Poll, Running, verdict
from dialsum_tui.manager.launching import parse_gpus
from dialsum_tui.manager.local_backend import LocalBackend
from dialsum_tui.manager.models import RunState
from dialsum_tui.manager.settings import Settings
from dialsum_tui.manager.slurm import SlurmBackend
from dialsum_tui.manager.verdict import Outcome
from engine.contract import Stage

SLURM = SlurmBackend.name
NOTE_PREFIX = "Slurm: "  # a run's reason that the backend wrote (and clears once the job runs)


def open_backends(settings: Settings) -> dict[str, Backend]:
    """Both backends, by name: new stages go to ``settings.backend``; a run keeps the one it started on."""
    return {LocalBackend.name: LocalBackend(), SLURM: SlurmBackend(settings.slurm)}


def gpu_count(gpus: str | None, stage: str, default: int) -> int:
    """The GPUs a stage asks Slurm for (``--gres=gpu:N``; 0 = a CPU stage).

    On Slurm the run's ``gpus`` is a count, not device indices (Slurm picks the devices and sets
    ``CUDA_VISIBLE_DEVICES``): ``"2"`` is two GPUs; a list such as ``"0,1"`` counts its entries;
    none is ``slurm.gpus_per_stage``. Only train uses several; infer and evaluate take at most one,
    as on the local backend.
    """
    items = parse_gpus(gpus)
    count = default if not items else items[0] if len(items) == 1 else len(items)
    return count if stage == Stage.TRAIN else min(count, 1)


def poll_note(result: Poll) -> str | None:
    """The run's reason while its stage is pending or running on Slurm (None: nothing to say)."""
    if isinstance(result, Pending):
        return f"{NOTE_PREFIX}{result.reason}"  # why the job waits in Slurm's queue: Priority, Resources…
    if isinstance(result, Running) and result.detail:
        return result.detail
    return None


def unanswered_note(err: Exception) -> str:
    return f"{err}; the run is left as it is until Slurm answers again"


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
