"""Provides what the GPU benchmarks share: real-architecture shapes built random-init (no hub access),
a tokenizer trained locally on competition-length synthetic dialogues, NVML memory sampling and
the figures (MFU, peak) reported in docs/benchmarks.md.

Run anywhere with a CUDA GPU:  python benchmarks/common.py --root /tmp/bench   (idempotent setup)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Published configs of the models the team used (hub ids in configs/*.yaml). The vocabulary stays at
# its real size, so the LM head and the logits cost what they really cost, while the tokenizer is a
# small one trained here: every id it produces is a valid row of the real-size embedding.
SHAPES = {
    "llama3b": dict(  # Bllossom/llama-3.2-Korean-Bllossom-3B = Llama-3.2-3B
        arch="llama", hidden_size=3072, num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
        intermediate_size=8192, vocab_size=128256, head_dim=128, tie_word_embeddings=True, rope_theta=500000.0,
        max_position_embeddings=131072, rms_norm_eps=1e-5,
    ),
    "qwen3-4b": dict(  # Qwen/Qwen3-4B-Instruct-2507
        arch="qwen3", hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=9728, vocab_size=151936, head_dim=128, tie_word_embeddings=True, rope_theta=5000000.0,
        max_position_embeddings=262144, rms_norm_eps=1e-6,
    ),
    "kobart": dict(  # digit82/kobart-summarization
        arch="bart", d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
        decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, vocab_size=30000,
        max_position_embeddings=1026,
    ),
}
# A byte-level BPE of 800 entries on the synthetic corpus gives dialogue lengths close to the real
# set's under KoBART's tokenizer (measured: mean ~195, 2.6% over 512 tokens; real: ~200, ~1%).
BENCH_VOCAB = 800
H100_BF16_DENSE_TFLOPS = 989.0  # SXM datasheet, dense (no sparsity)


def bench_env() -> dict[str, str]:
    """The environment for engine subprocesses: this checkout first on PYTHONPATH (carried wheels after)."""
    extra = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=str(ROOT) + (os.pathsep + extra if extra else ""), TOKENIZERS_PARALLELISM="false")


def sh(argv: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(map(str, argv)), flush=True)
    return subprocess.run([str(a) for a in argv], check=True, env=bench_env(), **kw)


def make_data(root: Path, n_train: int = 4000, n_dev: int = 200, n_test: int = 499) -> Path:
    data = root / "data"
    if not (data / "test.csv").exists():
        sh([sys.executable, "-m", "engine", "synth", "--out", data, "--profile", "competition",
            "--train", n_train, "--dev", n_dev, "--test", n_test, "--seed", 7], cwd=ROOT)
    return data


def make_model(root: Path, shape: str, data: Path) -> Path:
    """Random-init ``shape`` in bf16 on the GPU and save it with the bench tokenizer (skipped if present)."""
    out = root / "models" / shape
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        BartConfig,
        LlamaConfig,
        Qwen3Config,
    )

    from engine.tiny import corpus_texts, train_tokenizer

    spec = dict(SHAPES[shape])
    arch = spec.pop("arch")
    tokenizer = train_tokenizer(corpus_texts(data), arch, vocab_size=BENCH_VOCAB)
    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id}
    if arch == "bart":
        config = BartConfig(**spec, decoder_start_token_id=tokenizer.eos_token_id,
                            forced_eos_token_id=tokenizer.eos_token_id, **ids)
        auto = AutoModelForSeq2SeqLM
    else:
        config = (LlamaConfig if arch == "llama" else Qwen3Config)(**spec, **ids)
        auto = AutoModelForCausalLM
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = auto.from_config(config, dtype=torch.bfloat16)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    (out / "bench_model.json").write_text(json.dumps({"shape": shape, "parameters": n}), encoding="utf-8")
    del model
    torch.cuda.empty_cache()
    return out


def parameters(model_dir: Path) -> int:
    return json.loads((model_dir / "bench_model.json").read_text())["parameters"]


def token_lengths(model_dir: Path, data: Path) -> dict:
    """Dialogue and summary token lengths under the bench tokenizer (reported next to the figures)."""
    import statistics

    from transformers import AutoTokenizer

    from engine.data import load_split

    tok = AutoTokenizer.from_pretrained(model_dir)
    test, _ = load_split(data, "test")
    train, _ = load_split(data, "train")
    d = [len(tok(s.dialogue)["input_ids"]) for s in test]
    s = [len(tok(x.summary)["input_ids"]) for x in train[:2000]]
    return {"dialogue_mean": round(statistics.mean(d)), "dialogue_max": max(d),
            "dialogue_over_512": sum(x > 512 for x in d), "summary_mean": round(statistics.mean(s)), "summary_max": max(s)}


class NvmlPeak:
    """Samples GPU memory used (NVML, as nvidia-smi shows it) every ``interval`` s in a thread:
    device ``index``, or every device when ``index`` is None (``peaks_gib``, one per device).
    ``nvml`` is the pynvml module (imported when None), or a stand-in with its functions (tests)."""

    def __init__(self, index: int | None = 0, interval: float = 0.05, nvml: Any = None):
        if nvml is None:
            import pynvml as nvml

        self.nvml = nvml
        try:
            nvml.nvmlInit()
            count = nvml.nvmlDeviceGetCount()
            indices = range(count) if index is None else [index]
            self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
        except nvml.NVMLError:  # no GPU: a CPU dry run of the plumbing reports 0
            self.handles = []
        self.interval = interval
        self.baselines = self.used_all()
        self.peaks = list(self.baselines)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def used_all(self) -> list[int]:
        return [self.nvml.nvmlDeviceGetMemoryInfo(h).used for h in self.handles]

    def used(self) -> int:
        return self.used_all()[0] if self.handles else 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peaks = [max(p, u) for p, u in zip(self.peaks, self.used_all(), strict=True)]
            time.sleep(self.interval)

    def __enter__(self) -> NvmlPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gib(self) -> float:
        """Peak above the idle baseline on the first sampled device (0 without a GPU)."""
        return self.peaks_gib[0] if self.handles else 0.0

    @property
    def peaks_gib(self) -> list[float]:
        return [round((p - b) / 2**30, 2) for p, b in zip(self.peaks, self.baselines, strict=True)]


def mfu(params: int, tokens_per_s: float, flops_per_token_factor: int = 4) -> float:
    """Model FLOPs utilisation: 4·N·tokens/s (LoRA: forward + activation gradients, no weight
    gradients for the frozen base) over the dense bf16 peak."""
    return flops_per_token_factor * params * tokens_per_s / (H100_BF16_DENSE_TFLOPS * 1e12)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench")
    parser.add_argument("--shapes", default="llama3b,qwen3-4b,kobart")
    args = parser.parse_args()
    root = Path(args.root)
    data = make_data(root)
    for shape in args.shapes.split(","):
        t = time.time()
        out = make_model(root, shape, data)
        print(f"{shape}: {parameters(out) / 1e9:.3f} B parameters in {out} ({time.time() - t:.1f} s)", flush=True)
    print(json.dumps(token_lengths(root / "models" / args.shapes.split(",")[0], data)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
