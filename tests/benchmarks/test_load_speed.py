"""benchmarks/load_speed.py runs its whole code path on the CPU on the tiny Llama, so it cannot rot
between device sessions: the hub-vocabulary copy (the engine adds the mask tokens and resizes), the
engine's timed loading steps and the order before them, the final_model written by the engine's own
save path, and the weight comparisons. On the CPU both orders are the same calls: they must agree
exactly. The seconds are never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import REPO, script_env


def test_load_speed_times_both_orders_and_compares_the_weights(tmp_path: Path, tiny_llama_dir: Path) -> None:
    out = tmp_path / "load.json"
    env = script_env()
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "load_speed.py"), "--device", "cpu", "--root", str(tmp_path),
         "--model", str(tiny_llama_dir), "--like", "llama3b", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [(r["stage"], r["order"]) for r in rows] == [("train", "before"), ("train", "engine"), ("train", "compare"),
                                                        ("infer", "engine"), ("infer", "before"), ("infer", "compare")]
    steps = {("train", "before"): ["tokenizer", "weights", "resize", "move", "lora"],
             ("infer", "engine"): ["tokenizer", "weights", "resize", "adapter", "merge", "move"]}
    for r in rows:
        if (r["stage"], r["order"]) in steps:
            assert list(r["phases"]) == steps[r["stage"], r["order"]]
        if r["order"] != "compare":
            assert abs(sum(r["phases"].values()) - r["total_s"]) < 0.01
    train, infer = rows[2], rows[5]
    assert train["added_tokens"] == 15  # the hub-vocabulary copy made the engine add and resize
    for diff in (train["base_weights"], infer["merged_weights"]):
        assert diff["elements"] > 0 and diff["elements_differing"] == 0 and diff["max_abs_diff"] == 0.0
    assert (tmp_path / "load-bench" / tiny_llama_dir.name).is_dir()
    assert proc.stdout.count('"order": "compare"') == 2  # the JSON lines the device job's log shows
