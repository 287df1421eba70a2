"""Provides the messages the app's background poller posts to the UI thread.

The poller reads the store, NVML and the cached disk figures off the UI thread and posts one of
these only when something changed, so an idle screen costs nothing to redraw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from dialsum_tui.manager.models import Run
from dialsum_tui.widgets.log_tail import LogChunk


@dataclass
class StateRefreshed(Message):
    """A fresh snapshot of the queue, the GPUs and the disk."""

    runs: list[Run]
    paused: bool
    worker_pid: int | None  # None: no worker is running
    gpus: list[Any]  # manager.gpu.GpuDevice
    gpu_note: str  # GpuSource.describe(): says when there is no GPU at all
    disk: Any | None  # manager.disk.DiskUsage, None until the worker measured once
    projected_bytes: int = 0  # what the queued runs will add to the disk
    owners: dict[int, tuple[int, str]] | None = None  # GPU pid → (run id, nickname) of ours

    def can_replace(self, message: Message) -> bool:
        # Only the newest snapshot matters; a slow frame must not queue up stale ones.
        return isinstance(message, StateRefreshed)


@dataclass
class RunOutputRead(Message):
    """New log lines and events of the selected run."""

    run_id: int
    log: LogChunk | None
    events: list[dict[str, Any]] = field(default_factory=list)
    reset: bool = False  # a different run was selected: the panels start empty


@dataclass
class IntentFailed(Message):
    """An action posted to the manager was refused; ``message`` says why and what to do."""

    action: str
    message: str


@dataclass
class IntentDone(Message):
    """An action posted to the manager succeeded; ``message`` is shown as a notice."""

    action: str
    message: str
