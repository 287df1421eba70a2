"""Provides where a batched greedy pass over the test set spends its time: the prompt pass
(prefill) against the token-by-token decoding, and which kernels fill each — the measurement the
issue-16 inference goal (499 dialogues ≤ 5 s) needs before another lever is built.

    python benchmarks/common.py --root /tmp/bench --shapes llama3b
    python benchmarks/decode_profile.py --root /tmp/bench --shape llama3b --batch-size 256
    python benchmarks/decode_profile.py --root /tmp/bench --shape llama3b --batch-size 64 --num-beams 4 --limit 128

For each length-sorted batch of ``engine.inference.generate_summaries`` (same tokenization, same
left padding): one forward over the prompts that keeps only the last position's logits (what
``generate`` computes first), then ``generate`` with 1 and with ``--new-tokens`` new tokens; the
decoding cost per token is the difference over the extra tokens. Then one ``generate`` of
``--profile-tokens`` tokens on the longest batch under ``torch.profiler``: the top kernels by GPU
time and how busy the GPU was while the host ran the loop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_speed import load  # noqa: E402


def batches(tokenizer, sources: list[str], kind: str, batch_size: int, max_source: int, device: str) -> list[dict]:
    """The batches ``generate_summaries`` would make (longest first, left-padded for causal models)."""
    add_special = kind != "causal"
    tokenizer.truncation_side = "left"
    if kind == "causal":
        tokenizer.padding_side = "left"
    lengths = [len(ids) for ids in tokenizer(sources, add_special_tokens=add_special)["input_ids"]]
    order = sorted(range(len(sources)), key=lambda i: -lengths[i])
    return [tokenizer([sources[i] for i in order[s : s + batch_size]], padding=True, truncation=True,
                      max_length=max_source, add_special_tokens=add_special, return_tensors="pt").to(device)
            for s in range(0, len(order), batch_size)]


def seconds(fn, sync, repeats: int = 1) -> float:
    """The best of ``repeats`` timings: noise (another process, a clock tick) only ever adds time."""
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def profile_generate(model, batch, kwargs: dict, tokens: int, device: str, top: int) -> dict:
    """One ``generate`` of ``tokens`` tokens under the profiler: top kernels, GPU busy share of the wall time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof, torch.inference_mode():
        start = time.perf_counter()
        model.generate(**batch, **kwargs | {"max_new_tokens": tokens, "min_new_tokens": tokens})
        if device == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    on_gpu = device == "cuda"
    # Self time on the device (kernels) or on the host (CPU ops) in microseconds.
    self_us = (lambda e: e.self_device_time_total) if on_gpu else (lambda e: e.self_cpu_time_total)
    ranked = sorted((e for e in events if self_us(e) > 0), key=self_us, reverse=True)
    busy = sum(self_us(e) for e in ranked) / 1e6 if on_gpu else None
    return {
        "tokens": tokens, "wall_s": round(wall, 4),
        "gpu_busy_s": round(busy, 4) if busy is not None else None,
        "gpu_busy_share": round(busy / wall, 3) if busy is not None else None,
        "kernel_launches": sum(e.count for e in events if on_gpu and e.self_device_time_total > 0) or None,
        "top": [{"name": e.key[:90], "calls": e.count, "ms": round(self_us(e) / 1e3, 2),
                 "share": round(self_us(e) / max(1, sum(self_us(x) for x in ranked)), 3)} for e in ranked[:top]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench")
    parser.add_argument("--shape", default="llama3b", choices=["llama3b", "qwen3-4b", "kobart"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-beams", type=int, default=1,
                        help="beam search: the prompt pass then runs on batch × beams rows, as in generate()")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--profile-tokens", type=int, default=16)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3, help="time each pass this many times and keep the best")
    parser.add_argument("--max-source", type=int, default=1024)
    parser.add_argument("--limit", type=int, help="only the first N test dialogues (the CPU check)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out")
    args = parser.parse_args()

    import torch

    model, tokenizer, sources, kind = load(Path(args.root), args.shape, args.model, args.data, args.device)
    sources = sources[: args.limit] if args.limit else sources
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    kwargs = {"do_sample": False, "num_beams": args.num_beams, "pad_token_id": tokenizer.pad_token_id}
    # transformers expands a causal batch to batch × beams rows before the prompt pass (an encoder
    # runs once, before the expansion): time the prompt pass the way generate() pays it.
    expand = args.num_beams if kind == "causal" else 1
    groups = batches(tokenizer, sources, kind, args.batch_size, args.max_source, args.device)

    def generate(batch, tokens: int):
        with torch.inference_mode():
            return model.generate(**batch, **kwargs | {"max_new_tokens": tokens, "min_new_tokens": tokens})

    def prefill(batch):
        batch = {key: value.repeat_interleave(expand, dim=0) for key, value in batch.items()}
        with torch.inference_mode():
            if kind == "causal":
                return model(**batch, logits_to_keep=1)
            return model.get_encoder()(**batch)

    generate(groups[-1], 2)  # warm-up: first-call set-up (allocator, kernels' first launches)
    rows = []
    for batch in groups:
        rows_n, width = batch["input_ids"].shape
        t_prefill = seconds(lambda b=batch: prefill(b), sync, args.repeats)
        t_one = seconds(lambda b=batch: generate(b, 1), sync, args.repeats)
        t_all = seconds(lambda b=batch: generate(b, args.new_tokens), sync, args.repeats)
        rows.append({"rows": rows_n, "prefill_rows": rows_n * expand, "width": width,
                     "real_tokens": int(batch["attention_mask"].sum()),
                     "prefill_s": round(t_prefill, 4), "generate_1_s": round(t_one, 4),
                     f"generate_{args.new_tokens}_s": round(t_all, 4),
                     "decode_ms_per_token": round((t_all - t_one) / max(1, args.new_tokens - 1) * 1e3, 2)})
        print(json.dumps(rows[-1]), flush=True)
    total = {key: round(sum(r[key] for r in rows), 3) for key in ("prefill_s", "generate_1_s", f"generate_{args.new_tokens}_s")}
    profiled = profile_generate(model, groups[0], kwargs, args.profile_tokens, args.device, args.top)
    result = {"shape": args.shape, "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
              "dialogues": len(sources), "batch_size": args.batch_size, "num_beams": args.num_beams,
              "new_tokens": args.new_tokens,
              "batches": rows, "total": total, "profile_longest_batch": profiled}
    print(json.dumps({"total": total}))
    print(f"\nprofile of {args.profile_tokens} tokens on the longest batch: wall {profiled['wall_s']} s, "
          f"GPU busy {profiled['gpu_busy_s']} s ({profiled['gpu_busy_share']}), launches {profiled['kernel_launches']}")
    for k in profiled["top"]:
        print(f"  {k['ms']:>10} ms {k['share']:>6} {k['calls']:>7}×  {k['name']}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
