"""Provides helpers shared by the TUI tests: config files, a scripted GPU, waiting on the live app."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from textual.pilot import Pilot

from dialsum_tui.manager.guards.gpu import GpuDevice, GpuProcess, ScriptedGpuSource

from support import write_config  # noqa: F401 - re-exported for the TUI tests

GIB = 1024**3


def scripted_gpu(pid: int = 4711) -> ScriptedGpuSource:
    """One H100 with one process (``pid``) and one foreign process: a fixed frame, so screens are stable."""
    device = GpuDevice(0, "NVIDIA H100 80GB HBM3", 15 * GIB, 80 * GIB, 87, 61,
                       (GpuProcess(pid, 0, 14 * GIB), GpuProcess(999_999, 0, 1 * GIB, user="kim")))
    return ScriptedGpuSource([[device]], label="test")


async def wait_for(pilot: Pilot, cond: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """``support.wait_until`` for Pilot tests: the same contract, but it yields to the app between
    checks (``pilot.pause``) instead of sleeping, since the app runs on this thread's event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or getattr(cond, '__name__', 'condition')}")
        await pilot.pause(0.05)
