"""Provides the end-to-end manager check on a GPU machine: a workspace with real-shape models and
pipelines queued back to back (Llama-3.2-3B-shape and Qwen3-4B-shape bf16 LoRA; with --qlora also a
Llama-3B-shape 4-bit QLoRA), run by the detached worker with the real NVML guard. Records a
GPU-memory timeline and when each stage started and ended, then prints the results table.

    python benchmarks/common.py --root /tmp/bench --shapes llama3b,qwen3-4b
    python benchmarks/manager_on_gpu.py --root /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_env  # noqa: E402

CLI = [sys.executable, "-m", "dialsum_tui"]


def config(shape: str, nickname: str, four_bit: bool) -> dict:
    tree = {
        "model": {"name_or_path": f"models/{shape}", "nickname": nickname, "kind": "causal", "dtype": "bfloat16",
                  "attn_implementation": "sdpa"},
        "data": {"dir": "data", "max_eval_samples": 16},
        "prompt": {"topic": "dropout", "max_source_length": 1024, "max_target_length": 200},
        "lora": {"enabled": True, "r": 16, "alpha": 32},
        "train": {"max_steps": 20, "batch_size": 8, "precision": "bf16", "logging_steps": 2, "eval_strategy": "steps",
                  "eval_steps": 10, "save_strategy": "steps", "save_steps": 10, "save_total_limit": 1,
                  "device": "cuda", "use_liger_kernel": True, "learning_rate": 2e-4},
        "generation": {"batch_size": 64, "num_beams": 1, "max_new_tokens": 32}
    }
    if four_bit:
        tree["quantization"] = {"load_in_4bit": True, "compute_dtype": "bfloat16"}
        tree["train"]["gradient_checkpointing"] = True
    return tree


def sample_memory(stop: threading.Event, timeline: list) -> None:
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    while not stop.is_set():
        timeline.append((time.time(), pynvml.nvmlDeviceGetMemoryInfo(handle).used))
        time.sleep(0.1)


def used_at(timeline: list, ts: float) -> float:
    before = [u for t, u in timeline if t <= ts]
    return round((before[-1] if before else timeline[0][1]) / 2**30, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench")
    parser.add_argument("--timeout", type=float, default=480)
    parser.add_argument("--qlora", action="store_true", help="also queue a 4-bit QLoRA pipeline")
    args = parser.parse_args()
    bench = Path(args.root)
    ws = bench / "ws"
    shutil.rmtree(ws, ignore_errors=True)
    env = bench_env()
    subprocess.run([*CLI, "init", str(ws)], check=True, env=env)
    # The quota is the workspace's: the worker hands it to each train stage (engine_disk_args).
    settings = ws / ".dialsum" / "settings.yaml"
    settings.write_text("quota_gb: 60\nmargin_gb: 2\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "engine", "synth", "--out", str(ws / "data"), "--profile", "competition",
                    "--train", "400", "--dev", "16", "--test", "32", "--seed", "3"], check=True, env=env, cwd=ROOT)
    (ws / "models").mkdir()
    for shape in ("llama3b", "qwen3-4b"):
        (ws / "models" / shape).symlink_to(bench / "models" / shape)
    runs = [("llama3b", "Llama-3B-shape-bf16", False), ("qwen3-4b", "Qwen3-4B-shape-bf16", False)]
    if args.qlora:  # needs bitsandbytes (the 'gpu' extra)
        runs.append(("llama3b", "Llama-3B-shape-qlora", True))
    timeline: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(stop, timeline), daemon=True)
    sampler.start()
    time.sleep(0.5)
    for shape, nick, four_bit in runs:
        path = ws / "configs" / f"{nick}.yaml"
        path.write_text(yaml.safe_dump(config(shape, nick, four_bit)), encoding="utf-8")
        subprocess.run([*CLI, "--workspace", str(ws), "add", str(path)], check=True, env=env)
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        state = json.loads(subprocess.run([*CLI, "--workspace", str(ws), "ls", "--json"], capture_output=True, text=True,
                                          env=env, check=True).stdout)
        if all(r["state"] in ("succeeded", "failed", "cancelled", "interrupted") for r in state):
            break
        time.sleep(2)
    stop.set()
    subprocess.run([*CLI, "--workspace", str(ws), "worker", "stop"], env=env)
    print("\nstage timeline (GPU memory used when each stage started/ended, GiB):")
    for run_dir in sorted((ws / "runs").iterdir(), key=lambda p: int(p.name)):
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
        for ev in events:
            if ev["event"] in ("started", "finished", "failed"):
                extra = f" {ev['kind']}: {ev['message'][:120]}" if ev["event"] == "failed" else ""
                print(f"  run {run_dir.name} {ev.get('command'):9} {ev['event']:9} t={ev['ts'] - timeline[0][0]:7.1f}s "
                      f"used={used_at(timeline, ev['ts'])}{extra}")
            if ev["event"] == "eval":
                print(f"  run {run_dir.name} {ev.get('command'):9} eval      step {ev.get('step')} final {ev.get('final'):.2f}")
    peak = max(u for _, u in timeline) / 2**30
    print(f"baseline {timeline[0][1] / 2**30:.2f} GiB, peak {peak:.2f} GiB")
    print(subprocess.run([*CLI, "--workspace", str(ws), "results"], capture_output=True, text=True, env=env).stdout)
    print(subprocess.run([*CLI, "--workspace", str(ws), "ls"], capture_output=True, text=True, env=env).stdout)
    log = (ws / ".dialsum" / "worker.log").read_text()
    print("worker.log (admissions):\n" + "\n".join(line for line in log.splitlines() if "launch" in line or "wait" in line)[-3000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
