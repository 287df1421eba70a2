"""Provides the end-to-end manager check on a GPU machine: a workspace with real-shape models and
pipelines queued back to back (Llama-3.2-3B-shape and Qwen3-4B-shape bf16 LoRA; with --qlora also a
Llama-3B-shape 4-bit QLoRA), run by the detached worker with the real NVML guard. Records a
GPU-memory timeline and when each stage started and ended, then prints the results table.

    python benchmarks/common.py --root /tmp/bench --shapes llama3b,qwen3-4b
    python benchmarks/manager_on_gpu.py --root /tmp/bench
    python benchmarks/manager_on_gpu.py --root /tmp/mgr --cpu [--model DIR] [--data DIR]   # the CPU path

--cpu runs the same workspace build, queue, detached worker and report on the CPU: tiny models (--model
in every shape's place, else a tiny Llama and a tiny Qwen3 built here), --data's CSVs instead of the
synthetic set, benchmarks/pipeline.py's CPU keys and a few steps with the in-training evaluation off.
The memory timeline is read through the manager's own GPU source (dialsum_tui.manager.guards.gpu), so a
CPU shows "n/a" and $DIALSUM_FAKE_GPU replays scripted frames. tests/benchmarks/test_manager_on_gpu.py
runs the CPU path.
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
# benchmarks/pipeline.py (its folder is on sys.path above): the CPU keys and tiny models are shared.
from pipeline import CLI, CPU_KEYS, cli, model_for, set_key  # noqa: E402

from dialsum_tui.manager.guards.gpu import GpuSource, open_gpu_source  # noqa: E402
from dialsum_tui.manager.runs.models import RunState  # noqa: E402
from engine.artifacts import read_events  # noqa: E402
from engine.contract import DATA_FILES, Event, RunFiles  # noqa: E402
from engine.units import GIB  # noqa: E402

from common import bench_env  # noqa: E402

SHAPES = ("llama3b", "qwen3-4b")
# The CPU path keeps every stage but makes each one short: a few optimizer steps, no in-training
# evaluation or intermediate checkpoint, short summaries (the plumbing is what is checked there).
CPU_TINY_KEYS = {"train.max_steps": 2, "train.batch_size": 4, "train.eval_strategy": "no",
                 "train.save_strategy": "no", "generation.max_new_tokens": 8}
SAMPLE_S = 0.1  # memory timeline: 10 Hz


def config(shape: str, nickname: str, four_bit: bool, cpu: bool = False) -> dict:
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
    if cpu:
        for key, value in {**CPU_KEYS, **CPU_TINY_KEYS}.items():
            set_key(tree, key, value)
    return tree


def sample_memory(source: GpuSource, stop: threading.Event, timeline: list) -> None:
    """Append (time, bytes used on GPU 0) every SAMPLE_S until ``stop``; nothing without a GPU."""
    while not stop.is_set():
        devices = source.devices()
        if devices:
            timeline.append((time.time(), devices[0].used_bytes))
        stop.wait(SAMPLE_S)


def used_at(timeline: list, ts: float) -> float | str:
    """GiB used at ``ts`` (the last sample before it); "n/a" without samples (a CPU)."""
    if not timeline:
        return "n/a"
    before = [u for t, u in timeline if t <= ts]
    return round((before[-1] if before else timeline[0][1]) / GIB, 2)


def build_data(ws: Path, args: argparse.Namespace, env: dict) -> None:
    """The workspace's data/: --data's three CSVs, or the synthetic competition-profile set."""
    if args.data:
        for name in DATA_FILES:
            shutil.copyfile(args.data / name, ws / "data" / name)
        return
    subprocess.run([sys.executable, "-m", "engine", "synth", "--out", str(ws / "data"), "--profile", "competition",
                    "--train", "400", "--dev", "16", "--test", "32", "--seed", "3"], check=True, env=env, cwd=ROOT)


def link_models(bench: Path, ws: Path, args: argparse.Namespace) -> None:
    """ws/models/<shape> → the real shape built by common.py (GPU) or a tiny model (--cpu)."""
    (ws / "models").mkdir()
    for shape in SHAPES:
        target = model_for(bench, shape, ws / "data", args) if args.cpu else bench / "models" / shape
        (ws / "models" / shape).symlink_to(target)
        if args.cpu:
            print(f"CPU path: models/{shape} -> {target}", flush=True)


def print_timeline(ws: Path, timeline: list, t0: float) -> None:
    print("\nstage timeline (GPU memory used when each stage started/ended, GiB):")
    for run_dir in sorted((ws / "runs").iterdir(), key=lambda p: int(p.name)):
        for ev in read_events(RunFiles(run_dir).events):
            if ev["event"] in (Event.STARTED, Event.FINISHED, Event.FAILED):
                extra = f" {ev['kind']}: {ev['message'][:120]}" if ev["event"] == Event.FAILED else ""
                print(f"  run {run_dir.name} {ev.get('command'):9} {ev['event']:9} t={ev['ts'] - t0:7.1f}s "
                      f"used={used_at(timeline, ev['ts'])}{extra}")
            if ev["event"] == Event.EVAL:
                print(f"  run {run_dir.name} {ev.get('command'):9} eval      step {ev.get('step')} final {ev.get('final'):.2f}")
    if timeline:
        print(f"baseline {timeline[0][1] / GIB:.2f} GiB, peak {max(u for _, u in timeline) / GIB:.2f} GiB")
    else:
        print("baseline n/a, peak n/a (no GPU seen)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench")
    parser.add_argument("--timeout", type=float, default=480)
    parser.add_argument("--qlora", action="store_true", help="also queue a 4-bit QLoRA pipeline")
    parser.add_argument("--cpu", action="store_true", help="the same check on the CPU: tiny models, CPU keys, few steps")
    parser.add_argument("--model", type=Path, help="--cpu: this model in every shape's place (default: tiny ones)")
    parser.add_argument("--data", type=Path, help="--cpu: a data dir with train/dev/test.csv (default: synthetic)")
    args = parser.parse_args()
    if args.cpu and args.qlora:
        parser.error("--qlora needs a CUDA GPU (bitsandbytes 4-bit); drop --qlora for the CPU path")
    if not args.cpu and (args.model or args.data):
        parser.error("--model and --data are for the CPU path (add --cpu); on a GPU the real shapes are built "
                     "by benchmarks/common.py")
    missing = [str(args.data / n) for n in DATA_FILES if args.data and not (args.data / n).is_file()]
    if missing:
        parser.error(f"--data {args.data}: missing {', '.join(missing)} (train.csv, dev.csv, test.csv expected)")
    source = open_gpu_source()
    if not args.cpu and not source.devices():
        parser.error(f"this check needs a CUDA GPU and sees none ({source.describe()}); add --cpu for the CPU path")
    print(f"memory timeline from: {source.describe()}", flush=True)
    bench = Path(args.root).resolve()
    ws = bench / "ws"
    shutil.rmtree(ws, ignore_errors=True)
    bench.mkdir(parents=True, exist_ok=True)
    env = bench_env()
    subprocess.run([*CLI, "init", str(ws)], check=True, env=env)
    # The quota is the workspace's: the worker hands it to each train stage (engine_disk_args).
    settings = ws / ".dialsum" / "settings.yaml"
    settings.write_text("quota_gb: 60\nmargin_gb: 2\n", encoding="utf-8")
    build_data(ws, args, env)
    link_models(bench, ws, args)
    runs = [("llama3b", "Llama-3B-shape-bf16", False), ("qwen3-4b", "Qwen3-4B-shape-bf16", False)]
    if args.qlora:  # needs bitsandbytes (the 'gpu' extra)
        runs.append(("llama3b", "Llama-3B-shape-qlora", True))
    if args.cpu:  # tiny models in the shapes' places: the nicknames must not claim the real shapes
        runs = [(shape, f"cpu-{shape}", four_bit) for shape, _, four_bit in runs]
    timeline: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(source, stop, timeline), daemon=True)
    t0 = time.time()
    sampler.start()
    time.sleep(0.5)
    for shape, nick, four_bit in runs:
        path = ws / "configs" / f"{nick}.yaml"
        path.write_text(yaml.safe_dump(config(shape, nick, four_bit, args.cpu)), encoding="utf-8")
        print(cli(ws, "add", str(path)).stdout, end="", flush=True)
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        state = json.loads(cli(ws, "ls", "--json").stdout)
        if all(RunState(r["state"]).is_final for r in state):
            break
        time.sleep(2)
    else:
        print(f"not every run ended within --timeout {args.timeout:.0f} s", flush=True)
    stop.set()
    sampler.join()
    cli(ws, "worker", "stop", check=False)
    print_timeline(ws, timeline, t0)
    print(cli(ws, "results", check=False).stdout)
    print(cli(ws, "ls", check=False).stdout)
    log = (ws / ".dialsum" / "worker.log").read_text()
    print("worker.log (admissions):\n" + "\n".join(line for line in log.splitlines() if "launch" in line or "wait" in line)[-3000:])
    final = json.loads(cli(ws, "ls", "--json").stdout)
    return 0 if all(r["state"] == RunState.SUCCEEDED for r in final) else 1


if __name__ == "__main__":
    sys.exit(main())
