"""Provides the local backend: a stage is a process on this host, started in its own session by
:mod:`dialsum_tui.manager.process`, known by pid + start time, stopped by group signals.

It is the :class:`~dialsum_tui.manager.backends.protocol.Backend` protocol over what the worker did before
there were backends, unchanged: the exit status comes from the Popen while this worker is the
parent; a stage re-adopted after a restart is only alive or gone (its code unknown, so the worker
judges it from its events, log tail and artifacts).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialsum_tui.manager import process, procfs
from dialsum_tui.manager.backends.protocol import LAUNCH_TOKEN_ENV, Exited, Poll, Running
from dialsum_tui.manager.runs.models import Run

NAME = "local"


@dataclass(frozen=True)
class LocalStage:
    """A stage process: its identity, and its Popen when this worker started it (None when adopted)."""

    ident: process.Identity
    popen: Any | None = None  # subprocess.Popen; typed loosely so no module but process names subprocess

    @property
    def ref(self) -> str:
        return f"{self.ident.pid}:{self.ident.start_time!r}"


EXEC_WINDOW_S = 0.5  # a child between fork and exec still shows its parent's environment


class LocalBackend:
    """Stages as local processes (the default backend)."""

    name = NAME
    places_devices = True

    def gpu_request(self, gpus: str | None, stage: str) -> int | None:
        return None  # the run's own device indices, handed over in CUDA_VISIBLE_DEVICES

    def handle_of(self, run: Run) -> LocalStage | None:
        if run.pid is None:
            return None
        return LocalStage(process.Identity(run.pid, run.pid_start_time or 0.0))

    def may_still_run(self, handle: LocalStage) -> bool:
        return handle.ident.pid > 0 and process.is_alive(handle.ident.pid, handle.ident.start_time)

    def find_unrecorded(self, run: Run, looks: int = 3) -> LocalStage | None:
        """The session leader among the processes carrying ``run.launch``'s token, if one lives.

        A stage caught between fork and exec does not carry its token yet, so "not found" is only
        believed after ``looks`` looks spread over :data:`EXEC_WINDOW_S`.
        """
        token = run.launch.get("token")
        if not token:
            return None
        for look in range(looks):
            if look:
                time.sleep(EXEC_WINDOW_S / (looks - 1))
            pids = procfs.pids_with_environ(LAUNCH_TOKEN_ENV, str(token))
            for pid in [pid for pid in pids if process.session_of(pid) == pid] or pids:
                started = process.start_time(pid)
                if started is not None:
                    return LocalStage(process.Identity(pid, started))
        return None

    def stop_now(self, handle: LocalStage, grace_s: tuple[float, float]) -> str:
        ident = handle.ident
        if not process.group_running(ident):
            return f"its process {ident.pid} was already gone"
        ranks = process.group_leaders_below(ident.pid)  # torchrun's ranks lead their own groups
        sent = process.stop_group(ident, grace=grace_s)
        for rank in ranks:  # any rank the launcher did not take down with it
            process.stop_group(rank, grace=grace_s)
        names = " → ".join(signal.Signals(s).name for s in sent) or "no signal (it ended meanwhile)"
        return f"its process {ident.pid} was stopped here ({names})"

    def gone(self) -> LocalStage:
        """A handle for a stage that ran and ended while no worker knew its pid (judged from evidence)."""
        return LocalStage(process.Identity(0, 0.0))

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
