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
from dialsum_tui.manager.workspace.settings import Settings

SLURM = SlurmBackend.name
NOTE_PREFIX = "Slurm: "  # a run's reason that the backend wrote (and clears once the job runs)


def open_backends(settings: Settings) -> dict[str, Backend]:
    """Both backends, by name: new stages go to ``settings.backend``; a run keeps the one it started on."""
    return {LocalBackend.name: LocalBackend(), SLURM: SlurmBackend(settings.slurm)}


BACKENDS: dict[str, type[LocalBackend] | type[SlurmBackend]] = {LocalBackend.name: LocalBackend,
                                                                  SlurmBackend.name: SlurmBackend}


def places_devices(name: str) -> bool:
    """Whether the backend called ``name`` (a run's ``backend``, the settings' ``backend``) lets this
    host's worker place the GPUs (NVML guard, device indices, the GPU panel's devices)."""
    backend = BACKENDS.get(name)
    return backend is None or backend.places_devices


def backend_check(settings: Settings) -> tuple[bool, str]:
    """Whether the workspace's backend can run stages now, and what it says (``check``)."""
    if places_devices(settings.backend):
        return True, "stages run as processes on this host"
    from dialsum_tui.manager.backends import slurm

    return slurm.available(settings.slurm)


def poll_note(result: Poll) -> str | None:
    """The run's reason while its stage is pending or running on Slurm (None: nothing to say)."""
    if isinstance(result, Pending):
        return f"{NOTE_PREFIX}{result.reason}"  # why the job waits in Slurm's queue: Priority, Resources…
    if isinstance(result, Running) and result.detail:
        return result.detail
    return None


def unanswered_note(err: Exception) -> str:
    return f"{err}; the run is left as it is until Slurm answers again"
