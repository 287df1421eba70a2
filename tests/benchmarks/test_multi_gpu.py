"""benchmarks/multi_gpu.py runs its whole code path on the CPU: the shipped H100 config on the tiny
Llama, one process, DDP with two gloo ranks through the worker's accelerate launch, and two runs
side by side, with DDP knobs set through benchmarks/ddp_variant.py, then the efficiency summary.
It once crashed on its first GPU run (a call missing an argument); this keeps it from rotting
between GPU sessions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO, script_env


@pytest.mark.slow
def test_multi_gpu_benchmark_runs_its_scenarios_with_cpu_ranks(tmp_path: Path, synth_data_dir: Path,
                                                               tiny_llama_dir: Path) -> None:
    out = tmp_path / "result.json"
    env = script_env()
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "multi_gpu.py"), "--cpu", "--root", str(tmp_path / "bench"),
         "--model", str(tiny_llama_dir), "--data", str(synth_data_dir), "--scenarios", "1,ddp2,side2,ddp2+rb",
         "--batch", "2", "--steps", "6", "--skip", "2", "--match-samples", "--out", str(out),
         "--ddp", json.dumps({"ddp_find_unused_parameters": False, "ddp_static_graph": True})],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["name"].split("/")[0] + "/" + r["name"].rsplit("-", 1)[1]: r for r in report["rows"]}
    assert sorted(rows) == ["1gpu/0", "ddp2+rb/0", "ddp2/0", "side2/0", "side2/1"]
    assert all(r["exit"] == 0 and r["tokens_per_s"] > 0 for r in rows.values()), rows
    # --match-samples: DDP on 2 ranks runs half the steps over the same batches (3 vs 6 steps, warm-up 1 vs 2).
    assert [rows[k]["steps"] for k in ("1gpu/0", "ddp2/0", "side2/0")] == [3, 1, 3]
    assert rows["ddp2/0"]["world_size"] == 2 and rows["1gpu/0"]["world_size"] == 1
    summary = report["summary"]
    assert summary["ddp2"]["gpus"] == 2 and summary["side2"]["gpus"] == 2 and summary["ddp2+rb"]["gpus"] == 2
    assert summary["ddp2"]["efficiency"] > 0 and summary["side2"]["efficiency"] > 0
    configs = tmp_path / "bench" / "configs"
    assert "batch_rebalance: true" in (configs / "mg-llama3b-ddp2-rb.yaml").read_text()
    assert "batch_rebalance: false" in (configs / "mg-llama3b-ddp2.yaml").read_text()
