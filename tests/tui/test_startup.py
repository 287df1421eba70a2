"""What the first frame waits for (issue 25 point 8): importing the app loads Textual and the TUI's own
modules, never the manager's packages (pydantic, SQLite, psutil, NVML behind them: ~0.3 s on the dev box,
the regression that took the first frame from 1.5× to 2.5× a bare Textual app's); those are loaded by the
poll thread when it opens the workspace. And the startup benchmark's path runs at tiny shapes: a queue of
runs, End reaching the last one, a key answered while a writer appends to the log."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from support import REPO, script_env

HEAVY = ("pydantic", "psutil", "sqlite3", "yaml", "pynvml", "textual_plotext", "dialsum_tui.manager.runs",
         "dialsum_tui.manager.guards", "dialsum_tui.manager.store", "dialsum_tui.manager.worker",
         "dialsum_tui.manager.insights", "dialsum_tui.manager.backends", "dialsum_tui.manager.workspace",
         "dialsum_tui.manager.service", "engine.config")


def test_importing_the_app_loads_no_manager_package() -> None:
    probe = ("import sys, dialsum_tui.app, dialsum_tui.screens.main, dialsum_tui.messages; "
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=script_env())
    assert out.stdout.strip() == "", f"the first frame's imports pull in: {out.stdout.strip()}"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="the benchmark's terminal figures need tmux")
def test_startup_benchmark_with_a_queue_reaches_its_last_run_and_answers_keys() -> None:
    argv = [sys.executable, str(REPO / "benchmarks" / "tui_startup.py"), "--log-gb", "0.001", "--idle-s", "1",
            "--lines-per-s", "1000", "--runs", "25"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=script_env(), timeout=480)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    figures = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    assert "setup: 25 runs" in proc.stdout
    for key in ("first_frame_s", "bare_first_frame_s", "first_frame_ratio", "first_paint_s", "bare_first_paint_s",
                "first_paint_ratio", "queue_shown_s", "key_mean_ms", "end_key_mean_ms", "home_key_mean_ms"):
        assert float(figures[key]) > 0, key
    assert float(figures["end_reached_last_run"]) == 1.0  # End selected run 25 every time
