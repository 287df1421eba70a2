"""Provides the token lengths the GPU benchmarks really had, measured on the CPU: the memory
predictor's calibration (engine/footprint.py, docs/memory.md) needs the longest training sample and
the longest generation prompt of each measured run, not the config's maxima.

The benchmarks' tokenizer is rebuilt exactly as benchmarks/common.py builds it (an 800-entry BPE
trained on the data's train.csv), so no GPU and no model weights are needed:

    python -m engine synth --out /tmp/b4000 --profile competition --train 4000 --dev 200 --test 499 --seed 7
    python benchmarks/bench_lengths.py --data /tmp/b4000 --arch llama --config configs/llama-3.2-korean-3b-h100.yaml
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.config import load_config  # noqa: E402
from engine.data import load_split  # noqa: E402
from engine.prompts import model_inputs  # noqa: E402
from engine.recipes.seq2seq import preprocess_seq2seq  # noqa: E402
from engine.recipes.sft import prompt_completion_rows  # noqa: E402
from engine.tiny import corpus_texts, train_tokenizer  # noqa: E402

from common import BENCH_VOCAB  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the benchmark's data dir (train/dev/test.csv)")
    parser.add_argument("--arch", choices=("llama", "qwen3", "bart"), required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], help="config override key=value, as the benchmark had")
    args = parser.parse_args()
    cfg = load_config(args.config, args.set)
    tokenizer = train_tokenizer(corpus_texts(args.data), args.arch, vocab_size=BENCH_VOCAB)
    train, _ = load_split(args.data, "train")
    summaries = [s.summary or "" for s in train]
    rng = random.Random(cfg.train.seed)  # the topic draws engine/train.py makes
    p = cfg.prompt
    out: dict = {}
    if args.arch == "bart":
        columns, _, _ = preprocess_seq2seq(model_inputs(train, p, "seq2seq", rng=rng), summaries, tokenizer,
                                           p.max_source_length, p.max_target_length)
        out["train_source_max"] = max(map(len, columns["input_ids"]))
        out["train_target_max"] = max(map(len, columns["labels"]))
    else:
        prompts = model_inputs(train, p, "causal", tokenizer, rng)
        columns, _, _ = prompt_completion_rows(prompts, summaries, tokenizer, p.max_source_length, p.max_target_length)
        # Length-grouped batching puts the longest sample in the first batch, padded to it.
        longest = max(range(len(train)), key=lambda i: len(columns["input_ids"][i]))
        prompt = sum(1 for label in columns["labels"][longest] if label == -100)
        out["train_longest"] = {"source": prompt, "target": len(columns["input_ids"][longest]) - prompt}
    kind = "seq2seq" if args.arch == "bart" else "causal"
    for split in ("dev", "test"):
        samples, _ = load_split(args.data, split)
        subsets = {split: samples}
        if split == "dev" and cfg.data.max_eval_samples:  # what in-training evaluation generates for
            subsets[f"dev[:{cfg.data.max_eval_samples}]"] = samples[: cfg.data.max_eval_samples]
        for name, rows in subsets.items():
            ids = tokenizer(model_inputs(rows, p, kind, tokenizer), add_special_tokens=kind == "seq2seq",
                            truncation=True, max_length=p.max_source_length)["input_ids"]
            out[f"{name}_prompt_max"] = max(map(len, ids))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
