"""The workspace-level big-events benchmark runs end to end on a tiny file, so the script that records
the 2 GB figures (issue 24 point 2: results, compare, samples, handoff, the TUI's first snapshot and
a rebuild, with and without the index) cannot rot between the sessions that run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import REPO, script_env


def test_workspace_big_events_benchmark_runs_every_reader(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "workspace_big_events.py"), "--gb", "0.012",
                           "--eval-every", "500", "--dir", str(tmp_path), "--timeout", "120"],
                          capture_output=True, text=True, env=script_env(), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    readers = ["results", "compare", "samples", "handoff", "tui first snapshot", "rebuild (rm state.db; ls)"]
    for variant in ("index", "no index", "baseline"):
        rows = report["rows"][variant]
        assert [row["reader"] for row in rows] == readers
        assert not any("failed" in row for row in rows), rows
        assert all(row["seconds"] > 0 and row["peak_rss_mib"] > 0 for row in rows)
    assert list(tmp_path.iterdir()) == []  # the workspace is removed after
