"""A workspace copied (``cp -a``) or moved works on its own files only: what a run records inside the
workspace is relative to it or resolved against today's root, and the stages are handed paths built
from that root. Runs done by the stand-in engine, which records artifact paths as absolute as the
real engine does; the copy and the moved workspace are driven through the CLI and its detached worker.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from dialsum_tui.manager.guards.gpu import NoGpuSource
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.runs.retry import read_record
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.store.database import MIGRATIONS, SCHEMA_VERSION, Store
from dialsum_tui.manager.worker.loop import Worker
from dialsum_tui.manager.workspace.layout import Workspace
from engine.artifacts import is_complete_model, read_events
from engine.contract import RunFiles

from support import cancel_with_worker_up, drive, final, run_cli, stop_workers_of, wait_until, write_config


@pytest.fixture(autouse=True)
def _checkpointing_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_STEPS", "20")
    monkeypatch.setenv("FAKE_SAVE_STEPS", "5")  # marked checkpoints, so a cancelled train can be resumed
    monkeypatch.setenv("FAKE_NEED_MODEL", "1")  # an infer with no complete model to load fails


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time: what 'untouched' compares."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def _runs(ws: Workspace) -> dict[int, dict]:
    return {run["id"]: run for run in json.loads(run_cli(ws, "ls", "--json").stdout)}


def _done(ws: Workspace, *ids: int) -> bool:
    runs = _runs(ws)
    assert all(runs[i]["state"] in ("queued", "waiting", "running", "succeeded") for i in ids), runs
    return all(runs[i]["state"] == "succeeded" for i in ids)


def _history(ws: Workspace) -> Manager:
    """Run 1: koBART's pipeline, succeeded; run 2: llama's training, cancelled at a checkpoint."""
    manager = Manager.open(ws)
    worker = Worker(ws, poll_s=0.05, gpu_source=NoGpuSource())
    first = manager.add(str(write_config(ws, "koBART")))
    assert drive(worker, manager, first.id, final, timeout=60).state is RunState.SUCCEEDED
    second = manager.add(str(write_config(ws, "llama")), action="train")
    drive(worker, manager, second.id, lambda run: (run.progress.get("step") or 0) >= 7, timeout=60)
    assert cancel_with_worker_up(worker, manager, second.id, timeout=60).state is RunState.CANCELLED
    return manager


def test_a_copied_workspace_submits_retries_and_resumes_on_its_own_files(workspace: Workspace,
                                                                         tmp_path: Path) -> None:
    original = workspace
    _history(original).store.close()
    events = read_events(RunFiles(original.run_dir(1)).events)
    assert any(str(e.get("path", "")).startswith(str(original.root)) for e in events)  # absolute, like the engine's

    copy = Workspace(tmp_path / "copy" / "ws")
    copy.root.parent.mkdir()
    subprocess.run(["cp", "-a", str(original.root), str(copy.root)], check=True)
    # A workspace from before .dialsum/roots: where it was is found in its logs (run.log's --run-dir).
    copy.roots_path.unlink()
    before = _files(original.root)
    try:
        assert _runs(copy)[1]["config_path"] == "configs/koBART.yaml"  # recorded relative to the workspace

        said = run_cli(copy, "submit", "1").stdout
        submitted = list(copy.submissions_dir.glob("koBART_run1_*.csv"))
        assert len(submitted) == 1 and str(copy.root) in said and str(original.root) not in said, said

        run_cli(copy, "retry", "1", "--action", "infer")  # run 3, loads the copy's model
        run_cli(copy, "retry", "2", "--resume")  # run 4, resumes from the copy's checkpoint
        wait_until(lambda: _done(copy, 3, 4), 90, "the copy's retries")
        resume_from = read_record(copy.run_dir(4))["resume_from"]
        assert resume_from.startswith("checkpoints/llama/trainer/2/checkpoint-"), resume_from  # relative
        started = next(e for e in read_events(RunFiles(copy.run_dir(4)).events) if e["event"] == "started")
        assert started["resumed_from"] == str(copy.root / resume_from)  # handed a path under today's root
        assert (copy.submissions_dir / "koBART-r3_submission.csv").is_file()
        assert is_complete_model(copy.checkpoints_dir / "llama-r4" / "final_model")
        assert "koBART" in run_cli(copy, "results").stdout
    finally:
        stop_workers_of(copy.root)
    assert _files(original.root) == before, "the copy wrote into the original"


def test_a_workspace_moved_mid_queue_runs_its_queue_where_it_is_now(workspace: Workspace, tmp_path: Path) -> None:
    manager = _history(workspace)
    manager.pause()
    queued = [manager.add(str(write_config(workspace, "mt5"))), manager.retry(1, action="infer")]
    manager.store.close()
    old_root = workspace.root
    moved = Workspace(tmp_path / "elsewhere" / "ws")
    moved.root.parent.mkdir()
    os.rename(old_root, moved.root)
    try:
        run_cli(moved, "resume")
        run_cli(moved, "worker", "start")
        wait_until(lambda: _done(moved, *(run.id for run in queued)), 90, "the moved queue")
        assert is_complete_model(moved.checkpoints_dir / f"mt5-r{queued[0].id}" / "final_model")
        assert (moved.submissions_dir / f"koBART-r{queued[1].id}_submission.csv").is_file()
        said = run_cli(moved, "submit", "1").stdout  # run 1's events name the old place
        assert str(moved.submissions_dir) in said and "koBART" in run_cli(moved, "results").stdout
        run_cli(moved, "retry", "2", "--resume")
        wait_until(lambda: _done(moved, max(_runs(moved))), 90, "the resumed run")
    finally:
        stop_workers_of(moved.root)
    assert not old_root.exists(), f"something wrote to the old place: {sorted(_files(old_root)) if old_root.exists() else ''}"
    assert (moved.state_dir / "roots").read_text(encoding="utf-8").split() == [str(old_root), str(moved.root)]


def test_migration_6_makes_paths_inside_the_workspace_relative(workspace: Workspace) -> None:
    workspace.db_path.unlink(missing_ok=True)
    with sqlite3.connect(workspace.db_path) as conn:  # a store as migration 5 left it
        conn.create_function("legacy_key", 1, lambda name: name)
        for statement in (s for step in MIGRATIONS[:5] for s in step):
            conn.execute(statement)
        for run_id, path in ((1, str(workspace.configs_dir / "a.yaml")), (2, "/srv/team/configs/b.yaml")):
            conn.execute("INSERT INTO runs (id, nickname, config_path, config_yaml, action, state, position, "
                         "created_at) VALUES (?, 'a', ?, '{}', 'pipeline', 'succeeded', ?, 0)", (run_id, path, run_id))
        conn.execute("PRAGMA user_version = 5")
    conn.close()
    migrated = Store(workspace.db_path)
    assert migrated.schema_version() == SCHEMA_VERSION
    assert migrated.get(1).config_path == "configs/a.yaml"  # inside: relative
    assert migrated.get(2).config_path == "/srv/team/configs/b.yaml"  # outside: as it was
    migrated.close()
