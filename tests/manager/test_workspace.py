"""Workspace layout, permissions, discovery and settings validation."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dialsum_tui.manager.workspace.layout import (
    Settings,
    WorkspaceError,
    WorkspaceNotFound,
    find_workspace,
    init_workspace,
)


def test_init_creates_layout_and_private_state(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "new")
    for d in (ws.data_dir, ws.configs_dir, ws.checkpoints_dir, ws.submissions_dir, ws.runs_dir, ws.state_dir):
        assert d.is_dir()
    assert stat.S_IMODE(ws.state_dir.stat().st_mode) == 0o700
    assert ws.run_dir(7) == ws.runs_dir / "7"


def test_init_adopts_existing_directory_without_touching_files(tmp_path: Path) -> None:
    (tmp_path / "checkpoints" / "koBART" / "final_model").mkdir(parents=True)
    keep = tmp_path / "data" / "train.csv"
    keep.parent.mkdir()
    keep.write_text("fname,dialogue,summary\n", encoding="utf-8")
    ws = init_workspace(tmp_path)
    assert keep.read_text(encoding="utf-8").startswith("fname")
    assert (ws.checkpoints_dir / "koBART" / "final_model").is_dir()
    assert ws.state_dir.is_dir()


def test_init_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "afile"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(WorkspaceError, match="not a directory"):
        init_workspace(target)


def test_find_workspace_explicit_env_and_upwards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = init_workspace(tmp_path / "w")
    deep = ws.runs_dir / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.delenv("DIALSUM_WORKSPACE", raising=False)
    monkeypatch.chdir(deep)
    assert find_workspace().root == ws.root
    assert find_workspace(str(ws.root)).root == ws.root
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIALSUM_WORKSPACE", str(ws.root))
    assert find_workspace().root == ws.root
    with pytest.raises(WorkspaceNotFound, match="--workspace"):
        find_workspace(str(tmp_path))
    monkeypatch.delenv("DIALSUM_WORKSPACE")
    with pytest.raises(WorkspaceNotFound, match="dialsum-tui init"):
        find_workspace()


def test_settings_defaults_values_and_unknown_key(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path)
    assert ws.settings() == Settings()
    ws.settings_path.write_text("quota_gb: 20\ngpu_samples: 5\n", encoding="utf-8")
    assert ws.settings().quota_gb == 20.0 and ws.settings().gpu_samples == 5
    ws.settings_path.write_text("quota_gbs: 20\n", encoding="utf-8")
    with pytest.raises(WorkspaceError, match=r"settings.yaml: unknown key 'quota_gbs'"):
        ws.settings()
    ws.settings_path.write_text("gpu_samples: many\n", encoding="utf-8")
    with pytest.raises(WorkspaceError, match="gpu_samples"):
        ws.settings()
