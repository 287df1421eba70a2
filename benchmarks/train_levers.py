"""Provides the issue-16 training-levers benchmark: the shipped 3B LoRA config (bs 16, no
checkpointing, length-grouped, Liger, LoRA dropout 0) eager, then with each lever of
``engine.recipes.speed`` (``train.fused_lora``, ``train.compile`` with bucketed lengths), each in its
own ``python -m engine train`` process with the same seed and data order. Prints non-pad tokens/s
and MFU over the steady window, the warm-up excess over eager (compilation), peak memory, and the
largest relative per-step loss difference against the variant's eager reference over all steps.

    python benchmarks/common.py --root /tmp/bench --shapes llama3b      # once: data + random-init model
    python benchmarks/train_levers.py --root /tmp/bench --steps 50
    python benchmarks/train_levers.py --root /tmp/bench --variants 24gb,24gb+levers
    python benchmarks/train_levers.py --device cpu --model DIR --data DIR --steps 4   # the CPU test's path
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import mfu, parameters  # noqa: E402
from train_throughput import CAUSAL_BASE, lever, merged, on_cpu, run_train, steady_state  # noqa: E402

# Padded lengths up to 1,224 tokens: 20 buckets. A batch pays ~32 pad tokens per sample on average
# over its longest (~6% of the 3B step's ~490 non-pad tokens per sample); --bucket 16 pays ~8.
BUCKET = 64
FUSED = {"train": {"fused_lora": True}}
COMPILED = {"train": {"compile": True, "pad_to_multiple_of": BUCKET}}
EB64 = {"train": {"batch_size": 16, "grad_accum": 4}}
REBALANCE = {"train": {"batch_rebalance": True}}
# name -> (config delta over its reference, the reference whose losses it must match). The 24 GB
# card's config (checkpointing, bs 8) is a different batch, so its own eager run is its reference.
VARIANTS: dict[str, tuple[dict, str]] = {
    "eager": ({}, "eager"),
    "eager+pad64": ({"train": {"pad_to_multiple_of": BUCKET}}, "eager"),
    "fused": (FUSED, "eager"),
    "compile": (COMPILED, "eager"),
    "compile+fused": (merged(COMPILED, FUSED), "eager"),
    "24gb": ({}, "24gb"),
    "24gb+levers": (merged(COMPILED, FUSED), "24gb"),
    # The shipped effective batch (64 = bs 16 x grad_accum 4), then fewer, larger micro-batches at the
    # same 64 samples per step: transformers' batch_rebalance sizes each by its padded cost. These see
    # other samples per step than grouped batches do, so their losses are compared as running means.
    "eager-eb64": (EB64, "eager-eb64"),
    "levers-eb64": (merged(EB64, COMPILED, FUSED), "eager-eb64"),
    "rebalance-eb64": (merged(EB64, COMPILED, FUSED, REBALANCE), "eager-eb64"),
    "rebalance32-eb64": (merged(EB64, COMPILED, FUSED, REBALANCE, {"train": {"batch_size": 32, "grad_accum": 2}}),
                         "eager-eb64"),
}
SHAPES_24GB = {"24gb", "24gb+levers"}


def variant_tree(name: str, base: dict, steps: int, batch: int, bucket: int = BUCKET) -> dict:
    """The full config of one variant: the shipped H100 shape, or the 24 GB card's (bs/2, checkpointing);
    a variant that pads to buckets uses ``bucket``."""
    delta, _ = VARIANTS[name]
    if name in SHAPES_24GB:
        shape = lever(max(batch // 2, 1), True, True, base["train"]["use_liger_kernel"], 0.0, steps)
    else:
        shape = lever(batch, False, True, base["train"]["use_liger_kernel"], 0.0, steps)
    tree = merged(base, shape, delta, {"model": {"nickname": name.replace("+", "-")}})
    if tree["train"].get("pad_to_multiple_of"):
        tree["train"]["pad_to_multiple_of"] = bucket
    return tree


def step_losses(events: list[dict]) -> dict[int, float]:
    """Training loss per optimizer step from the run's ``train_log`` events (logging_steps 1)."""
    return {e["step"]: e["loss"] for e in events if e["event"] == "train_log" and e.get("loss") is not None}


def max_relative_difference(losses: dict[int, float], reference: dict[int, float]) -> tuple[float | None, int]:
    """Largest |loss - reference| / |reference| over the steps both runs logged, and how many steps that is."""
    common = sorted(set(losses) & set(reference))
    if not common:
        return None, 0
    return max(abs(losses[s] - reference[s]) / max(abs(reference[s]), 1e-12) for s in common), len(common)


def running_mean_difference(losses: dict[int, float], reference: dict[int, float], window: int = 10) -> float | None:
    """Largest relative difference of the ``window``-step running means of two loss curves.

    For runs that see different samples per step (rebalanced vs grouped batches), per-step losses
    differ by the batches' content; the running mean is what must match within noise.
    """
    common = sorted(set(losses) & set(reference))
    if len(common) < window:
        return None
    diffs = []
    for end in range(window, len(common) + 1):
        steps = common[end - window : end]
        mine, theirs = (sum(curve[s] for s in steps) / window for curve in (losses, reference))
        diffs.append(abs(mine - theirs) / max(abs(theirs), 1e-12))
    return max(diffs)


def warmup_seconds(events: list[dict], skip: int) -> float | None:
    """Seconds from the ``train`` phase to the end of step ``skip``: warm-up, including any compilation."""
    start = next((e["ts"] for e in events if e["event"] == "phase" and e.get("name") == "train"), None)
    end = next((e["ts"] for e in events if e["event"] == "progress" and e.get("step") == skip), None)
    return None if start is None or end is None else end - start


def measure(root: Path, name: str, tree: dict, skip: int, params: int | None) -> dict:
    """Run one variant; its figures plus its per-step losses (key ``losses``)."""
    code, events, wall, peak_gib = run_train(root, f"levers-{name.replace('+', '-')}", tree)
    steps = tree["train"]["max_steps"]
    result: dict = {"variant": name, "exit": code, "wall_s": round(wall, 1), "peak_gib": peak_gib,
                    "warmup_s": warmup_seconds(events, skip), **steady_state(events, skip, steps),
                    "losses": step_losses(events)}
    failed = next((e for e in events if e["event"] == "failed"), None)
    if failed:
        result["failed"] = f"{failed['kind']}: {failed['message'][:200]}"
    if result.get("tokens_per_s") and params:
        result["mfu_pct"] = round(100 * mfu(params, result["tokens_per_s"]), 1)
    return result


def compare(results: list[dict]) -> None:
    """Fill in each variant's loss difference and warm-up excess against its reference run."""
    by_name = {r["variant"]: r for r in results}
    for r in results:
        ref = by_name.get(VARIANTS[r["variant"]][1])
        if ref is None or ref is r:
            continue
        r["loss_max_rel_diff"], r["loss_steps_compared"] = max_relative_difference(r["losses"], ref["losses"])
        r["loss_mean10_rel_diff"] = running_mean_difference(r["losses"], ref["losses"])
        if r.get("warmup_s") is not None and ref.get("warmup_s") is not None:
            r["compile_s"] = round(r["warmup_s"] - ref["warmup_s"], 1)


def cpu_base(model: str, data: str) -> dict:
    """The CPU dry run's config (train_throughput's), with compilation traced by aot_eager: inductor's
    C++ build would dominate a test. ``variant_tree`` sets the steps."""
    return on_cpu(merged(CAUSAL_BASE, {"train": {"compile_backend": "aot_eager"}}), model, data, steps=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench")
    parser.add_argument("--shape", default="llama3b", help="models/<shape> under --root (GPU runs)")
    parser.add_argument("--variants", default="eager,fused,compile,compile+fused",
                        help=f"comma list of {', '.join(VARIANTS)}; a reference missing from the list is added first")
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per run (losses compared over all)")
    parser.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the throughput window")
    parser.add_argument("--batch", type=int, default=16, help="per-device batch of the H100 shape (24gb: half)")
    parser.add_argument("--bucket", type=int, default=BUCKET,
                        help="pad_to_multiple_of of the bucketed variants (smaller: less padding, maybe more recompiles)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--model", help="CPU run: a (tiny) causal model directory")
    parser.add_argument("--data", help="CPU run: a data directory with train.csv/dev.csv")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.device == "cpu" and not (args.model and args.data):
        parser.error("--device cpu needs --model DIR and --data DIR (a tiny model and its data)")
    names: list[str] = []
    for name in args.variants.split(","):
        for needed in (VARIANTS[name][1], name):  # the reference runs before the variants compared to it
            if needed not in names:
                names.append(needed)
    if args.device == "cpu":
        base, params = cpu_base(str(Path(args.model).resolve()), str(Path(args.data).resolve())), None
    else:
        # The shipped H100 config's kernels: Liger (under compile only its fused linear-CE, see engine/recipes).
        base = merged(CAUSAL_BASE, {"model": {"name_or_path": f"models/{args.shape}"}, "train": {"use_liger_kernel": True}})
        params = parameters(root / "models" / args.shape)
    results = []
    for name in names:
        result = measure(root, name, variant_tree(name, base, args.steps, args.batch, args.bucket), args.skip, params)
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "losses"}, ensure_ascii=False), flush=True)
    compare(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"\n{'variant':18} {'tok/s':>7} {'MFU%':>5} {'s/step':>7} {'warmup s':>8} {'compile s':>9} {'peak GiB':>8} "
          f"{'loss max rel diff (steps)':>26} {'10-step mean diff':>17}")
    for r in results:
        diff, mean10 = r.get("loss_max_rel_diff"), r.get("loss_mean10_rel_diff")
        loss = f"{diff:.2e} ({r['loss_steps_compared']})" if diff is not None else "reference"
        print(f"{r['variant']:18} {round(r.get('tokens_per_s') or 0):>7} {r.get('mfu_pct') or '-':>5} "
              f"{round(r.get('s_per_step') or 0, 3):>7} {round(r.get('warmup_s') or 0, 1):>8} {r.get('compile_s', '-'):>9} "
              f"{r['peak_gib']:>8} {loss:>26} {f'{mean10:.2e}' if mean10 is not None else '-':>17}"
              + (f"  FAILED {r['failed']}" if r.get("failed") else ""))
    return 0 if all(r["exit"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
