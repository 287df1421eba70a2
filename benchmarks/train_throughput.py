"""Provides the training-throughput benchmark: the engine's own `python -m engine train` path under
several configs (the hand-off team's QLoRA recipe, then one lever at a time), each in its own
process, on real-architecture shapes. Prints non-pad tokens/s, MFU, s/optimizer-step, peak memory.

    python benchmarks/common.py --root /tmp/bench                 # once: data + random-init models
    python benchmarks/train_throughput.py --root /tmp/bench --only llama3b
    python benchmarks/train_throughput.py --device cpu --model DIR --data DIR --steps 4   # the CPU test's path
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
from common import NvmlPeak, bench_env, mfu, parameters  # noqa: E402

CAUSAL_BASE = {
    "model": {"kind": "causal", "dtype": "bfloat16", "attn_implementation": "sdpa"},
    "data": {"dir": "data"},
    "prompt": {"topic": "never", "max_source_length": 1024, "max_target_length": 200},
    "lora": {"enabled": True, "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
    "train": {"learning_rate": 2e-5, "warmup_ratio": 0.1, "weight_decay": 0.1, "max_grad_norm": 1.2,
              "lr_scheduler": "cosine", "precision": "bf16", "logging_steps": 1, "eval_strategy": "no",
              "save_strategy": "no", "device": "cuda", "optim": "adamw_torch_fused"},
}
# The hand-off team's recipe (competition.md): QLoRA nf4 + double quant, checkpointing, bs 8 x accum 8,
# padding to the longest of a random batch, paged AdamW.
TEAM = {
    "quantization": {"load_in_4bit": True, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"},
    "train": {"batch_size": 8, "grad_accum": 8, "gradient_checkpointing": True, "group_by_length": False,
              "optim": "paged_adamw_32bit", "max_steps": 6},
}


def merged(*trees: dict) -> dict:
    out: dict = {}
    for tree in trees:
        for key, value in tree.items():
            out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def lever(batch: int, ckpt: bool, grouped: bool, liger: bool, dropout: float = 0.05, steps: int = 20) -> dict:
    return {"train": {"batch_size": batch, "grad_accum": 1, "gradient_checkpointing": ckpt, "group_by_length": grouped,
                      "use_liger_kernel": liger, "max_steps": steps},
            "lora": {"dropout": dropout}}


def causal_variants(shape: str, team_batch: int) -> list[tuple[str, dict]]:
    """The team's recipe, then one lever at a time (index = --pick number)."""
    model = {"model": {"name_or_path": f"models/{shape}"}}
    team = merged(TEAM, {"train": {"batch_size": team_batch}})
    ladder = [
        ("bf16 LoRA, ckpt, bs16, random", lever(16, True, False, False)),                  # 1
        ("+ length-grouped batches", lever(16, True, True, False)),                       # 2
        ("+ Liger (fused linear-CE)", lever(16, True, True, True)),                       # 3
        ("no ckpt, bs8, grouped, Liger", lever(8, False, True, True)),                    # 4
        ("no ckpt, bs16, grouped, Liger, LoRA dropout 0", lever(16, False, True, True, 0.0)),  # 5
        ("ckpt, bs32, grouped, Liger, LoRA dropout 0", lever(32, True, True, True, 0.0)),  # 6
        ("24GB-card config (ckpt, bs8, grouped, Liger)", lever(8, True, True, True)),      # 7
        ("no ckpt, bs8, grouped, Liger, LoRA dropout 0", lever(8, False, True, True, 0.0)),  # 8
    ]
    return [(f"{shape} team recipe (QLoRA nf4, ckpt, bs{team_batch}x8, random, paged AdamW)", merged(CAUSAL_BASE, model, team))] + [
        (f"{shape} {name}", merged(CAUSAL_BASE, model, tree)) for name, tree in ladder
    ]


def kobart_variants() -> list[tuple[str, dict]]:
    base = {
        "model": {"name_or_path": "models/kobart", "kind": "seq2seq", "dtype": "float32"},
        "data": {"dir": "data"},
        "prompt": {"max_source_length": 512, "max_target_length": 100},
        "train": {"learning_rate": 1e-5, "batch_size": 50, "logging_steps": 1, "eval_strategy": "no",
                  "save_strategy": "no", "device": "cuda", "max_steps": 40, "warmup_ratio": 0.1, "weight_decay": 0.01},
    }
    return [
        ("kobart team recipe (fp16 AMP, bs50, random)", merged(base, {"train": {"precision": "fp16", "group_by_length": False}})),
        ("kobart engine (bf16 AMP, bs50, grouped, fused AdamW)",
         merged(base, {"train": {"precision": "bf16", "group_by_length": True, "optim": "adamw_torch_fused"}})),
    ]


def on_cpu(tree: dict, model: str, data: str, steps: int) -> dict:
    """A variant's CPU dry run: the same plumbing on a tiny model, fp32, no 4-bit, no Liger, no paged
    or fused optimizer (bitsandbytes and Triton need CUDA), ``steps`` optimizer steps."""
    tree = merged(tree, {
        "model": {"name_or_path": model, "dtype": "float32"},
        "data": {"dir": data, "max_train_samples": 64},
        "prompt": {"max_source_length": 256, "max_target_length": 48},
        "train": {"device": "cpu", "precision": "fp32", "optim": "adamw_torch", "use_liger_kernel": False,
                  "max_steps": steps},
    })
    tree.pop("quantization", None)
    return tree


def steady_state(events: list[dict], skip: int, last: int) -> dict:
    """Throughput after ``skip`` warm-up steps, from the engine's own progress events.

    ``tokens_per_s`` in a progress event is cumulative non-pad tokens over time since the ``train``
    phase began, so tokens at each event = rate × elapsed; differences give the steady state.
    """
    start = next((e["ts"] for e in events if e["event"] == "phase" and e.get("name") == "train"), None)
    if start is None:  # failed before training began
        return {}
    points = [(e["step"], e["ts"], (e.get("tokens_per_s") or 0) * (e["ts"] - start), e.get("samples_per_s") or 0)
              for e in events if e["event"] == "progress" and e.get("command") == "train"]
    points = [p for p in points if skip < p[0] <= last]
    if len(points) < 2:
        return {}
    (s0, t0, k0, _), (s1, t1, k1, _) = points[0], points[-1]
    return {"tokens_per_s": (k1 - k0) / (t1 - t0), "s_per_step": (t1 - t0) / (s1 - s0), "steps": s1 - s0}


def run_train(root: Path, slug: str, tree: dict, env: dict[str, str] | None = None) -> tuple[int, list[dict], float, float]:
    """Run ``python -m engine train`` on ``tree`` in ``root/runs/<slug>``; return (exit status, its events,
    wall seconds, NVML peak GiB above the idle baseline)."""
    config = root / "configs" / f"{slug}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    run_dir = root / "runs" / slug
    events_path = run_dir / "events.jsonl"
    events_path.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    t = time.time()
    with NvmlPeak() as peak, open(run_dir / "run.log", "w") as log:
        code = subprocess.run([sys.executable, "-m", "engine", "train", "--config", str(config), "--run-dir", str(run_dir)],
                              cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env or bench_env()).returncode
    events = [json.loads(line) for line in events_path.read_text().splitlines() if line.strip()] if events_path.exists() else []
    return code, events, time.time() - t, peak.peak_gib


def run_variant(root: Path, name: str, tree: dict, index: int, profile: bool = False) -> dict:
    slug = f"bench{index:02d}"
    tree = merged(tree, {"model": {"nickname": slug}})
    run_dir = root / "runs" / slug
    env = bench_env()
    measured_steps = tree["train"]["max_steps"]
    if profile:  # three extra steps after the measured ones, so profiling never slows what is measured
        env["DIALSUM_TORCH_PROFILE"] = str(run_dir / "profile")
        env["DIALSUM_TORCH_PROFILE_START"] = str(measured_steps)
        tree = merged(tree, {"train": {"max_steps": measured_steps + 3}})
    code, events, wall, peak_gib = run_train(root, slug, tree, env)
    failed = next((e for e in events if e["event"] == "failed"), None)
    batch = tree["train"]["batch_size"] * tree["train"].get("grad_accum", 1)
    skip = 2 if tree["train"].get("grad_accum", 1) > 1 else 3
    result = {"name": name, "exit": code, "wall_s": round(wall, 1), "peak_gib": peak_gib,
              "samples_per_step": batch, **steady_state(events, skip, measured_steps)}
    if failed:
        result["failed"] = f"{failed['kind']}: {failed['message'][:160]}"
    if profile and (run_dir / "profile" / "kernels.json").exists():
        result["profile_ms_per_step"] = categorize(run_dir / "profile" / "kernels.json")
    return result


CATEGORIES = (  # first match wins; names of CUDA kernels as the profiler reports them
    ("attention", ("flash", "fmha", "attention", "sdpa", "efficient_attention")),
    ("matmul", ("gemm", "nvjet", "cutlass", "sm90_", "cublas", "matmul", "mm_")),
    ("liger/triton", ("liger", "triton", "_kernel_")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("copy/cast", ("copy", "cast", "memcpy", "memset", "fill")),
    ("elementwise/other", ("",)),
)


def categorize(kernels_json: Path) -> dict:
    """Device time per optimizer step by kernel category (from the engine's TorchProfilerCallback)."""
    data = json.loads(kernels_json.read_text())
    totals = {name: 0.0 for name, _ in CATEGORIES}
    for k in data["kernels"]:
        if not k["self_device_us"] or "CUDA" not in k.get("device_type", ""):
            continue  # CPU-side ops also carry their kernels' device time: count the kernels only
        lowered = k["name"].lower()
        cat = next(name for name, keys in CATEGORIES if any(key in lowered for key in keys))
        totals[cat] += k["self_device_us"]
    return {cat: round(us / 1000 / data["steps"], 1) for cat, us in totals.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench")
    parser.add_argument("--only", default="llama3b,qwen3-4b,kobart", help="comma list of shapes")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--pick", default="", help="variant indices per shape, e.g. 'llama3b:0,3;qwen3-4b:0,5'")
    parser.add_argument("--profile", default="", help="variant names containing this text are profiled (steps 5-7)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--model", help="CPU run: a (tiny) causal model directory, standing in for every causal shape")
    parser.add_argument("--seq2seq-model", help="CPU run: a (tiny) seq2seq model directory, standing in for kobart")
    parser.add_argument("--data", help="CPU run: a data directory with train.csv/dev.csv")
    parser.add_argument("--steps", type=int, default=4, help="CPU run: optimizer steps per variant")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    shapes = args.only.split(",")
    cpu = args.device == "cpu"
    if cpu and not (args.data and (args.seq2seq_model if "kobart" in shapes else True)
                    and (args.model if set(shapes) - {"kobart"} else True)):
        parser.error("--device cpu needs --data DIR, --model DIR for causal shapes and --seq2seq-model DIR for kobart")
    variants: list[tuple[str, dict, str]] = []
    for shape in shapes:
        chosen = kobart_variants() if shape == "kobart" else causal_variants(shape, 8 if shape == "llama3b" else 6)
        picks = dict(item.split(":") for item in args.pick.split(";") if item)
        if shape in picks:
            chosen = [chosen[int(i)] for i in picks[shape].split(",")]
        if cpu:
            model = args.seq2seq_model if shape == "kobart" else args.model
            chosen = [(f"{name} [cpu dry run]", on_cpu(tree, str(Path(model).resolve()), str(Path(args.data).resolve()),
                                                      args.steps)) for name, tree in chosen]
        variants += [(n, t, shape) for n, t in chosen]
    results = []
    for i, (name, tree, shape) in enumerate(variants):
        res = run_variant(root, name, tree, i, profile=bool(args.profile) and args.profile in name)
        n = None if cpu else parameters(root / "models" / shape)  # MFU is against the H100's peak: GPU runs only
        if res.get("tokens_per_s"):
            res["mfu_pct"] = round(100 * mfu(n, res["tokens_per_s"]), 1) if n and shape != "kobart" else None
            res["samples_per_s"] = round(res["samples_per_step"] / res["s_per_step"], 1)
            res["tokens_per_s"] = round(res["tokens_per_s"])
            res["s_per_step"] = round(res["s_per_step"], 3)
        results.append(res)
        print(json.dumps(res, ensure_ascii=False), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"\n{'variant':74} {'tok/s':>7} {'MFU%':>5} {'s/step':>7} {'samp/s':>7} {'peakGiB':>7}")
    for r in results:
        print(f"{r['name'][:74]:74} {r.get('tokens_per_s', '-'):>7} {r.get('mfu_pct') or '-':>5} "
              f"{r.get('s_per_step', '-'):>7} {r.get('samples_per_s', '-'):>7} {r['peak_gib']:>7}"
              + (f"  FAILED {r['failed']}" if r.get("failed") else ""))
    return 0 if all(r["exit"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
