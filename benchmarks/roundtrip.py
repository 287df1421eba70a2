"""Provides the dtype round trip on a GPU: train a Llama-3.2-3B-shape LoRA a few steps in bf16 and in
4-bit (QLoRA), save final_model, then run the engine's inference on it in a NEW process — the
hand-off's "expected scalar type BFloat16 but found Float" must not happen.

    python benchmarks/common.py --root /tmp/bench --shapes llama3b
    python benchmarks/roundtrip.py --root /tmp/bench
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_env  # noqa: E402


def config(nickname: str, four_bit: bool) -> dict:
    tree = {
        "model": {"name_or_path": "models/llama3b", "nickname": nickname, "kind": "causal", "dtype": "bfloat16"},
        "data": {"dir": "data"},
        "lora": {"enabled": True},
        "train": {"max_steps": 3, "batch_size": 8, "precision": "bf16", "eval_strategy": "no", "save_strategy": "no",
                  "device": "cuda", "logging_steps": 1},
        "generation": {"batch_size": 128, "num_beams": 1, "max_new_tokens": 16},
    }
    if four_bit:
        tree["quantization"] = {"load_in_4bit": True, "compute_dtype": "bfloat16"}
        tree["train"].update(gradient_checkpointing=True, optim="paged_adamw_32bit")
    return tree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench")
    args = parser.parse_args()
    root = Path(args.root)
    rows = []
    for nickname, four_bit in (("rt-bf16", False), ("rt-qlora", True)):
        path = root / "configs" / f"{nickname}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config(nickname, four_bit)), encoding="utf-8")
        run_dir = root / "runs" / nickname
        codes = {}
        for stage, extra in (("train", []), ("infer", ["--split", "test"])):
            with open(root / f"{nickname}-{stage}.log", "w") as log:
                codes[stage] = subprocess.run([sys.executable, "-m", "engine", stage, "--config", str(path), "--run-dir",
                                               str(run_dir), *extra], cwd=root, env=bench_env(), stdout=log,
                                              stderr=subprocess.STDOUT).returncode
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
        failed = [e for e in events if e["event"] == "failed"]
        meta = json.loads((root / "checkpoints" / nickname / "final_model" / "dialsum_model.json").read_text())
        sub = root / "submissions" / f"{nickname}_submission.csv"
        rows.append({"run": nickname, "train_exit": codes["train"], "infer_exit": codes["infer"],
                     "final_model": {k: meta.get(k) for k in ("dtype", "adapter", "quantized_base")},
                     "submission_rows": len(list(csv.reader(sub.open(encoding="utf-8")))) - 1 if sub.exists() else None,
                     "failed": [f"{e['kind']}: {e['message'][:120]}" for e in failed]})
        print(json.dumps(rows[-1]), flush=True)
    return 0 if all(r["train_exit"] == 0 and r["infer_exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
