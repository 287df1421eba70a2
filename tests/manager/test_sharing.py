"""Tests of workspace sharing: private by default, one Unix group on request, never world-accessible.

Modes are checked on real files; the shared group is the test user's own primary group."""

from __future__ import annotations

import grp
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace import sharing
from dialsum_tui.manager.workspace.layout import WorkspaceError, init_workspace
from dialsum_tui.manager.workspace.sharing import set_share_group

from support import with_good_data, write_config


@pytest.fixture(autouse=True)
def _restore_umask():
    """enter() sets the process umask, as the app should; the test process gets its own back."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)
    sharing._shared_gid = None


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _tree(root: Path) -> list[Path]:
    return [root, *root.rglob("*")]


def test_a_new_workspace_is_private(tmp_path: Path) -> None:
    ws = with_good_data(init_workspace(tmp_path / "ws"))
    manager = Manager.open(ws)
    run = manager.add(str(write_config(ws, "한국어-요약")))
    assert _mode(ws.state_dir) == 0o700 and _mode(ws.db_path) == 0o600
    assert _mode(ws.run_dir(run.id)) == 0o700 and _mode(ws.run_dir(run.id) / "config.yaml") == 0o600
    assert os.umask(0o077) == sharing.PRIVATE_UMASK  # what the worker and its stages inherit
    manager.store.close()


def test_share_group_makes_state_group_writable_and_nothing_world_accessible(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    ws = with_good_data(init_workspace(tmp_path / "ws"))
    (ws.configs_dir / "old.yaml").write_text("x: 1\n")
    os.chmod(ws.configs_dir / "old.yaml", 0o644)  # made before sharing, world-readable: fixed below
    said = sharing.set_share_group(ws, group)
    assert f"shared with group {group}" in said
    assert f"share_group: {group}" in ws.settings_path.read_text()
    manager = Manager.open(ws)
    run = manager.add(str(write_config(ws, "공유-요약")))
    run_dir = ws.run_dir(run.id)
    # A stage's file, made by a child process with the umask it inherits and Python's default 0666.
    subprocess.run([sys.executable, "-c", f"open({str(run_dir / 'predictions.csv')!r}, 'w').write('x')"], check=True)
    for d in (ws.root, ws.state_dir, ws.runs_dir, run_dir):
        assert _mode(d) == 0o2770, d  # setgid: new files inherit the group
    for f in (ws.db_path, run_dir / "config.yaml", run_dir / "predictions.csv", ws.settings_path):
        assert _mode(f) == 0o660, f
    assert _mode(ws.configs_dir / "old.yaml") == 0o660
    for path in _tree(ws.root):
        assert path.stat().st_gid == os.getgid(), path
        assert _mode(path) & 0o007 == 0, f"{path} is world-accessible"
    manager.store.close()

    # --private undoes it for the state and the runs.
    sharing.set_share_group(ws, None)
    assert _mode(ws.state_dir) == 0o700 and _mode(ws.db_path) == 0o600 and _mode(run_dir) == 0o700
    assert "share_group" not in ws.settings_path.read_text()


def test_an_unknown_group_says_how_to_find_one(tmp_path: Path) -> None:
    ws = with_good_data(init_workspace(tmp_path / "ws"))
    with pytest.raises(WorkspaceError, match="no Unix group here; `getent group` lists them"):
        sharing.set_share_group(ws, "no-such-group-dialsum")
    assert not ws.settings_path.exists() or "share_group" not in ws.settings_path.read_text()


def test_init_share_group_from_the_cli(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    done = subprocess.run([sys.executable, "-m", "dialsum_tui", "init", str(tmp_path / "ws"), "--share-group", group],
                          capture_output=True, text=True, env=env, check=True)
    assert f"shared with group {group}" in done.stdout
    assert _mode(tmp_path / "ws" / ".dialsum" / "state.db") == 0o660


def test_a_broken_settings_file_does_not_stop_commands_and_keeps_a_shared_dir_shared(tmp_path: Path) -> None:
    ws = with_good_data(init_workspace(tmp_path / "ws"))
    group = grp.getgrgid(os.getgid()).gr_name
    set_share_group(ws, group)
    ws.settings_path.write_text(ws.settings_path.read_text(encoding="utf-8") + "quota_gbb: 10\n", encoding="utf-8")
    # The typo is reported by the commands that read settings; opening the workspace still works,
    # and the state directory's setgid mode keeps new files group-writable meanwhile.
    assert sharing.enter(ws) == os.getgid()
    assert sharing.file_mode() == 0o660
