"""The CPU-side benchmark scripts run end to end on tiny inputs, so a refactor cannot break them
unnoticed between the sessions that record their figures (one crashed on its first real run): the
metric's timing, the TUI's first frame / idle CPU / log end, and the cost of a browser tab."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO, script_env, stop_workers_of

BENCH = REPO / "benchmarks"


def _run(*argv: str, timeout: float = 240) -> str:
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=script_env(), timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_metric_speed_times_every_scorer_on_a_few_items() -> None:
    out = _run(str(BENCH / "metric_speed.py"), "--items", "5")
    for row in ("competition, mecab (warm)", "competition, char", "baseline (rouge 1.0.1 reimplemented)"):
        assert row in out
    assert "final=" in out


def test_tui_startup_reports_first_frame_idle_cpu_and_log_end() -> None:
    # 1k log lines/s: the key-latency path as on a GPU box, at a rate a loaded 2-core CI box keeps up with.
    out = _run(str(BENCH / "tui_startup.py"), "--log-gb", "0.001", "--idle-s", "1", "--lines-per-s", "1000",
               timeout=480)
    figures = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    for key in ("first_frame_s", "queue_shown_s", "log_end_s", "idle_cpu_percent", "key_mean_ms"):
        assert float(figures[key]) >= 0, key
    # The log's last line was found: the snapshot path delivered it to the bench's hook.
    assert float(figures["log_end_s"]) >= float(figures["first_frame_s"])


def test_serve_tab_cost_measures_one_idle_tab(tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    pytest.importorskip("textual_serve")
    from dialsum_tui.manager.workspace.layout import init_workspace

    ws = init_workspace(tmp_path / "ws")
    try:
        out = _run(str(BENCH / "serve_tab_cost.py"), "--workspace", str(ws.root), "--seconds", "1")
    finally:
        stop_workers_of(ws.root)  # the tab's app started a worker, and nothing else stops it
    figures = json.loads(out[out.index("{"):])
    # One app process was started for the tab and measured (a real process has tens of MiB resident).
    assert figures["apps_rss_mib"] > 10 and figures["server_rss_mib"] > 10, figures
    assert figures["apps_cpu_percent"] >= 0 and figures["idle_s"] == 1.0
