"""Provides the multi-GPU benchmark: the shipped H100 LoRA config (configs/llama-3.2-korean-3b-h100.yaml:
bs 16, no checkpointing, length-grouped, Liger, LoRA dropout 0) trained by the engine on 1 GPU, with
DDP on N GPUs through the worker's own `accelerate launch` command, and as N independent single-GPU
runs side by side. Prints steady-state non-pad tokens/s, scaling efficiency and peak memory per GPU.

    python benchmarks/common.py --root /tmp/bench                  # once: data + random-init models
    python benchmarks/multi_gpu.py --root /tmp/bench --scenarios 1,ddp2,side2
    python benchmarks/multi_gpu.py --root /tmp/bench --scenarios 1,ddp2,ddp4 --steps 20
    python benchmarks/multi_gpu.py --root /tmp/bench --scenarios ddp2 --qlora --batch 8 --ckpt

``--cpu`` runs the same code path with gloo ranks on the CPU on a given tiny model and data set
(what tests/benchmarks/test_multi_gpu.py does, so the script cannot rot without a GPU).
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
from dialsum_tui.manager.worker.launching import accelerate_argv  # noqa: E402  (the exact launch the worker uses)

from common import ROOT, NvmlPeak, bench_env, make_data, make_model, mfu, parameters  # noqa: E402
from train_throughput import merged, steady_state  # noqa: E402

SHIPPED = ROOT / "configs" / "llama-3.2-korean-3b-h100.yaml"
QLORA = {"quantization": {"load_in_4bit": True, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"}}
# On the CPU: fp32, no Triton (Liger) and no fused CUDA optimizer; everything else as shipped.
CPU = {"model": {"dtype": "float32"},
       "train": {"device": "cpu", "precision": "fp32", "use_liger_kernel": False, "optim": "adamw_torch"}}


def write_config(root: Path, slug: str, model: Path, data: Path, args: argparse.Namespace, steps: int,
                 rebalance: bool = False) -> Path:
    """The shipped H100 config on ``model``: one optimizer step per batch (grad_accum 1, so every
    step all-reduces: the hardest case for DDP), no evaluation or saving, a progress event per step;
    ``rebalance``: ``train.batch_rebalance`` (every rank's micro-batch of a step costs the same)."""
    shipped = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    train = {"max_steps": steps, "grad_accum": args.grad_accum, "logging_steps": 1, "eval_strategy": "no",
             "save_strategy": "no", "device": "cuda", "batch_rebalance": rebalance}
    if args.batch:
        train["batch_size"] = args.batch
    if args.ckpt:
        train["gradient_checkpointing"] = True
    tree = merged(shipped, {"model": {"name_or_path": str(model), "nickname": slug}, "data": {"dir": str(data)},
                            "train": train},
                  QLORA if args.qlora else {}, CPU if args.cpu else {})
    path = root / "configs" / f"{slug}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def start(root: Path, slug: str, config: Path, gpus: str, cpu: bool, ddp: str) -> tuple[subprocess.Popen, Path]:
    """Start one engine train on ``gpus`` ("0" or "0,1"), through accelerate when more than one
    (on the CPU: as many gloo ranks as ``gpus`` names devices); ``ddp`` (JSON) sets the Trainer's
    ddp_* knobs through benchmarks/ddp_variant.py."""
    run_dir = root / "runs" / slug
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "events.jsonl").unlink(missing_ok=True)
    engine = [sys.executable, str(Path(__file__).with_name("ddp_variant.py"))] if ddp else [sys.executable, "-m", "engine"]
    n = len(gpus.split(","))
    argv = (accelerate_argv(engine, n) if n > 1 else engine) + ["train", "--config", str(config), "--run-dir", str(run_dir)]
    log = open(run_dir / "run.log", "w")  # noqa: SIM115  (closed with the process)
    env = bench_env() | {"CUDA_VISIBLE_DEVICES": "" if cpu else gpus, "DIALSUM_BENCH_DDP": ddp}
    proc = subprocess.Popen(argv, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc, run_dir


def result(name: str, proc: subprocess.Popen, run_dir: Path, t0: float, skip: int, steps: int) -> dict:
    """One run's steady state over steps (skip, steps] from its events, and its failure if any."""
    events_path = run_dir / "events.jsonl"
    lines = events_path.read_text().splitlines() if events_path.exists() else []
    events = [json.loads(line) for line in lines if line.strip()]
    failed = next((e for e in events if e["event"] == "failed"), None)
    started = next((e for e in events if e["event"] == "started"), {})
    out = {"name": name, "exit": proc.returncode, "wall_s": round(time.time() - t0, 1),
           "world_size": started.get("world_size", 1), **steady_state(events, skip, steps)}
    if failed:
        out["failed"] = f"rank {failed.get('rank', 0)} {failed['kind']}: {failed['message'][:160]}"
    elif proc.returncode:
        out["failed"] = (run_dir / "run.log").read_text(errors="replace")[-600:]
    return out


def scenario(root: Path, name: str, runs: list[tuple[str, Path, str]], args: argparse.Namespace,
             skip: int, steps: int) -> list[dict]:
    """Run ``runs`` ((slug, config, gpus)) at the same time; one result each, peak memory per GPU."""
    t0 = time.time()
    with NvmlPeak(index=None) as peak:
        started = [(slug, *start(root, slug, config, gpus, args.cpu, args.ddp)) for slug, config, gpus in runs]
        for _slug, proc, _dir in started:
            proc.wait()
    return [result(f"{name}/{slug}", proc, run_dir, t0, skip, steps) | {"peak_gib": peak.peaks_gib}
            for slug, proc, run_dir in started]


def plan(spec: str) -> list[tuple[str, list[str]]]:
    """``"1,ddp2,side2,ddp4,ddp4+rb"`` → scenarios, each a list of device strings (one per run);
    ``+rb``: the same with ``train.batch_rebalance``."""
    out = []
    for entry in spec.split(","):
        item = entry.removesuffix("+rb")
        if item != entry:
            if not (item.startswith("ddp") and item[3:].isdigit()):
                raise SystemExit(f"--scenarios: {entry!r}: +rb applies to ddpN scenarios (e.g. ddp4+rb)")
            out.append((entry, [",".join(str(i) for i in range(int(item[3:])))]))
        elif item == "1":
            out.append(("1gpu", ["0"]))
        elif item.startswith("ddp") and item[3:].isdigit():
            out.append((item, [",".join(str(i) for i in range(int(item[3:])))]))
        elif item.startswith("side") and item[4:].isdigit():
            out.append((item, [str(i) for i in range(int(item[4:]))]))
        else:
            raise SystemExit(f"--scenarios: unknown scenario {item!r}; use 1, ddpN or sideN (e.g. 1,ddp2,side2)")
    return out


def summarize(rows: list[dict], n_params: int | None) -> dict:
    """Efficiency of each scenario against N × the single-GPU rate."""
    single = next((r.get("tokens_per_s") for r in rows if r["name"].startswith("1gpu/")), None)
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r["name"].split("/")[0], []).append(r.get("tokens_per_s") or 0.0)
    out: dict = {"single_gpu_tokens_per_s": round(single) if single else None}
    for name, rates in by.items():
        gpus = int(name.removesuffix("+rb")[3:]) if name.startswith("ddp") else len(rates)
        total = sum(rates)
        out[name] = {"tokens_per_s": round(total), "gpus": gpus,
                     "efficiency": round(total / (gpus * single), 3) if single else None,
                     "mfu_pct_per_gpu": round(100 * mfu(n_params, total / gpus), 1) if n_params else None}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, type=Path, help="bench directory (data/, models/ from common.py)")
    parser.add_argument("--shape", default="llama3b", help="model shape from benchmarks/common.py SHAPES")
    parser.add_argument("--scenarios", default="1,ddp2,side2", help="comma list of 1, ddpN (DDP on GPUs 0..N-1), "
                        "sideN (N single-GPU runs side by side)")
    parser.add_argument("--batch", type=int, help="per-GPU batch size (default: the shipped config's 16)")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--ckpt", action="store_true", help="gradient checkpointing on")
    parser.add_argument("--qlora", action="store_true", help="4-bit nf4 base (bitsandbytes), each rank's on its GPU")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--skip", type=int, default=3, help="warm-up steps left out of the steady state")
    parser.add_argument("--ddp", default="", help='DDP knobs as JSON, e.g. \'{"ddp_find_unused_parameters": false, '
                        '"ddp_static_graph": true, "ddp_bucket_cap_mb": 100}\' (see benchmarks/ddp_variant.py)')
    parser.add_argument("--match-samples", action="store_true",
                        help="ddpN runs steps/N steps (skip/N warm-up): the same batches as the single GPU")
    parser.add_argument("--tag", default="", help="suffix of the run directories (several invocations, one root)")
    parser.add_argument("--cpu", action="store_true", help="CPU plumbing check: gloo ranks, needs --model and --data")
    parser.add_argument("--model", type=Path, help="model directory (default: the shape built by common.py)")
    parser.add_argument("--data", type=Path, help="data directory (default: ROOT/data built by common.py)")
    parser.add_argument("--out", type=Path, help="also write rows and summary as JSON here")
    args = parser.parse_args()

    scenarios = plan(args.scenarios)
    root = args.root.resolve()
    if args.cpu:
        if not (args.model and args.data):
            parser.error("--cpu needs --model DIR and --data DIR (e.g. from `python -m engine tiny-model`)")
    else:
        import torch

        need = max(len(",".join(gpus).split(",")) for _name, gpus in scenarios)
        if torch.cuda.device_count() < need:
            print(f"--scenarios {args.scenarios} needs {need} CUDA GPUs, found {torch.cuda.device_count()}: "
                  "run it on a host with that many, or pass --cpu for the CPU plumbing check", file=sys.stderr)
            return 2
    data = (args.data or make_data(root)).resolve()
    model = (args.model or make_model(root, args.shape, data)).resolve()
    slug = f"mg-{args.shape}{'-qlora' if args.qlora else ''}{args.tag}"
    rows: list[dict] = []
    for name, gpus in scenarios:
        # --match-samples: DDP on N GPUs takes N batches per step, so steps/N steps (and skip/N
        # warm-up steps) cover exactly the batches the single GPU covers: length-grouped batches
        # come longest-first within each mega-batch, and a short window would otherwise compare
        # long batches on one GPU against shorter ones under DDP.
        ranks = len(gpus[0].split(",")) if args.match_samples else 1
        steps, skip = args.steps // ranks, args.skip // ranks
        config = write_config(root, f"{slug}-{name.replace('+', '-')}", model, data, args, steps,
                              rebalance=name.endswith("+rb"))
        runs = [(f"{slug}-{name.replace('+', '-')}-{i}", config, g) for i, g in enumerate(gpus)]
        rows += scenario(root, name, runs, args, skip, steps)
        print(json.dumps(rows[-1]), flush=True)
    bench_json = model / "bench_model.json"
    summary = summarize(rows, parameters(model) if bench_json.exists() and not args.qlora else None)
    for row in rows:
        print(json.dumps(row))
    print(json.dumps(summary))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    print(f"\n{slug}: | scenario | tokens/s | s/step | peak GiB per GPU | exit |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r.get('tokens_per_s', 0):.0f} | {r.get('s_per_step', 0):.3f} | {r['peak_gib']} | "
              f"{r['exit']} |" + (f" {r['failed']}" if r.get("failed") else ""))
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
