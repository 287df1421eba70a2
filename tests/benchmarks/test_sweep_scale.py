"""The sweep-scale benchmark runs end to end at a tiny size, so the script that records the 200-run
figures (docs/benchmarks.md, "Sweeps at scale") cannot rot between the sessions that run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import REPO, script_env


def test_sweep_scale_benchmark_times_add_ls_and_the_first_board(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sweep_scale.py"), "--variants", "6",
                           "--repeat", "1", "--train-rows", "40", "--dir", str(tmp_path)],
                          capture_output=True, text=True, env=script_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["variants"] == 6 and figures["runs_in_store"] == 12  # two sweeps: in-process and the CLI's
    for key in ("add_sweep_api_s", "add_sweep_cli_s", "ls_table_api_s", "ls_cli_s", "ls_collapse_cli_s",
                "tui_first_board_s", "tui_next_board_s"):
        assert figures[key] > 0, key
    assert "add of a 6-variant sweep" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # the workspaces are removed, no worker left behind
