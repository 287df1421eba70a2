"""Provides the local backend: a stage is a process on this host, started in its own session by
:mod:`dialsum_tui.manager.process`, known by pid + start time, stopped by group signals.

It is the :class:`~dialsum_tui.manager.backends.protocol.Backend` protocol over what the worker did before
there were backends, unchanged: the exit status comes from the Popen while this worker is the
parent; a stage re-adopted after a restart is only alive or gone (its code unknown, so the worker
judges it from its events, log tail and artifacts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialsum_tui.manager import process
from dialsum_tui.manager.backends.protocol import Exited, Poll, Running

NAME = "local"


@dataclass(frozen=True)
class LocalStage:
    """A stage process: its identity, and its Popen when this worker started it (None when adopted)."""

    ident: process.Identity
    popen: Any | None = None  # subprocess.Popen; typed loosely so no module but process names subprocess

    @property
    def ref(self) -> str:
        return f"{self.ident.pid}:{self.ident.start_time!r}"


class LocalBackend:
    """Stages as local processes (the default backend)."""

    name = NAME

    def launch(self, run_id: int, stage: str, argv: Sequence[str], env: Mapping[str, str], *, cwd: Path,
               log_path: Path, gpus: int) -> LocalStage:
        """Start the stage; ``gpus`` is informational here (``CUDA_VISIBLE_DEVICES`` is in ``env``).

        Raises:
            OSError: the command cannot be started (the caller names the engine setting to check).
        """
        popen, ident = process.launch(argv, cwd=cwd, log_path=log_path, env=env)
        return LocalStage(ident, popen)

    def handle(self, ref: str) -> LocalStage:
        pid, _, started = ref.partition(":")
        if not pid.isdigit():
            raise ValueError(f"not a local stage reference (pid:start_time): {ref!r}")
        return LocalStage(process.Identity(int(pid), float(started or 0.0)))

    def poll(self, handle: LocalStage) -> Poll:
        if handle.popen is not None:
            rc = handle.popen.poll()
            return Running() if rc is None else Exited(rc)
        return self.adopt(handle)

    def stop(self, handle: LocalStage, grace_s: tuple[float, float]) -> process.GroupStop:
        """SIGINT to the group now (on the first ``advance``), SIGTERM and SIGKILL after the grace."""
        return process.GroupStop(handle.ident, grace_s)

    def adopt(self, handle: LocalStage) -> Poll:
        # Not our child: alive or not is all we can know; the code stays unknown.
        return Running() if process.is_alive(handle.ident.pid, handle.ident.start_time) else Exited(None)

    def allocation(self, handle: LocalStage) -> str | None:
        return None  # the NVML GPU panel shows local devices
