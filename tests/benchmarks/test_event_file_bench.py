"""The events-file benchmark runs end to end on a tiny file, so the script that records the 2 GB
figures (docs/events.md, "Reading a big file") cannot rot between the sessions that run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import REPO, script_env


def test_event_file_benchmark_times_every_reader(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "event_file.py"), "--gb", "0.012",
                           "--eval-every", "500", "--max-points", "50", "--dir", str(tmp_path)],
                          capture_output=True, text=True, env=script_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = {row["mode"]: row for row in report["rows"]}
    assert set(rows) == {"baseline", "old", "open", "open (no index)", "read_records", "skip_to_end", "drain"}
    assert not any("failed" in row for row in rows.values()), rows
    written = report["written"]
    for mode in ("open", "open (no index)"):  # every evaluation and checkpoint found, the file not read whole
        assert (rows[mode]["evals"], rows[mode]["checkpoints"]) == (written["evals"], written["checkpoints"])
        assert rows[mode]["stages"] == ["train", "infer", "evaluate"] and rows[mode]["last_step"] == written["steps"]
    assert rows["open"]["indexed"] and rows["open"]["scanned_bytes"] == 0
    assert rows["open"]["bytes_read"] < 12e6 / 2
    assert rows["drain"]["records"] == rows["old"]["events"]
    assert list(tmp_path.iterdir()) == []  # the file is removed after
