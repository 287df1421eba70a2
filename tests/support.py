"""Provides what the manager and TUI tests share: a workspace wired to the stand-in engine, run
configs written as real files, and clean-up of the detached workers a test started."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from dialsum_tui.manager.workspace import Workspace, init_workspace

FAKE_ENGINE = Path(__file__).resolve().parent / "fake_engine.py"


def fake_engine_workspace(root: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A new workspace whose stages run the fake engine quickly, with fast GPU/disk settings."""
    ws = init_workspace(root)
    ws.settings_path.write_text("gpu_grace_s: 0\ngpu_samples: 1\ndisk_refresh_s: 1\n", encoding="utf-8")
    monkeypatch.setenv("DIALSUM_ENGINE", shlex.join([sys.executable, str(FAKE_ENGINE)]))
    monkeypatch.setenv("DIALSUM_WORKER_POLL_S", "0.1")
    monkeypatch.setenv("DIALSUM_STOP_GRACE", "1,1")
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    for name in ("DIALSUM_WORKSPACE", "DIALSUM_FAKE_GPU", "FAKE_FAIL"):
        monkeypatch.delenv(name, raising=False)
    return ws


def write_config(ws: Workspace, nickname: str, **sections: dict) -> Path:
    """Write a valid run config for ``nickname`` into the workspace's configs/ and return its path."""
    tree = {"model": {"name_or_path": "models/tiny", "nickname": nickname, "kind": "seq2seq"}, "train": {"device": "cpu"}}
    tree.update(sections)
    path = ws.configs_dir / f"{nickname}.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def stop_workers_of(root: Path) -> None:
    """Stop every detached worker serving ``root``: racing CLIs in a test may have started several."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "dialsum_tui.manager.worker" in cmdline and str(root) in cmdline:
            try:
                proc.terminate()
                proc.wait(timeout=5)
            except psutil.Error:
                pass
