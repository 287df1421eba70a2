"""Provides the resume benchmark: what a stop costs when the run resumes, against a full restart.

For each variant it runs, each as its own ``python -m engine train`` process (the engine's real path):
  1. full:    N steps from scratch (the baseline, and what a restart without resume repeats);
  2. stopped: the same config, SIGINT once step K is logged (``train.save_on_stop`` saves there);
  3. resumed: a new run directory, ``--resume-from`` the stopped run's checkpoints, up to N.
It prints, per variant: the step resumed from, the steps the resumed run trained, the loss just
before and after the stop, the wall seconds of each run, and

    time lost to the stop  = stopped + resumed - full   (the stop checkpoint, a second model load)
    time lost to a restart = stopped                    (everything before the stop is done again)

    python benchmarks/common.py --root /tmp/bench            # once: data + random-init models (GPU)
    python benchmarks/resume.py --root /tmp/bench            # 3B LoRA bf16 and 4-bit QLoRA
    python benchmarks/resume.py --root /tmp/bench --only qlora-4bit --steps 60 --stop-at 40

tests/engine/test_bench_resume.py runs the same code path on the CPU with a tiny model (``--tiny``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from train_throughput import merged

ROOT = Path(__file__).resolve().parents[1]

LORA_BF16 = {
    "model": {"kind": "causal", "dtype": "bfloat16", "attn_implementation": "sdpa"},
    "data": {"dir": "data"},
    "prompt": {"topic": "never", "max_source_length": 1024, "max_target_length": 200},
    "lora": {"enabled": True, "r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
    "train": {"learning_rate": 2e-4, "warmup_ratio": 0.0, "lr_scheduler": "linear", "precision": "bf16",
              "batch_size": 8, "grad_accum": 1, "logging_steps": 1, "eval_strategy": "no", "save_strategy": "no",
              "save_total_limit": 1, "device": "cuda", "optim": "adamw_torch_fused", "group_by_length": True},
}
# The hand-off team's 4-bit recipe: nf4 + double quant, paged AdamW, gradient checkpointing.
QLORA_4BIT = {
    "quantization": {"load_in_4bit": True, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"},
    "train": {"optim": "paged_adamw_32bit", "gradient_checkpointing": True},
}
VARIANTS = {"lora-bf16": [LORA_BF16], "qlora-4bit": [LORA_BF16, QLORA_4BIT]}
# CPU stand-in (tests, --tiny): same recipe, fp32, a tiny local model.
TINY = {"model": {"dtype": "float32"}, "prompt": {"max_source_length": 256, "max_target_length": 48},
        "train": {"precision": "fp32", "device": "cpu", "optim": "adamw_torch", "batch_size": 4}}


def env() -> dict[str, str]:
    extra = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=str(ROOT) + (os.pathsep + extra if extra else ""), TOKENIZERS_PARALLELISM="false",
                HF_HUB_OFFLINE="1")


def events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def train(root: Path, config: Path, run_dir: Path, *extra: str, stop_at: int | None = None,
          timeout: float = 3600) -> tuple[float, int]:
    """One train stage; with ``stop_at``, SIGINT once that step is logged. Returns (wall s, exit status)."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "engine", "train", "--config", str(config), "--run-dir", str(run_dir),
                             *extra], cwd=root, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sent = False
    while proc.poll() is None:
        if time.monotonic() - start > timeout:
            proc.kill()
            raise TimeoutError(f"{run_dir}: no exit after {timeout:.0f} s")
        if stop_at is not None and not sent and any(e["event"] == "train_log" and e["step"] >= stop_at for e in events(run_dir)):
            proc.send_signal(signal.SIGINT)
            sent = True
        time.sleep(0.05)
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode not in (0, 130):
        raise RuntimeError(f"{run_dir}: exit {proc.returncode}\n{stderr[-3000:]}")
    return time.monotonic() - start, proc.returncode


def losses(run_dir: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events(run_dir) if e["event"] == "train_log"}


def measure(root: Path, name: str, tree: dict, steps: int, stop_at: int) -> dict:
    """Full, stopped and resumed runs of ``tree`` under ``root/resume-bench/<name>``; the figures as a dict."""
    work = root / "resume-bench" / name
    cfg = merged(tree, {"model": {"nickname": f"resume-{name}"}, "train": {"max_steps": steps},
                        "paths": {"checkpoints": str(work / "checkpoints")}})
    config = work / "config.yaml"
    work.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    full_s, _ = train(root, config, work / "full")
    # A separate checkpoint tree, so the stopped run cannot pick up the full run's checkpoints.
    stop_config = work / "stop.yaml"
    stop_config.write_text(yaml.safe_dump(merged(cfg, {"paths": {"checkpoints": str(work / "stop-checkpoints")}})),
                           encoding="utf-8")
    stopped_s, code = train(root, stop_config, work / "stopped", stop_at=stop_at)
    trainer = work / "stop-checkpoints" / f"resume-{name}" / "trainer"
    resumed_s, _ = train(root, stop_config, work / "resumed", "--resume-from", str(trainer))
    started = next(e for e in events(work / "resumed") if e["event"] == "started")
    before, after = losses(work / "stopped"), losses(work / "resumed")
    k = started["resumed_step"]
    return {
        "variant": name, "steps": steps, "stopped_exit": code, "resumed_from_step": k,
        "resumed_trained_steps": len(after), "resumed_last_step": max(after, default=None),
        "loss_first": losses(work / "full").get(1), "loss_before_stop": before.get(k),
        "loss_after_resume": after.get(k + 1), "full_loss_at_next": losses(work / "full").get(k + 1),
        "full_s": round(full_s, 1), "stopped_s": round(stopped_s, 1), "resumed_s": round(resumed_s, 1),
        "lost_to_stop_s": round(stopped_s + resumed_s - full_s, 1), "lost_to_restart_s": round(stopped_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="bench root: data/ and models/ (benchmarks/common.py)")
    parser.add_argument("--only", choices=list(VARIANTS), action="append", help="variants to run (default all)")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps of the full run (N)")
    parser.add_argument("--stop-at", type=int, default=25, help="SIGINT once this step is logged (K)")
    parser.add_argument("--model", default="models/llama3b", help="model directory, relative to --root")
    parser.add_argument("--tiny", action="store_true", help="CPU, fp32, no 4-bit: the test's code path")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    names = args.only or (["lora-bf16"] if args.tiny else list(VARIANTS))
    results = []
    for name in names:
        tree = merged(*VARIANTS[name], {"model": {"name_or_path": args.model}}, TINY if args.tiny else {})
        if args.tiny:
            tree.pop("quantization", None)
        result = measure(root, name, tree, args.steps, args.stop_at)
        print(json.dumps(result), flush=True)
        results.append(result)
    print(f"\n{'variant':<12} {'resumed at':>10} {'trained':>8} {'full s':>8} {'stopped s':>10} {'resumed s':>10} "
          f"{'lost: stop':>11} {'lost: restart':>14}")
    for r in results:
        print(f"{r['variant']:<12} {r['resumed_from_step']:>5}/{r['steps']:<4} {r['resumed_trained_steps']:>8} "
              f"{r['full_s']:>8} {r['stopped_s']:>10} {r['resumed_s']:>10} {r['lost_to_stop_s']:>11} {r['lost_to_restart_s']:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
