"""Provides model and tokenizer loading for training and inference: dtype, masked-entity special
tokens + embedding resize, 4-bit nf4, PEFT LoRA, and ``final_model`` (adapter on its recorded base,
or merged) with one dtype everywhere.

One dtype everywhere is the fix for the hand-off's "expected scalar type BFloat16 but found Float":
the base is loaded in ``model.dtype``, the adapter is cast to it at inference, and the inputs are
integer ids that never need casting.

On CUDA the weights load straight onto this process's GPU (:func:`placement`), and the embedding
resize and the adapter merge run there. Resizing and merging on the CPU and then moving cost the 3B
15.6 s to load for training and 19.3 s for inference; on the GPU 1.8 s and 2.5 s (one H100,
benchmarks/load_speed.py, both orders in one process). On the CPU nothing changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.artifacts import FINAL_MODEL_META, read_final_model_meta
from engine.config import ConfigError, RunConfig, resolve_path


@dataclass
class LoadedModel:
    """A model ready to train or generate, with what inference needs to know about it."""

    model: Any
    tokenizer: Any
    kind: str  # "seq2seq" | "causal"
    dtype: str
    added_tokens: list[str]
    base_model: str


def model_source(name_or_path: str) -> str:
    """Return a local directory (resolved against the workspace) if it exists, else the hub id as given."""
    local = resolve_path(name_or_path)
    return str(local) if local.is_dir() else name_or_path


def add_mask_tokens(tokenizer) -> list[str]:
    """Add the competition's masked entities as special tokens (never split); return those that were new."""
    from engine.prompts import MASK_TOKENS

    vocab = tokenizer.get_vocab()
    missing = [tok for tok in MASK_TOKENS if tok not in vocab]
    if missing:
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    return missing


def load_tokenizer(cfg: RunConfig):
    """Load the tokenizer of ``cfg.model`` with a pad token and the mask tokens.

    Causal tokenizers pad on the left so a batch's prompts all end where generation starts.

    Returns:
        (tokenizer, list of tokens added to the vocabulary)
    """
    from transformers import AutoTokenizer

    source = model_source(cfg.model.name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.model.trust_remote_code)
    if tokenizer.pad_token is None:
        # Llama-style tokenizers ship without one; eos is safe because labels come from masks, not pads.
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.model.kind == "causal":
        tokenizer.padding_side = "left"
        tokenizer.truncation_side = "left"
    added = add_mask_tokens(tokenizer)
    return tokenizer, added


def quantization_config(cfg: RunConfig):
    """Return a bitsandbytes 4-bit config when ``quantization.load_in_4bit`` (CUDA only), else None."""
    if not cfg.quantization.load_in_4bit:
        return None
    from transformers import BitsAndBytesConfig

    from engine.runtime import torch_dtype

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.quantization.quant_type,
        bnb_4bit_use_double_quant=cfg.quantization.double_quant,
        bnb_4bit_compute_dtype=torch_dtype(cfg.quantization.compute_dtype),
    )


def placement(device: str) -> dict[str, Any]:
    """The ``from_pretrained`` keywords that load the weights where they will run.

    On CUDA: ``device_map`` onto this process's own GPU — its ``LOCAL_RANK`` under ``accelerate
    launch`` (each rank's CUDA_VISIBLE_DEVICES maps it), else 0 — so the tensors go from the
    memory-mapped safetensors file to the GPU and what follows (resize, adapter, merge) runs there.
    On the CPU: none; transformers materialises there.
    """
    if device != "cuda":
        return {}
    return {"device_map": {"": int(os.environ.get("LOCAL_RANK", "0"))}}


def load_weights(kind: str, source: str, device: str, **kwargs: Any):
    """``from_pretrained`` of ``source`` placed by :func:`placement` (``device`` is "cuda" or "cpu").

    transformers 5.x always builds the model on the meta device and fills it from the memory-mapped
    safetensors (``low_cpu_mem_usage`` is gone: it is what every load does), so the only choice left
    is where the tensors land. A one-GPU map is not dispatched with Accelerate's hooks and leaves no
    ``hf_device_map``: the Trainer and ``generate()`` see what a ``.to(device)`` model gave them.
    """
    return auto_class(kind).from_pretrained(source, **kwargs, **placement(device))


def fit_embeddings(model, tokenizer) -> None:
    """Grow the embedding rows (and an untied head) to the tokenizer's length, on the model's device.

    transformers' default ``mean_resizing`` is kept: the new mask-token rows start at the mean of
    the old rows plus noise of 1e-9 of their covariance (~3e-5 of their spread), where a plain
    normal init would put them far from every real token. Its price is a float32 covariance of the
    whole embedding (128k x 3072 on the 3B: ~2.4 TFLOP): 13.1 s on an H100 host's 16-core CPU,
    0.3 s on the GPU (benchmarks/load_speed.py), which is why the weights are on the GPU before it
    runs. One difference from the CPU order: the noise comes from the CUDA generator, so the new
    rows differ from a CPU resize by that noise (<= 4.3e-6 on the bench 3B), and the CPU generator
    that PEFT's LoRA init draws from next is no longer advanced by it — same seed, same run, but
    not the same LoRA draw as before this change.
    """
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))


def _no_lap(name: str) -> None:
    """The default ``lap``: loading steps are timed only by benchmarks/load_speed.py."""


def auto_class(kind: str):
    """The transformers Auto class for a model kind."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM


def lora_config(cfg: RunConfig, new_token_ids: list[int]):
    """PEFT LoRA config from ``cfg.lora``; rows of newly added tokens are trained too (else they stay random)."""
    from peft import LoraConfig, TaskType

    extra: dict[str, Any] = {}
    if new_token_ids:
        extra["trainable_token_indices"] = new_token_ids
    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type=TaskType.SEQ_2_SEQ_LM if cfg.model.kind == "seq2seq" else TaskType.CAUSAL_LM,
        **extra,
    )


def load_for_training(cfg: RunConfig, device: str, lap: Callable[[str], None] = _no_lap) -> LoadedModel:
    """Load tokenizer and model for fine-tuning as ``cfg`` says (dtype, 4-bit, LoRA, device).

    Args:
        cfg: the run config.
        device: ``"cuda"`` or ``"cpu"`` (from :func:`engine.runtime.resolve_device`).
        lap: called with each step's name as it ends (tokenizer, weights, resize, move, lora);
            benchmarks/load_speed.py times them.
    """
    from engine.runtime import configure_cuda_kernels, torch_dtype

    configure_cuda_kernels()
    tokenizer, added = load_tokenizer(cfg)
    lap("tokenizer")
    source = model_source(cfg.model.name_or_path)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(cfg.model.dtype), "trust_remote_code": cfg.model.trust_remote_code}
    if cfg.model.attn_implementation:
        kwargs["attn_implementation"] = cfg.model.attn_implementation
    quant = quantization_config(cfg)
    if quant is not None:
        kwargs["quantization_config"] = quant
    # bitsandbytes places the quantized weights at load time, so a 4-bit base always loads on the GPU.
    model = load_weights(cfg.model.kind, source, "cuda" if quant is not None else device, **kwargs)
    lap("weights")
    fit_embeddings(model, tokenizer)
    lap("resize")
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if quant is None and device != "cuda":
        model.to(device)  # on CUDA the weights are already on this rank's GPU
    lap("move")
    if cfg.lora.enabled:
        from peft import get_peft_model, prepare_model_for_kbit_training

        if quant is not None:
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=cfg.train.gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        model = get_peft_model(model, lora_config(cfg, tokenizer.convert_tokens_to_ids(added)))
        if cfg.train.precision in ("bf16", "fp16"):
            keep_activation_dtype(model)
    lap("lora")
    return LoadedModel(model, tokenizer, cfg.model.kind, cfg.model.dtype, added, source)


def keep_activation_dtype(model) -> None:
    """Stop PEFT from casting every LoRA input to the adapter's float32 under mixed precision.

    PEFT keeps adapter weights in float32 (good for the optimizer) and casts each layer's input to
    that dtype: on a 3B model that is 7 activation-sized copies per layer and back, 22% of GPU time
    in the profile. Under autocast the matmuls run in bf16/fp16 anyway, so the cast buys nothing.
    Every forward pass of the training model must therefore run under autocast — the Trainer does,
    and :class:`engine.callbacks.GenerationEvalCallback` does for in-training generation.
    """
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = False


def incomplete_model_message(directory: Path) -> str:
    """Why ``directory`` cannot be used, and what to do."""
    if not directory.exists():
        return f"{directory}: no model here; train first (python -m engine train) or pass --checkpoint DIR"
    return (
        f"{directory}: incomplete final_model (no valid {FINAL_MODEL_META}); training did not finish saving it. "
        "Retrain, or pass --checkpoint DIR pointing at a complete model"
    )


def load_for_inference(directory: Path, device: str, lap: Callable[[str], None] = _no_lap) -> LoadedModel:
    """Load a complete ``final_model`` for generation, adapter or merged, in its recorded dtype.

    Args:
        directory: the ``final_model`` directory.
        device: ``"cuda"`` or ``"cpu"``.
        lap: called with each step's name as it ends (tokenizer, weights, resize, adapter, merge,
            move); benchmarks/load_speed.py times them.

    Raises:
        ConfigError: ``directory`` is missing or incomplete (no completeness marker).
    """
    from transformers import AutoTokenizer

    from engine.runtime import configure_cuda_kernels, torch_dtype

    configure_cuda_kernels()
    directory = Path(directory)
    meta = read_final_model_meta(directory)
    if meta is None:
        raise ConfigError(incomplete_model_message(directory))
    kind, dtype_name = meta["kind"], meta["dtype"]
    dtype = torch_dtype(dtype_name)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if kind == "causal":
        tokenizer.padding_side = "left"
        tokenizer.truncation_side = "left"
    lap("tokenizer")
    if meta.get("adapter"):
        from peft import PeftModel

        base = load_weights(kind, meta["base_model"], device, dtype=dtype)
        lap("weights")
        fit_embeddings(base, tokenizer)
        lap("resize")
        # autocast_adapter_dtype=False + merge: adapter and base end up in one dtype, so generate()
        # never meets a float32 LoRA matmul on bfloat16 activations.
        model = PeftModel.from_pretrained(base, directory, autocast_adapter_dtype=False)
        lap("adapter")
        model = model.merge_and_unload()
        lap("merge")
    else:
        model = load_weights(kind, str(directory), device, dtype=dtype)
        lap("weights")
    # On CUDA the weights are already on the GPU (a no-op move); the cast keeps one dtype everywhere.
    model.to(device=device if device != "cuda" else model.device, dtype=dtype)
    model.eval()
    lap("move")
    return LoadedModel(model, tokenizer, kind, dtype_name, [], meta.get("base_model", str(directory)))
