"""Provides the inference benchmark: the engine's batched, length-sorted generation
(``engine.inference.generate_summaries``) against a one-by-one ``generate`` loop and the hand-off
team's batch-of-4-in-file-order setting, on the 499-dialogue test set, greedy and beam 4.

    python benchmarks/common.py --root /tmp/bench
    python benchmarks/inference_speed.py --root /tmp/bench --shape llama3b
    python benchmarks/inference_speed.py --root /tmp/bench --shape llama3b --fast --batch-sizes 256 \
        --fast-variants eager-sdpa,static-gqa,static-sdpa     # issue 16: GQA decode attention vs stock SDPA
    python benchmarks/inference_speed.py --root /tmp/bench --shape llama3b --fast --batch-sizes 256 \
        --fast-variants eager-sdpa --no-repeat-ngrams 0,3     # what the configs' n-gram ban costs

Random-init weights almost never emit EOS, so every dialogue generates exactly ``--new-tokens``
tokens: the work per variant is identical and known. Slow baselines run on a prefix of the set and
are extrapolated to 499 (the table says so).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import NvmlPeak  # noqa: E402

COLUMNS = {"s_per_dialogue": "s/dialogue", "test_set_s": "test set s", "peak_gib": "peak GiB",
           "identical_to_reference": "identical"}


def report(rows: list[dict], out: str | None, title: str, columns: list[str]) -> None:
    """Write ``rows`` as JSON to ``out`` (if given) and print them as a table of ``columns``."""
    if out:
        Path(out).write_text(json.dumps(rows, indent=2))
    print(f"\n{title}")
    print(f"{'variant':72} " + " ".join(f"{COLUMNS[c]:>10}" for c in columns))
    for r in rows:
        print(f"{r['variant'][:72]:72} " + " ".join(f"{r.get(c) if r.get(c) is not None else '-':>10}" for c in columns))


def load(root: Path, shape: str, model_dir: Path | None = None, data: Path | None = None, device: str = "cuda"):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from engine.config import config_from_dict
    from engine.data import load_split
    from engine.prompts import model_inputs
    from engine.runtime import configure_cuda_kernels

    # The kernel choices the engine's own loaders make (cuDNN attention off): without them the first
    # pass of a fresh process paid cuDNN's planning for every new length (~6 s of the 3B greedy pass).
    configure_cuda_kernels()
    kind = "seq2seq" if shape == "kobart" else "causal"
    model_dir = model_dir or root / "models" / shape
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    model = auto.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa").to(device).eval()
    cfg = config_from_dict({"model": {"name_or_path": str(model_dir), "nickname": shape, "kind": kind}})
    samples, _ = load_split(data or root / "data", "test")
    return model, tokenizer, model_inputs(samples, cfg.prompt, kind, tokenizer), kind


def timed(fn) -> tuple[float, object]:
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


FAST_VARIANTS = {"eager-sdpa": (None, "sdpa"), "eager-gqa": (None, "gqa"), "static-sdpa": ("static", "sdpa"),
                 "static-gqa": ("static", "gqa")}


def fresh_compilation(model) -> None:
    """Forget the compiled decoding step, so the next static pass compiles for the attention now set
    (its 1st-pass time then includes its own compilation) and the old CUDA graphs' memory is freed."""
    import gc

    import torch

    if hasattr(model, "_compiled_call"):
        del model._compiled_call
    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def fast(args, model, tok, sources, kind, gen, record, rows, max_src) -> int:
    """Each of ``--fast-variants`` (cache × attention) × ``--no-repeat-ngrams`` at each batch size,
    beams as given. A static variant runs twice: the first pass includes compilation, the second is
    what a warm process pays. Every pass's outputs are compared with the first variant's at the
    same batch size and beams (the reference; by default the eager path with transformers' SDPA)."""
    from engine.attention import use_attention
    from engine.inference import generate_summaries

    # A "no-repeat N" row's "identical" counts the summaries the ban left unchanged: fewer than all
    # shows it changed some; all means it never overruled the search, though it ran every step.
    ngrams = [int(n) for n in args.no_repeat_ngrams.split(",")]
    variants = [FAST_VARIANTS[v] + (v + (f" no-repeat {n}" if n else ""), n)
                for v in args.fast_variants.split(",") for n in ngrams]
    everything = sources
    attention = model.config._attn_implementation
    for num_beams in [int(b) for b in args.fast_beams.split(",")]:
        limit = args.beam_limit if num_beams > 1 and args.beam_limit else args.limit
        # File order: a fair sample of lengths; the figures are extrapolated to the whole set.
        sources = everything[:limit] if limit else everything
        suffix = f" (first {len(sources)}, extrapolated)" if limit else ""
        sizes = [int(b) for b in (args.batch_sizes if num_beams == 1 else args.beam_batch_sizes).split(",")]
        for bs in sizes:
            reference: list[str] | None = None
            for cache, choice, label, ngram in variants:
                if use_attention(model, choice) != attention:
                    attention = model.config._attn_implementation
                    fresh_compilation(model)
                config = gen(num_beams, ngram, cache_implementation=cache)
                for attempt in ("1st pass, compiles", "2nd pass") if cache else ("",):
                    try:
                        with NvmlPeak() as peak:
                            seconds, out = timed(lambda: generate_summaries(model, tok, sources, kind, config, max_src, bs))
                    except Exception as err:  # OOM or a compile failure: recorded, the next variant runs
                        print(json.dumps({"variant": f"{label} bs {bs} beams {num_beams}", "error": repr(err)[:400]}), flush=True)
                        break
                    name = f"{label} bs {bs}, beams {num_beams}" + (f", {attempt}" if attempt else "") + suffix
                    record(name, seconds, len(sources), peak)
                    if reference is None:
                        reference = out
                    else:
                        same = sum(a == b for a, b in zip(reference, out, strict=True))
                        rows[-1]["identical_to_reference"] = f"{same}/{len(sources)}"
                        print(json.dumps({"identical_to_reference": rows[-1]["identical_to_reference"]}), flush=True)
            model._previous_max_cache_length = -1  # the next batch size starts from its own longest batch
    report(rows, args.out, f"{args.shape}: {len(everything)} dialogues, {args.new_tokens} new tokens each; "
           "reference: the first variant", ["test_set_s", "peak_gib", "identical_to_reference"])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench")
    parser.add_argument("--shape", default="llama3b", choices=["llama3b", "qwen3-4b", "kobart"])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--one-by-one", type=int, default=16, help="dialogues for the one-by-one loop (extrapolated)")
    parser.add_argument("--team-prefix", type=int, default=48, help="dialogues for the team's bs-4 loop (extrapolated)")
    parser.add_argument("--batch-sizes", default="128,256,512")
    parser.add_argument("--beam-batch-sizes", default="64,128")
    parser.add_argument("--static", action="store_true", help="also try the static KV cache (compiled decoding)")
    parser.add_argument("--fast", action="store_true",
                        help="only the engine's eager batch vs static cache + compiled decoding (issue 16): "
                             "--batch-sizes are tried with both, outputs compared with the eager ones")
    parser.add_argument("--fast-beams", default="1", help="with --fast: beam counts to try, e.g. 1,4")
    parser.add_argument("--fast-variants", default="eager-sdpa,static-sdpa",
                        help="with --fast: cache-attention pairs, the first is the reference the others' outputs are "
                             f"compared with; any of {', '.join(FAST_VARIANTS)} (gqa: engine/attention.py)")
    parser.add_argument("--no-repeat-ngrams", default="0",
                        help="with --fast: no_repeat_ngram_size values each variant runs with, e.g. 0,3 (the configs' "
                             "setting; 0 = off)")
    parser.add_argument("--limit", type=int, help="with --fast: only the first N test dialogues (file order), extrapolated")
    parser.add_argument("--beam-limit", type=int, help="with --fast: beam searches run on the first N only (overrides --limit)")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for the plumbing check (tiny models)")
    parser.add_argument("--model", type=Path, help="model directory (default ROOT/models/SHAPE)")
    parser.add_argument("--data", type=Path, help="data directory (default ROOT/data)")
    parser.add_argument("--out")
    args = parser.parse_args()
    unknown = sorted(set(args.fast_variants.split(",")) - set(FAST_VARIANTS))
    if unknown:
        parser.error(f"--fast-variants: unknown {', '.join(unknown)}; use a comma-separated list of {', '.join(FAST_VARIANTS)}")
    if not all(n.isdigit() for n in args.no_repeat_ngrams.split(",")):
        parser.error(f"--no-repeat-ngrams {args.no_repeat_ngrams!r}: use comma-separated sizes >= 0, e.g. 0,3")

    from engine.config import GenerationConfig
    from engine.inference import generate_summaries

    model, tok, sources, kind = load(Path(args.root), args.shape, args.model, args.data, args.device)
    n = len(sources)
    rows: list[dict] = []

    def gen(num_beams: int = 1, no_repeat_ngram_size: int = 0, **extra) -> GenerationConfig:
        return GenerationConfig(num_beams=num_beams, max_new_tokens=args.new_tokens,
                                no_repeat_ngram_size=no_repeat_ngram_size, length_penalty=1.0, **extra)

    def record(name: str, seconds: float, done: int, peak: NvmlPeak | None = None) -> None:
        total = seconds * n / done
        row = {"variant": name, "dialogues": done, "seconds": round(seconds, 2), "test_set_s": round(total, 1),
               "s_per_dialogue": round(seconds / done, 3), "peak_gib": peak.peak_gib if peak else None}
        rows.append(row)
        print(json.dumps(row), flush=True)

    max_src = 1024 if kind == "causal" else 512
    # Warm-up: CUDA context, kernels, allocator.
    generate_summaries(model, tok, sources[:8], kind, gen(), max_src, 8)
    if args.fast:
        return fast(args, model, tok, sources, kind, gen, record, rows, max_src)

    for beams, k in ((1, args.one_by_one), (4, max(4, args.one_by_one // 2))):
        seconds, _ = timed(lambda: [generate_summaries(model, tok, [s], kind, gen(beams), max_src, 1) for s in sources[:k]])
        record(f"one-by-one generate, beams {beams} (first {k}, extrapolated)", seconds, k)

    def team(k: int) -> None:
        # The team's loop: batches of 4 in file order, no length sorting.
        for i in range(0, k, 4):
            generate_summaries(model, tok, sources[i : i + 4], kind, gen(1), max_src, 4)

    seconds, _ = timed(lambda: team(args.team_prefix))
    record(f"team setting: bs 4 in file order, greedy (first {args.team_prefix}, extrapolated)", seconds, args.team_prefix)

    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        with NvmlPeak() as peak:
            seconds, _ = timed(lambda: generate_summaries(model, tok, sources, kind, gen(1), max_src, bs))
        record(f"engine: length-sorted bs {bs}, greedy", seconds, n, peak)
    for bs in [int(b) for b in args.beam_batch_sizes.split(",")]:
        with NvmlPeak() as peak:
            seconds, _ = timed(lambda: generate_summaries(model, tok, sources, kind, gen(4), max_src, bs))
        record(f"engine: length-sorted bs {bs}, beams 4", seconds, n, peak)
    if args.static:
        best = int(args.batch_sizes.split(",")[-1])
        for attempt in ("first (compiles)", "second"):
            seconds, _ = timed(lambda: generate_summaries(model, tok, sources, kind, gen(1, cache_implementation="static"), max_src, best))
            record(f"engine: static cache bs {best}, greedy, {attempt}", seconds, n)

    report(rows, args.out, f"{args.shape}: {n} dialogues, {args.new_tokens} new tokens each",
           ["s_per_dialogue", "test_set_s", "peak_gib"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
