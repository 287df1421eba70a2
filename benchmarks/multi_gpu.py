"""Provides the multi-GPU benchmark: Llama-3.2-3B-shape LoRA trained by the engine on 1 GPU, on 2 GPUs
through the worker's own `accelerate launch` command (DDP), and as two independent single-GPU runs
side by side. Prints steady-state non-pad tokens/s, scaling efficiency and peak memory per scenario.

Needs a host with 2 CUDA GPUs (not run in CI; `--help` works anywhere):
    python benchmarks/common.py --root /tmp/bench          # once: data + random-init models
    python benchmarks/multi_gpu.py --root /tmp/bench --shape llama3b --steps 30
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dialsum_tui.manager.launching import accelerate_argv  # noqa: E402  (the exact launch the worker uses)

from common import NvmlPeak, bench_env, make_data, make_model  # noqa: E402
from train_throughput import CAUSAL_BASE, merged, steady_state  # noqa: E402


def write_config(root: Path, slug: str, model: Path, batch: int, steps: int) -> Path:
    tree = merged(CAUSAL_BASE, {"model": {"name_or_path": str(model), "nickname": slug},
                                "train": {"batch_size": batch, "max_steps": steps, "grad_accum": 1}})
    path = root / "configs" / f"{slug}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def start(root: Path, slug: str, config: Path, gpus: str) -> tuple[subprocess.Popen, Path]:
    """Start one engine train on ``gpus`` ("0" or "0,1"), through accelerate when more than one."""
    run_dir = root / "runs" / slug
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "events.jsonl").unlink(missing_ok=True)
    engine = [sys.executable, "-m", "engine"]
    n = len(gpus.split(","))
    argv = (accelerate_argv(engine, n) if n > 1 else engine) + ["train", "--config", str(config), "--run-dir", str(run_dir)]
    log = open(run_dir / "run.log", "w")  # noqa: SIM115  (closed with the process)
    proc = subprocess.Popen(argv, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                            env=bench_env() | {"CUDA_VISIBLE_DEVICES": gpus})
    return proc, run_dir


def result(name: str, proc: subprocess.Popen, run_dir: Path, t0: float) -> dict:
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    failed = next((e for e in events if e["event"] == "failed"), None)
    out = {"name": name, "exit": proc.returncode, "wall_s": round(time.time() - t0, 1), **steady_state(events, skip=3)}
    if failed:
        out["failed"] = f"rank {failed.get('rank', 0)} {failed['kind']}: {failed['message'][:160]}"
    return out


def scenario(root: Path, name: str, runs: list[tuple[str, Path, str]]) -> list[dict]:
    """Run ``runs`` ((slug, config, gpus)) at the same time; one result each, peak memory over all."""
    t0 = time.time()
    with NvmlPeak() as peak:
        started = [(slug, *start(root, slug, config, gpus)) for slug, config, gpus in runs]
        for _slug, proc, _dir in started:
            proc.wait()
    return [result(f"{name}/{slug}", proc, run_dir, t0) | {"peak_gib": peak.peak_gib} for slug, proc, run_dir in started]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, type=Path, help="bench directory (data/, models/ from common.py)")
    parser.add_argument("--shape", default="llama3b", help="model shape from benchmarks/common.py SHAPES")
    parser.add_argument("--batch", type=int, default=4, help="per-GPU batch size (DDP doubles the global batch)")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run (3 warm-up steps are skipped)")
    args = parser.parse_args()

    import torch

    if torch.cuda.device_count() < 2:
        print(f"needs 2 CUDA GPUs, found {torch.cuda.device_count()}: run it on a 2-GPU host", file=sys.stderr)
        return 2
    root = args.root.resolve()
    model = make_model(root, args.shape, make_data(root))
    config = write_config(root, "mg", model, args.batch, args.steps)
    rows = scenario(root, "1gpu", [("one", config, "0")])
    rows += scenario(root, "2gpu-ddp", [("ddp", config, "0,1")])
    rows += scenario(root, "side-by-side", [("left", config, "0"), ("right", config, "1")])
    by = {r["name"]: r.get("tokens_per_s") or 0.0 for r in rows}
    single = by["1gpu/one"]
    summary = {
        "ddp_scaling_efficiency": round(by["2gpu-ddp/ddp"] / (2 * single), 3) if single else None,
        "side_by_side_efficiency": round((by["side-by-side/left"] + by["side-by-side/right"]) / (2 * single), 3)
        if single else None,
    }
    for row in rows:
        print(json.dumps(row))
    print(json.dumps(summary))
    print("\n| scenario | tokens/s | s/step | peak GiB | exit |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r.get('tokens_per_s', 0):.0f} | {r.get('s_per_step', 0):.3f} | {r['peak_gib']} | {r['exit']} |")
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
