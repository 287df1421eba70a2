"""Provides TUI-test fixtures: a real workspace and Manager wired to the stand-in engine."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace import Workspace, init_workspace

FAKE_ENGINE = Path(__file__).resolve().parents[1] / "fake_engine.py"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A new workspace named ``ws`` whose stages run the fake engine quickly."""
    ws = init_workspace(tmp_path / "ws")
    ws.settings_path.write_text("gpu_grace_s: 0\ngpu_samples: 1\ndisk_refresh_s: 1\n", encoding="utf-8")
    monkeypatch.setenv("DIALSUM_ENGINE", shlex.join([sys.executable, str(FAKE_ENGINE)]))
    monkeypatch.setenv("DIALSUM_WORKER_POLL_S", "0.1")
    monkeypatch.setenv("DIALSUM_STOP_GRACE", "1,1")
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    monkeypatch.delenv("DIALSUM_WORKSPACE", raising=False)
    monkeypatch.delenv("DIALSUM_FAKE_GPU", raising=False)
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    return ws


@pytest.fixture
def manager(workspace: Workspace) -> Iterator[Manager]:
    """A real Manager on the workspace; any worker a test started is stopped afterwards."""
    mgr = Manager.open(workspace)
    yield mgr
    mgr.stop_worker()
