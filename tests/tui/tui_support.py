"""Provides helpers shared by the TUI tests: config files, a scripted GPU, waiting on the live app."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import yaml
from textual.pilot import Pilot

from dialsum_tui.manager.gpu import GpuDevice, GpuProcess, ScriptedGpuSource
from dialsum_tui.manager.workspace import Workspace

GIB = 1024**3


def write_config(ws: Workspace, nickname: str, **sections: dict) -> Path:
    """Write a valid run config for ``nickname`` under the workspace's configs/ and return its path."""
    tree = {"model": {"name_or_path": "models/tiny", "nickname": nickname, "kind": "seq2seq"}, "train": {"device": "cpu"}}
    tree.update(sections)
    path = ws.configs_dir / f"{nickname}.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


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
