"""Provides the protocol between the worker and whatever starts and watches a stage: the local
process launcher or a Slurm cluster.

The worker keeps the queue, admission, events, classification and the run state machine; a
backend only starts a stage command, says how it is doing, stops it and finds it again after a
worker restart. The stage command line is the same on every backend.

The protocol (docs/ARCHITECTURE.md, "On a Slurm cluster"):

``launch(run_id, stage, argv, env, *, cwd, log_path, gpus) -> handle``
    Start ``argv`` (never through a shell) with exactly ``env``, stdout+stderr appended to
    ``log_path``. ``gpus`` is a count; on Slurm the allocation's ``CUDA_VISIBLE_DEVICES`` comes
    from ``--gres``. Raises :class:`LaunchError` with a message naming what to fix.
``handle.ref`` / ``backend.handle(ref)``
    The handle as the one string the store keeps for the stage (``"<pid>:<start time>"`` locally,
    the job id on Slurm), and back.
``poll(handle) -> Pending | Running | Exited | Gone``
    Cheap enough for every worker tick. ``Exited.kind`` is set only when the backend itself knows
    why the stage ended (a Slurm time limit, Slurm's OOM killer, a cancel); otherwise the worker
    classifies ``Exited.code`` with the events and the log tail, as today. Raises
    :class:`BackendUnavailable` when the backend cannot answer right now: the stage is then left as
    it is, never judged gone.
``stop(handle, grace_s) -> Stopper``
    A non-blocking stop: the worker calls ``advance()`` each tick until it returns True. SIGINT
    first (the engine saves and writes its verdict), harder after the grace: ``grace_s`` is
    (seconds after SIGINT, seconds after SIGTERM); Slurm uses the first, then ``scancel`` (whose
    SIGTERM → SIGKILL is the cluster's KillWait).
``adopt(handle) -> Pending | Running | Exited | Gone``
    After a worker restart: the same answer as :meth:`poll`, from a backend object that did not
    launch the stage.

``allocation(handle) -> str | None``
    Which node and resources the job was given (the GPU panel's line where NVML cannot look);
    None locally, where the panel shows this host's devices.

The Slurm backend adds ``launch(…, dependency=handle)``, which queues a stage behind the previous
one (``--dependency=afterok``); the worker does not use it (docs/ARCHITECTURE.md says why).

:func:`run_state` maps a poll result onto the run's state, and :func:`verdict` merges the backend's
reason with the worker's classification (events and log tail first, as for a local stage).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dialsum_tui.manager.errors import DialsumError, OperationFailed
from dialsum_tui.manager.runs.models import Run, RunState
from engine.contract import FailureKind
from engine.failures import Failure


class LaunchError(DialsumError):
    """The stage could not be started; the message says what to fix."""


class BackendUnavailable(OperationFailed):
    """The backend cannot answer now (controller down, command timed out); try again later."""


@dataclass(frozen=True)
class Pending:
    """Submitted, not started: ``reason`` is the scheduler's (Priority, Resources, Dependency…)."""

    reason: str


@dataclass(frozen=True)
class Running:
    """Started and not finished; ``detail`` is extra context (the node, a requeue), if any."""

    detail: str | None = None


@dataclass(frozen=True)
class Exited:
    """Finished with ``code`` (negative: killed by that signal; None: unknown).

    ``kind``/``message`` are set when the backend knows why it ended; the hint is ``kind.hint``.
    """

    code: int | None
    kind: FailureKind | None = None
    message: str | None = None


@dataclass(frozen=True)
class Gone:
    """The stage ended with no verdict the backend can give: no record of it any more, or Slurm lost
    it (its node failed, it was preempted). Like a local process lost across a reboot: INTERRUPTED."""

    detail: str = ""


Poll = Pending | Running | Exited | Gone


class Handle(Protocol):
    @property
    def ref(self) -> str: ...


class Stopper(Protocol):
    def advance(self, now: float | None = None) -> bool:
        """Send the next signal when due. Returns True once the stage is gone."""
        ...


# Put in every stage's environment (and so its children's) by the worker: how a backend finds a
# stage that was launched but whose handle never reached the store (Backend.find_unrecorded).
LAUNCH_TOKEN_ENV = "DIALSUM_LAUNCH_TOKEN"


class Backend(Protocol):
    """Who starts and watches a stage. The worker and the facade ask a backend what it can do
    (:attr:`places_devices`, :meth:`gpu_request`, …); none of them asks which backend it is."""

    name: str  # what the store records in ``runs.backend``; a key, never compared outside backends/
    # True: this host's GPUs are placed by the worker (CUDA_VISIBLE_DEVICES from the run's indices),
    # so the NVML guard admits and the GPU panel shows them. False: a scheduler places them.
    places_devices: bool

    def gpu_request(self, gpus: str | None, stage: str) -> int | None:
        """The GPU count to ask for a stage, or None when ``gpus`` are this host's device indices."""
        ...

    def handle_of(self, run: Run) -> Handle | None:
        """The handle of the stage ``run``'s record names (None: between stages, nothing to follow)."""
        ...

    def may_still_run(self, handle: Handle) -> bool:
        """At a worker's restart: False when the stage is known to be over (judge it from its evidence)."""
        ...

    def find_unrecorded(self, run: Run) -> Handle | None:
        """A stage launched for ``run`` (``run.launch``) whose handle never reached the store, if it runs."""
        ...

    def stop_now(self, handle: Handle, grace_s: tuple[float, float]) -> str:
        """Stop the stage with no worker to follow the stop (a cancel while none runs), waiting for
        it; returns what was done, e.g. "its process 4711 was stopped here (SIGINT)".

        Raises:
            BackendUnavailable: the backend did not answer; the stage may still run.
        """
        ...

    def gone(self) -> Handle | None:
        """A handle for a stage that ran and ended unrecorded, to judge it from its evidence (None: cannot be)."""
        ...

    def launch(
        self,
        run_id: int,
        stage: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        cwd: Path,
        log_path: Path,
        gpus: int,
    ) -> Handle: ...

    def handle(self, ref: str) -> Handle: ...

    def poll(self, handle: Handle) -> Poll: ...

    def stop(self, handle: Handle, grace_s: tuple[float, float]) -> Stopper: ...

    def adopt(self, handle: Handle) -> Poll: ...

    def allocation(self, handle: Handle) -> str | None: ...


def run_state(poll: Poll, cancel_requested: bool = False) -> RunState:
    """The run state a poll result stands for, before the worker reads the stage's events.

    Pending is WAITING (the job holds its place in the cluster's queue; the reason is Slurm's).
    Exited 0 is SUCCEEDED only if the events agree, which the worker checks. A stage that ended
    while a cancel was requested is CANCELLED whatever its code; one the backend lost is INTERRUPTED
    (as a local process that vanished across a reboot).
    """
    if isinstance(poll, Pending):
        return RunState.WAITING
    if isinstance(poll, Running):
        return RunState.RUNNING
    if isinstance(poll, Gone):
        return RunState.CANCELLED if cancel_requested else RunState.INTERRUPTED
    if cancel_requested:
        return RunState.CANCELLED
    if poll.code == 0 and poll.kind is None:
        return RunState.SUCCEEDED
    return RunState.FAILED


# What a stage that was stopped from outside says about itself: the backend knows better why.
_SAYS_LITTLE = frozenset({FailureKind.INTERRUPTED, FailureKind.KILLED, FailureKind.UNKNOWN})


def verdict(exited: Exited, classified: Failure | None) -> Failure | None:
    """The failure to record for a stage that ended, or None for success.

    ``classified`` is the worker's own verdict (``classify(code, events, log_tail)``). The engine's
    explanation wins when it has one (an ``oom`` or ``data`` failure it caught); when it only says it
    was interrupted or killed, or nothing, the backend's reason wins: a SIGINT from Slurm's
    time-limit warning is a ``timeout``, a SIGKILL from Slurm's memory limit is ``host_oom``.
    """
    if exited.kind is None:
        return classified
    if classified is not None and classified.kind not in _SAYS_LITTLE:
        return classified
    return Failure(exited.kind.value, exited.message or exited.kind.value, exited.kind.hint)
