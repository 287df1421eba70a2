"""Provides helpers shared by the TUI tests: config files, a scripted GPU, waiting on the live app."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot

from dialsum_tui.manager.gpu import GpuDevice, GpuProcess, ScriptedGpuSource

from support import write_config  # noqa: F401 - re-exported for the TUI tests

GIB = 1024**3


def scripted_gpu(pid: int = 4711) -> ScriptedGpuSource:
    """One H100 with one process (``pid``) and one foreign process: a fixed frame, so screens are stable."""
    device = GpuDevice(0, "NVIDIA H100 80GB HBM3", 15 * GIB, 80 * GIB, 87, 61,
                       (GpuProcess(pid, 0, 14 * GIB), GpuProcess(999_999, 0, 1 * GIB, user="kim")))
    return ScriptedGpuSource([[device]], label="test")


async def wait_for(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Let the app run until ``predicate()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await pilot.pause(0.05)
