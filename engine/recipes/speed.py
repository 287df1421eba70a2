"""Provides the training speed levers of issue 16 that change how a step is executed, not what it
computes: a fused LoRA forward (``train.fused_lora``) and ``torch.compile`` of each decoder layer
(``train.compile``). Both are applied to the Trainer's model after the Trainer patched in Liger.

Why these two (docs/benchmarks.md, the 3B LoRA profile): the GEMMs already run near peak, but the
GPU idles about half of each step while Python launches ~200 LoRA modules' small kernels, and
elementwise kernels (LoRA scale + add, residual adds, casts) take a quarter of the kernel time.

Not here, on purpose: padding-free packing (``position_ids`` restarting per sample, no padding).
With SDPA, transformers turns a packed row into one dense block-diagonal mask over the whole
batch's tokens, and SDPA then computes attention over all of them: ~16x the attention work of
the padded batch at bs 16 (attention is already 28 ms of the 405 ms step). FlexAttention with a
document mask would skip the empty blocks, but it is compiled per packed length and untested
here; what packing saves is only the padding left after length grouping plus the bucket
(~5-10% of tokens), less than either lever above should give.
"""

from __future__ import annotations

import math
import types
from typing import Any

from engine.config import ConfigError, RunConfig

# The repeated block of a transformers model is named in its ``_no_split_modules`` (what accelerate
# never splits across devices): LlamaDecoderLayer, Qwen3DecoderLayer, BartEncoderLayer/BartDecoderLayer.
_LAYER_NAMES_ATTR = "_no_split_modules"


def fused_lora_forward(self, x, *args: Any, **kwargs: Any):
    """A LoRA linear as three kernels: ``addmm(base(x), x @ A^T, B^T, alpha=scaling)``.

    PEFT's forward computes ``base(x) + B(A(dropout(x))) * scaling``: two extra activation-sized
    elementwise kernels (the scale, the add) per module forward and one more in backward, plus
    Python for adapter bookkeeping on every call. With dropout 0 the dropout is the identity, so
    the scale and the add fold into the B GEMM (``addmm``'s alpha and its accumulate into the base
    output), computed in the GEMM's float32 accumulator and rounded once. Anything unusual (adapter
    disabled or merged, several adapters, extra kwargs, mixed dtypes outside autocast) takes PEFT's
    own path, so the result is never wrong, only sometimes not faster.
    """
    import torch

    active = self.active_adapters
    if kwargs or self.disable_adapters or self.merged or len(active) != 1 or active[0] not in self.lora_A:
        return type(self).forward(self, x, *args, **kwargs)
    name = active[0]
    lora_a, lora_b = self.lora_A[name].weight, self.lora_B[name].weight
    if x.dtype != lora_a.dtype and not torch.is_autocast_enabled(x.device.type):
        return type(self).forward(self, x, *args, **kwargs)
    base = self.base_layer(x, *args)
    low_rank = torch.nn.functional.linear(x, lora_a)
    out = torch.addmm(base.reshape(-1, base.shape[-1]), low_rank.reshape(-1, low_rank.shape[-1]), lora_b.t(),
                      alpha=self.scaling[name])
    return out.view(base.shape)


def fuse_lora(model) -> int:
    """Give every plain PEFT LoRA ``Linear`` with dropout 0 the fused forward; return how many.

    Only ``peft.tuners.lora.layer.Linear`` itself qualifies (not its 4-bit/8-bit subclasses, whose
    base layers dequantize in their own forward), without DoRA or a LoRA bias, whose extra terms the
    fused form does not compute. The weights and their names are untouched: saving, merging and
    resuming see an ordinary PEFT model.
    """
    import torch
    from peft.tuners.lora.layer import Linear as LoraLinear

    fused = 0
    for module in model.modules():
        if type(module) is not LoraLinear:
            continue
        names = list(module.lora_A.keys())
        plain = all(
            isinstance(module.lora_dropout[n], torch.nn.Identity)
            and n not in module.lora_variant
            and module.lora_B[n].bias is None
            for n in names
        )
        if names and plain:
            # An instance attribute: nn.Module.__call__ looks ``forward`` up on the instance first.
            module.forward = types.MethodType(fused_lora_forward, module)
            fused += 1
    return fused


def decoder_layers(model) -> list:
    """The model's repeated blocks (by ``_no_split_modules``), found through PEFT and DDP wrappers."""
    classes: set[str] = set()
    for module in model.modules():
        classes.update(getattr(module, _LAYER_NAMES_ATTR, None) or [])
    return [m for m in model.modules() if type(m).__name__ in classes]


def bucket_count(max_length: int, multiple: int) -> int:
    """How many padded lengths a batch can have: one per multiple of ``multiple`` up to ``max_length``."""
    return math.ceil(max_length / multiple)


def compiled_when_training(self, *args: Any, **kwargs: Any):
    """A decoder layer's forward: the compiled graph in training steps, the eager forward otherwise.

    Evaluation (no grad) and in-training generation (KV cache, one-token steps, a ``layer_idx``
    read per layer) would each trace new graphs and could exhaust the recompile limit for a few
    seconds of work, so they stay eager.
    """
    import torch

    if self.training and torch.is_grad_enabled():
        return self.compiled_forward(*args, **kwargs)
    return type(self).forward(self, *args, **kwargs)


def compile_layers(model, backend: str, buckets: int) -> int:
    """``torch.compile`` every decoder layer's training forward in place; return how many layers.

    Per layer, not the whole model: the embedding, the final norm and the LM head + loss (Liger's
    fused linear-cross-entropy) stay eager, and one compiled graph serves all layers (dynamo
    treats module parameters as graph inputs; layers of one class share the traced code — checked
    on a tiny Llama with LoRA: two graphs, layer 0 whose input needs no grad and the rest, no graph
    breaks). Parameter names are unchanged, so saving and resuming see the plain model.

    ``dynamic=True``: with length-grouped batches nearly every step has a new sequence length.
    ``dynamic=False`` would compile a graph per padded length — with 64-token buckets up to 1,224
    tokens that is ~20 compilations of the layer's forward and backward (tens of seconds each),
    most of a short run. The batch and sequence dims only index pointwise work here (the GEMMs are
    cuBLAS calls and attention is SDPA, both shape-generic; the norms reduce over the static hidden
    size), so symbolic sizes cost the generated kernels little. Padding each batch to a bucket
    still matters: a guard may specialize a length (a size that equals a static dim, e.g. 128 =
    head_dim), and the buckets bound those recompiles; the dynamo recompile limit is raised to the
    bucket count so such a case never falls back to eager silently.
    """
    import torch

    layers = decoder_layers(model)
    if not layers:
        raise ConfigError("train.compile: this model names no repeated decoder layer (_no_split_modules); "
                          "set train.compile: false")
    config = torch._dynamo.config
    # recompile_limit is the current name (torch >= 2.7), cache_size_limit the older one. Twice the
    # buckets: layer 0's input needs no grad and the other layers' inputs do, two graphs per shape.
    limit_name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, limit_name, max(getattr(config, limit_name), 2 * buckets + 2))
    for layer in layers:
        # A plain attribute (not a submodule): the compiled bound forward of this very layer.
        layer.compiled_forward = torch.compile(types.MethodType(type(layer).forward, layer), backend=backend, dynamic=True)
        layer.forward = types.MethodType(compiled_when_training, layer)
    return len(layers)


def apply_speed_levers(cfg: RunConfig, model) -> dict[str, int]:
    """Apply ``train.fused_lora`` and ``train.compile`` to the Trainer's model; return what was done.

    Called by the recipes once the Trainer is built (it patches Liger's kernels into the model in
    ``__init__``); compilation itself is lazy, at the first training step. What was applied, or
    that a lever found nothing to act on, goes to ``run.log``.
    """
    import sys

    done: dict[str, int] = {}
    if cfg.train.fused_lora:
        done["fused_lora_modules"] = fuse_lora(model)
        if not done["fused_lora_modules"]:
            print("warning: train.fused_lora: no LoRA layer qualified (4-bit base, DoRA or a LoRA bias); "
                  "training runs PEFT's own forward", file=sys.stderr)
    if cfg.train.compile:
        max_length = cfg.prompt.max_source_length + cfg.prompt.max_target_length
        done["compiled_layers"] = compile_layers(model, cfg.train.compile_backend,
                                                 bucket_count(max_length, cfg.train.pad_to_multiple_of or 1))
    if done:
        print("speed levers: " + ", ".join(f"{k} {v}" for k, v in done.items()), file=sys.stderr, flush=True)
    return done
