"""Provides the run record and its persisted state machine, shared by the store, the worker,
the CLI and the TUI.

A run is one queued job: an action (pipeline = train → infer → evaluate, or a single stage) on one
config snapshot. Each stage runs as its own subprocess; ``stage`` says which one is current.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.contract import PIPELINE, Stage


class RunState(StrEnum):
    QUEUED = "queued"
    WAITING = "waiting"  # admission blocked by a guard; ``reason`` says why and names the holder
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # ``failure_kind`` says which class
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the process vanished with no verdict (e.g. machine reboot)

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def is_active(self) -> bool:
        return self in (RunState.WAITING, RunState.RUNNING)


FINAL_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.INTERRUPTED})

# Allowed transitions; the store refuses anything else so a bug cannot corrupt history.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.WAITING, RunState.RUNNING, RunState.CANCELLED}),
    RunState.WAITING: frozenset({RunState.WAITING, RunState.RUNNING, RunState.QUEUED, RunState.CANCELLED, RunState.FAILED}),
    RunState.RUNNING: frozenset(
        {RunState.RUNNING, RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.INTERRUPTED}
    ),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.CANCELLED: frozenset(),
    RunState.INTERRUPTED: frozenset(),
}


class Action(StrEnum):
    """What a run does: the whole pipeline, or one stage (the stage names are the contract's)."""

    PIPELINE = "pipeline"
    TRAIN = Stage.TRAIN.value
    INFER = Stage.INFER.value
    EVALUATE = Stage.EVALUATE.value

    @property
    def stages(self) -> tuple[Stage, ...]:
        return PIPELINE if self is Action.PIPELINE else (Stage(self.value),)


def can_transition(old: RunState, new: RunState) -> bool:
    return new in TRANSITIONS[old]


@dataclass
class Run:
    """One row of the ``runs`` table, as every layer sees it."""

    id: int
    nickname: str
    config_path: str  # the file it was added from (for display; the snapshot is what runs)
    config_yaml: str  # resolved config snapshot, also written to runs/<id>/config.yaml
    action: Action
    state: RunState
    stage: str | None = None  # current or last stage: a contract Stage (train | infer | evaluate)
    gpus: str | None = None  # "0" or "0,1"; None = any / CPU
    after: int | None = None  # start only after this run succeeded
    position: float = 0.0  # queue order (lower first)
    reason: str | None = None  # why it is waiting, or the last status note
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    pid: int | None = None
    pid_start_time: float | None = None  # guards against pid reuse: never signal a mismatch
    exit_code: int | None = None
    failure_kind: str | None = None
    failure_message: str | None = None
    failure_hint: str | None = None
    failed_stage: str | None = None
    progress: dict[str, Any] = field(default_factory=dict)  # step, total, epoch, eta_s, tokens_per_s
    metrics: dict[str, Any] = field(default_factory=dict)  # last eval: rouge1/2/L, final, tokenizer...
    cancel_requested: bool = False
    user: str | None = None  # the Unix user who queued it (None for runs queued before it was recorded)
    backend: str = "local"  # who runs its stages: "local" (pid + start time above) or "slurm" (job_id)
    job_id: str | None = None  # the current or last stage's Slurm job id
    allocation: str | None = None  # what Slurm gave that job ("node: cpu=8,gres/gpu=2"), for the GPU panel
    source_run: int | None = None  # an infer/evaluate-only run: the run whose model/predictions it reads
    model_key: str | None = None  # artifact key of the final_model it loads (None: its own, manager.identity)
    predictions_key: str | None = None  # artifact key of the dev predictions it scores (None: its own)
    # A stage being launched, written before the process exists (stage, token, events offset): a
    # worker stopped between spawn and recording the pid finds the process by its token, never
    # launches the stage twice, and reads its events from where they began (worker.launching).
    launch: dict[str, Any] = field(default_factory=dict)
    sweep: str | None = None  # the sweep this run is a variant of (its id), None for a lone run
    priority: int = 0  # higher starts first among waiting runs; never preempts a running one
    gpu_peaks: dict[str, Any] = field(default_factory=dict)  # stage -> measured peak GPU GiB (all ranks)
    gpu_predicted: dict[str, Any] = field(default_factory=dict)  # stage -> predicted GiB at add (engine.footprint)

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self.action.stages


def parse_gpus(gpus: str | None) -> list[int] | None:
    """``"0,1"`` → ``[0, 1]``; None/empty → None (any device, or CPU)."""
    if not gpus:
        return None
    return [int(x) for x in gpus.split(",") if x.strip()]


_BULLET = re.compile(r"^[-*•]\s+")


def headline(note: str | None) -> str:
    """The line of a run's note or failure message that says what went wrong, for a one-line view.

    Messages may open with a heading and give the cause on later lines (the worker's old format:
    ``"preflight before train:\\n  - dev.csv line 73: unescaped quote …"``); the cause is the first
    line that is not a heading (one ending in ``:``), without its list bullet. A Python traceback's
    cause is its last line (the exception). A message with nothing but headings gives its first line.
    """
    lines = [_BULLET.sub("", line.strip()) for line in (note or "").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    if lines[0].startswith("Traceback (most recent call last)"):
        return lines[-1]
    return next((line for line in lines if not line.endswith(":")), lines[0])
