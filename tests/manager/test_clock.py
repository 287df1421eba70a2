"""Clock steps: no wall-clock difference is ever slept on or stored as a duration.

A server's clock can step (NTP after a suspend, a VM migrated), and files can come from a host whose
clock is ahead: a settings file dated in the future, a launch noted before a step back, a run that
ends after one. Each must behave as if nothing happened.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from dialsum_tui.manager.guards.checks import GpuGuard
from dialsum_tui.manager.guards.gpu import ScriptedGpuSource
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.store import database
from dialsum_tui.manager.store.database import Store
from dialsum_tui.manager.workspace.layout import init_workspace
from dialsum_tui.manager.workspace.settings import Settings, load_settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"
HOUR = 3600.0


def _date_in_future(path: Path, seconds: float) -> None:
    later = time.time() + seconds
    os.utime(path, (later, later))


def test_settings_dated_an_hour_ahead_are_read_at_once(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("quota_gb: 100\n", encoding="utf-8")
    _date_in_future(path, HOUR)
    started = time.monotonic()
    assert load_settings(path).quota_gb == 100
    # Before the fix this slept for the whole hour; the bound only guards against a hang.
    assert time.monotonic() - started < 5


def test_ls_is_not_held_by_a_settings_file_from_the_future(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    ws.settings_path.write_text("quota_gb: 150\n", encoding="utf-8")
    _date_in_future(ws.settings_path, HOUR)
    done = subprocess.run([sys.executable, "-m", "dialsum_tui", "--workspace", str(ws.root), "ls"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_launch_grace_ends_on_time_when_the_wall_clock_steps_back(monkeypatch) -> None:
    frames = ScriptedGpuSource.from_json(FIXTURES / "foreign_on_gpu0.json").frames
    idle = [replace(frames[0][1], index=0)]
    guard = GpuGuard(ScriptedGpuSource([idle]), Settings(gpu_samples=1, gpu_grace_s=30))
    guard.note_launch([0], at=time.monotonic() - 31)  # launched 31 s ago on the monotonic clock
    wall = time.time()
    monkeypatch.setattr(time, "time", lambda: wall - HOUR)  # then the wall clock jumps back an hour
    assert guard.check([0], {}).ok


def test_a_run_that_ends_after_a_step_back_records_no_negative_time(tmp_path: Path, monkeypatch) -> None:
    store = Store(tmp_path / "state.db")
    run = store.add(nickname="m", config_path="m.yaml", config_yaml="model: {}\n", action="pipeline")
    store.transition(run.id, RunState.RUNNING, stage="train")
    started = store.get(run.id).started_at
    monkeypatch.setattr(database.time, "time", lambda: started - 114.5)
    ended = store.transition(run.id, RunState.SUCCEEDED)
    assert ended.finished_at >= ended.started_at
