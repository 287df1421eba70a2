"""Provides what the worker needs to run stages on either backend: picking the backend a run uses,
the GPU count of a stage on Slurm, the note a pending or unanswering backend leaves on the run,
(how the backend's reason for an exit joins the verdict is
:func:`dialsum_tui.manager.worker.verdict.with_backend_reason`).

The protocol itself is :mod:`dialsum_tui.manager.backends.protocol`; the two backends are
:mod:`~dialsum_tui.manager.backends.local` and :mod:`~dialsum_tui.manager.backends.slurm`.
"""

from __future__ import annotations

from dialsum_tui.manager.backends.local import LocalBackend
from dialsum_tui.manager.backends.protocol import Backend, Pending, Poll, Running
from dialsum_tui.manager.backends.slurm import SlurmBackend
from dialsum_tui.manager.runs.models import parse_gpus
from dialsum_tui.manager.workspace.settings import Settings
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
