"""One quota, one byte count: the engine's in-run guard and the manager's running-disk watch, driven
by the same settings.yaml, stop at the same number of bytes of the same tree.

The manager hands the limit over as ``train --disk-root --disk-stop-bytes`` (disk.engine_disk_args);
the flags are parsed by the engine's real parser and fed to its real DiskGuardCallback, stepped
directly (no training), against a workspace grown on disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from dialsum_tui.manager.guards.checks import check_running_disk
from dialsum_tui.manager.guards.disk import engine_disk_args, measure
from dialsum_tui.manager.workspace.layout import Workspace, init_workspace
from engine.__main__ import build_parser
from engine.du import tree_size
from engine.units import GB, disk_stop_bytes

pytest.importorskip("transformers")  # engine.callbacks subclasses the Trainer's callback


def _settings(ws: Workspace, quota_bytes: int, margin_bytes: int) -> None:
    ws.settings_path.write_text(
        f"quota_gb: {quota_bytes / GB!r}\nmargin_gb: {margin_bytes / GB!r}\nhf_cache_dirs: []\n", encoding="utf-8"
    )


def _engine_guard(ws: Workspace, watch: Path):
    """The engine's guard, built the way ``python -m engine train`` builds it from the manager's flags."""
    from engine.train import disk_guard

    argv = ["train", "--config", "c.yaml", "--run-dir", str(ws.run_dir(1)), *engine_disk_args(ws)]
    args = build_parser().parse_args(argv)
    guard = disk_guard(args, watch)
    assert guard is not None, "the manager's flags must switch the engine's guard on"
    return args, guard


def _engine_stops(guard, trainer_args) -> bool:
    """Step the guard once as the Trainer would at a logging boundary; True if it stopped training."""
    control = SimpleNamespace(should_training_stop=False, should_save=False)
    guard.on_step_end(trainer_args, SimpleNamespace(global_step=guard.every), control)
    return control.should_training_stop


def _grow(path: Path, n_bytes: int) -> None:
    with open(path, "ab") as fh:
        fh.write(os.urandom(n_bytes))
        fh.flush()
        os.fsync(fh.fileno())


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    ws = init_workspace(tmp_path / "ws")
    (ws.checkpoints_dir / "tiny" / "trainer").mkdir(parents=True)
    _grow(ws.data_dir / "train.csv", 200_000)
    return ws


def test_the_flags_carry_the_settings_limit(ws: Workspace) -> None:
    _settings(ws, 150 * GB, 5 * GB)
    args, guard = _engine_guard(ws, ws.checkpoints_dir / "tiny" / "trainer")
    assert args.disk_stop_bytes == disk_stop_bytes(150, 5) == 145_000_000_000 == measure(ws).stop_bytes
    assert Path(args.disk_root) == ws.root.resolve() and guard.quota_path == ws.root.resolve()
    # Without the flags (a standalone `python -m engine train`) the guard is off.
    from engine.train import disk_guard

    plain = build_parser().parse_args(["train", "--config", "c.yaml", "--run-dir", "r"])
    assert disk_guard(plain, ws.root) is None


def test_engine_guard_and_manager_watch_stop_at_the_same_byte_count(ws: Workspace) -> None:
    watch = ws.checkpoints_dir / "tiny" / "trainer"
    trainer_args = SimpleNamespace(world_size=1)
    margin = 100_000
    _settings(ws, 150 * GB, 5 * GB)  # settings.yaml lies inside the quota'd tree: its block counts too
    used = tree_size(ws.root)
    assert measure(ws).used_bytes == used  # both sides measure the same tree with the same walker

    # Exactly at the boundary: one byte of room left → both go on; zero bytes → both stop.
    for room, stops in ((1, False), (0, True)):
        _settings(ws, used + room + margin, margin)
        _args, guard = _engine_guard(ws, watch)
        guard.on_train_begin(trainer_args, SimpleNamespace(global_step=0), SimpleNamespace(
            should_training_stop=False, should_save=False))
        usage = measure(ws)
        assert guard.stop_bytes == usage.stop_bytes == used + room
        assert guard.usage() == usage.used_bytes == used
        assert _engine_stops(guard, trainer_args) is stops
        assert check_running_disk(usage).ok is not stops

    # A run grows the tree past a limit set 1 MB above today's size: both stop, at the same count.
    _settings(ws, used + 1_000_000 + margin, margin)
    _args, guard = _engine_guard(ws, watch)
    guard.on_train_begin(trainer_args, SimpleNamespace(global_step=0), SimpleNamespace(
        should_training_stop=False, should_save=False))
    checkpoint = watch / "checkpoint-20.bin"
    seen = []
    while True:
        _grow(checkpoint, 128 * 1024)
        usage = measure(ws)
        engine_stopped = _engine_stops(guard, trainer_args)
        manager_stopped = not check_running_disk(usage).ok
        seen.append((usage.used_bytes, engine_stopped, manager_stopped))
        assert guard.usage() == usage.used_bytes
        assert engine_stopped == manager_stopped, seen
        if engine_stopped:
            break
    assert seen[-1][0] >= usage.stop_bytes > seen[-2][0]
    assert "disk quota guard" in guard.tripped and f"{usage.stop_bytes} bytes" in guard.tripped
