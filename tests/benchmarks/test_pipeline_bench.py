"""benchmarks/pipeline.py runs its whole code path on the CPU: the shipped KoBART config (model path,
data dir and epochs changed, plus the CPU keys) on the tiny BART, queued with `dialsum-tui add` and run
by the detached worker, in the two calls a GPU session makes (`--start` returns while the worker goes
on; `--wait` reports, and reports again when called again). Its figures are recorded on a GPU in
docs/benchmarks.md, never asserted here; what is asserted is that every part of the report is there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO, script_env, stop_workers_of

BENCH = REPO / "benchmarks" / "pipeline.py"


def _bench(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *argv], capture_output=True, text=True, env=script_env(),
                          timeout=300)


@pytest.mark.slow  # three stage processes of a tiny BART (~45 s on a shared 2-core box)
def test_pipeline_benchmark_times_every_stage_through_the_product(tmp_path: Path, synth_data_dir: Path,
                                                                  tiny_bart_dir: Path) -> None:
    root = tmp_path / "pipe"
    try:
        started = _bench("--root", str(root), "--cpu", "--only", "kobart", "--model", str(tiny_bart_dir),
                         "--data", str(synth_data_dir), "--epochs", "1", "--train-rows", "48",
                         "--set", "generation.max_new_tokens=16", "--start")
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-3000:]
        assert "train.epochs" in started.stdout and "generation.max_new_tokens" in started.stdout  # overrides named

        out = tmp_path / "report.json"
        waited = _bench("--root", str(root), "--wait", "--max-wait", "240", "--out", str(out))
        assert waited.returncode == 0, waited.stdout[-3000:] + waited.stderr[-3000:]
    finally:
        stop_workers_of(root / "ws")
    rep = json.loads(out.read_text())
    run = rep["runs"]["kobart"]
    assert rep["complete"] and run["state"] == "succeeded", run
    assert {"model.name_or_path", "data.dir", "train.epochs", "train.device"} <= set(run["overridden"])
    stages = {s["stage"]: s for s in run["stages"]}
    assert list(stages) == ["train", "infer", "evaluate"]
    for name, s in stages.items():
        for key in ("wall_s", "import_s", "to_first_work_s", "work_s"):
            assert s[key] is not None and s[key] > 0, (name, key, s)
        assert s["load_s"] is not None and s["load_s"] >= 0, (name, s)
        assert s["gpu"]["idle_share"] == "n/a"  # no NVML on the CPU: said, not faked
    # The gaps the worker saw between one stage's exit and the next one's launch.
    assert len(run["gaps_s"]) == 2 and all(g is not None and g >= 0 for g in run["gaps_s"]), run["gaps_s"]
    assert stages["infer"]["gap_before_s"] == run["gaps_s"][0]
    # Item 4: the eval event carries its seconds, summed against the train stage.
    evals = stages["train"]["in_training_eval"]
    assert evals["count"] == 1 and evals["seconds"] > 0 and 0 < evals["share_of_train"] < 1, evals
    assert run["end_to_end_s"] >= sum(s["wall_s"] for s in stages.values())
    assert "| train |" in waited.stdout and "in-training eval" in waited.stdout

    # Re-runnable: a second --wait on the finished runs reports the same figures.
    again = _bench("--root", str(root), "--wait", "--max-wait", "60", "--out", str(tmp_path / "again.json"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "again.json").read_text())["runs"]["kobart"]["stages"] == run["stages"]
