"""Provides the model-loading benchmark (issue 16 item 3): each step of the engine's own
``load_for_training`` and ``load_for_inference`` (weights straight onto the GPU, resize and merge
there) next to the order before it — materialise on the CPU, resize, move; merge the adapter on the
CPU — done with plain transformers/PEFT calls in the same process, on the real shapes.

The bench models' tokenizers already hold the mask tokens, so loading them would never resize; the
hub models' tokenizers fill their embedding exactly and lack them. Each model is therefore loaded
through a copy whose tokenizer is as long as the embedding and lacks the mask tokens (weights
linked, not copied): the engine adds the 15 tokens and resizes, as it does for the real 3B and KoBART.

    python benchmarks/common.py --root /tmp/bench --shapes llama3b,kobart
    python benchmarks/load_speed.py --root /tmp/bench --shapes llama3b,kobart --out /tmp/out/load.json

Each line printed is one JSON row: ``{"shape", "stage", "order", "phases": {step: s}, "total_s"}``
per load, then per shape and stage a ``"compare"`` row (before vs engine seconds, and how far the
two loaded models' weights are apart).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, make_data, make_model  # noqa: E402

# The shipped config of each shape: its dtype, LoRA and attention settings are what the stages load.
SHIPPED = {"kobart": "configs/kobart.yaml", "llama3b": "configs/llama-3.2-korean-3b-h100.yaml"}
MODEL_FILES = ("config.json", "generation_config.json", ".safetensors", ".safetensors.index.json")


class Laps:
    """The ``lap`` the engine's loaders call: seconds per step, the GPU's queue drained at each."""

    def __init__(self, device: str):
        import torch

        self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        self.phases: dict[str, float] = {}
        self.start = self.last = time.perf_counter()

    def __call__(self, name: str) -> None:
        self.sync()
        now = time.perf_counter()
        self.phases[name] = round(now - self.last, 3)
        self.last = now

    @property
    def total(self) -> float:
        return round(self.last - self.start, 3)


def hub_vocab_copy(model_dir: Path, out: Path) -> Path:
    """``model_dir``'s weights (linked) with a word-level tokenizer of exactly as many entries as the
    embedding has rows and no mask tokens, its special tokens at the ids the model was built with."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerFast

    from engine.prompts import MASK_TOKENS

    if (out / "tokenizer.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for path in model_dir.iterdir():
        if path.name.endswith(MODEL_FILES) and not (out / path.name).exists():
            (out / path.name).symlink_to(path.resolve())
    rows = AutoConfig.from_pretrained(model_dir).vocab_size
    source = AutoTokenizer.from_pretrained(model_dir)
    specials = {name: getattr(source, name) for name in ("pad_token", "bos_token", "eos_token", "unk_token")
                if getattr(source, name) is not None}
    vocab = {f"tok{i}": i for i in range(rows)}
    for token in specials.values():
        vocab.pop(f"tok{source.convert_tokens_to_ids(token)}")
        vocab[token] = source.convert_tokens_to_ids(token)
    assert not set(MASK_TOKENS) & set(vocab) and len(vocab) == rows
    backend = Tokenizer(models.WordLevel(vocab, unk_token=specials.get("unk_token", "tok0")))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **specials)
    tokenizer.save_pretrained(out)
    return out


def run_config(like: str, model_dir: Path, checkpoints: Path, device: str):
    """The shipped config of ``like`` with the model path, the checkpoints dir and the device changed."""
    from engine.config import config_from_dict

    tree = yaml.safe_load((ROOT / SHIPPED[like]).read_text(encoding="utf-8"))
    return config_from_dict(tree, SHIPPED[like], {"model.name_or_path": str(model_dir), "paths.checkpoints": str(checkpoints),
                                                  "train.device": device})


def warm_page_cache(directory: Path) -> None:
    """Read every file once: both orders then read the weights from memory, as a stage does after the first."""
    for path in directory.iterdir():
        with open(path.resolve(), "rb") as f:
            while f.read(1 << 26):
                pass


def free() -> None:
    """Return what the caller has just dropped (``del``) to the allocator, so each load starts alike."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def before_training(cfg, device: str) -> tuple[object, Laps]:
    """The order before this change: materialise on the CPU, resize there, move, then LoRA."""
    from peft import get_peft_model

    from engine.modeling import auto_class, keep_activation_dtype, load_tokenizer, lora_config, model_source
    from engine.runtime import configure_cuda_kernels, torch_dtype

    configure_cuda_kernels()
    lap = Laps(device)
    tokenizer, added = load_tokenizer(cfg)
    lap("tokenizer")
    kwargs = {"dtype": torch_dtype(cfg.model.dtype)}
    if cfg.model.attn_implementation:
        kwargs["attn_implementation"] = cfg.model.attn_implementation
    model = auto_class(cfg.model.kind).from_pretrained(model_source(cfg.model.name_or_path), **kwargs)
    lap("weights")
    model.resize_token_embeddings(len(tokenizer))
    lap("resize")
    model.to(device)
    lap("move")
    if cfg.lora.enabled:
        model = get_peft_model(model, lora_config(cfg, tokenizer.convert_tokens_to_ids(added)))
        if cfg.train.precision in ("bf16", "fp16"):
            keep_activation_dtype(model)
    lap("lora")
    return model, lap


def before_inference(directory: Path, device: str) -> tuple[object, Laps]:
    """The order before this change: base on the CPU, resize, adapter and merge on the CPU, then move."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from engine.artifacts import read_final_model_meta
    from engine.modeling import auto_class
    from engine.runtime import torch_dtype

    lap = Laps(device)
    meta = read_final_model_meta(directory)
    dtype = torch_dtype(meta["dtype"])
    tokenizer = AutoTokenizer.from_pretrained(directory)
    lap("tokenizer")
    if meta.get("adapter"):
        base = auto_class(meta["kind"]).from_pretrained(meta["base_model"], dtype=dtype)
        lap("weights")
        base.resize_token_embeddings(len(tokenizer))
        lap("resize")
        model = PeftModel.from_pretrained(base, directory, autocast_adapter_dtype=False)
        lap("adapter")
        model = model.merge_and_unload()
        lap("merge")
    else:
        model = auto_class(meta["kind"]).from_pretrained(directory, dtype=dtype)
        lap("weights")
    model.to(device=device, dtype=dtype)
    model.eval()
    lap("move")
    return model, lap


def base_weights(model) -> dict:
    """The base model's tensors by name (LoRA's own, drawn at random, left out), on the GPU as loaded."""
    return {name.replace("base_model.model.", "").replace(".base_layer", ""): t.detach()
            for name, t in model.state_dict().items() if "lora_" not in name and "trainable_tokens" not in name}


def distance(a: dict, b: dict) -> dict:
    """Max |a - b| over every shared tensor and the share of elements that differ at all."""
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))[:5]
    worst, differing, total = 0.0, 0, 0
    for name, x in a.items():
        y = b[name].to(x.device)
        diff = (x.float() - y.float()).abs()
        worst = max(worst, diff.max().item())
        differing += int((diff > 0).sum().item())
        total += diff.numel()
    return {"max_abs_diff": worst, "elements_differing": differing, "elements": total}


def perturb_adapter(model, seed: int = 0) -> None:
    """Give LoRA's B (zero at init) and the new token rows values, as training would, so the merge
    changes the weights and the two merges can be compared."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                p.copy_((torch.randn(p.shape, generator=gen) * 0.02).to(p.device, p.dtype))


def row(**fields) -> dict:
    print(json.dumps(fields), flush=True)
    return fields


def measure(name: str, like: str, model_dir: Path, root: Path, device: str) -> list[dict]:
    import torch

    from engine.artifacts import EventWriter, final_model_dir
    from engine.modeling import load_for_inference, load_for_training
    from engine.train import save_final_model

    hub = hub_vocab_copy(model_dir, root / "models" / f"{model_dir.name}-hubvocab")
    warm_page_cache(model_dir)
    cfg = run_config(like, hub, root / "load-bench" / name, device)
    rows = []
    meta = {"shape": name, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "dtype": cfg.model.dtype,
            "lora": cfg.lora.enabled}

    # Each training load starts from the seed, as the train stage does (set_seed before loading).
    torch.manual_seed(cfg.train.seed)
    old, lap = before_training(cfg, device)
    rows.append(row(**meta, stage="train", order="before", phases=lap.phases, total_s=lap.total))
    old_weights = base_weights(old)
    del old
    free()
    torch.manual_seed(cfg.train.seed)
    lap = Laps(device)
    loaded = load_for_training(cfg, device, lap)
    rows.append(row(**meta, stage="train", order="engine", phases=lap.phases, total_s=lap.total))
    train_diff = distance(old_weights, base_weights(loaded.model))
    del old_weights
    free()
    rows.append(row(**meta, stage="train", order="compare", before_s=rows[-2]["total_s"], engine_s=rows[-1]["total_s"],
                    speedup=round(rows[-2]["total_s"] / rows[-1]["total_s"], 2), added_tokens=len(loaded.added_tokens),
                    base_weights=train_diff))

    # The final_model a training run leaves, written by the engine's own save path.
    if cfg.lora.enabled:
        perturb_adapter(loaded.model)
    final = final_model_dir(root / "load-bench" / name, name)
    shutil.rmtree(final, ignore_errors=True)
    save_final_model(cfg, loaded, loaded.model, {}, EventWriter(None), name)
    del loaded
    free()
    warm_page_cache(final)

    lap = Laps(device)
    new = load_for_inference(final, device, lap)
    rows.append(row(**meta, stage="infer", order="engine", phases=lap.phases, total_s=lap.total))
    new_weights = base_weights(new.model)
    del new
    free()
    old, lap = before_inference(final, device)
    rows.append(row(**meta, stage="infer", order="before", phases=lap.phases, total_s=lap.total))
    infer_diff = distance(base_weights(old), new_weights)
    del old, new_weights
    free()
    rows.append(row(**meta, stage="infer", order="compare", before_s=rows[-1]["total_s"], engine_s=rows[-2]["total_s"],
                    speedup=round(rows[-1]["total_s"] / rows[-2]["total_s"], 2), merged_weights=infer_diff))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench")
    parser.add_argument("--shapes", default="llama3b,kobart", help="bench shapes (built by common.py if missing)")
    parser.add_argument("--model", help="a model directory instead of --shapes (the CPU test's tiny model)")
    parser.add_argument("--like", default="llama3b", choices=sorted(SHIPPED), help="whose shipped config --model loads with")
    parser.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when available")
    parser.add_argument("--out", help="write all rows here as one JSON list")
    args = parser.parse_args(argv)

    import torch
    from transformers.utils import logging

    logging.disable_progress_bar()  # one bar per load would bury the JSON rows in the job's log tail
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    root = Path(args.root).resolve()
    # Outside every timing, as in a stage (its import phase pays them): the libraries and the CUDA context.
    t = time.perf_counter()
    import peft  # noqa: F401
    import transformers  # noqa: F401

    if device == "cuda":
        torch.ones(1, device="cuda")
    row(setup="imports and CUDA context (outside the timings)", seconds=round(time.perf_counter() - t, 2), device=device,
        torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__)
    if args.model:
        jobs = [(Path(args.model).name, args.like, Path(args.model).resolve())]
    else:
        data = make_data(root)
        jobs = [(shape, shape, make_model(root, shape, data)) for shape in args.shapes.split(",")]
    rows = []
    for name, like, model_dir in jobs:
        rows += measure(name, like, model_dir, root, device)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
