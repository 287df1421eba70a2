"""Provides the GPU memory each stage of a run will need, predicted from its config alone (issue 27,
"know before you launch"), and the cheapest config change that makes a run fit a GPU.

Torch-free: the manager calls it at ``add``, at admission and from ``dialsum-tui estimate``. The
model's shape comes from its ``config.json`` on disk (:mod:`engine.model_dims`); a model that is not
on disk is *unknown*, with the places looked at, never guessed.

The model is physical: bytes of weights, optimizer state, the activations autograd keeps for the
backward pass (counted tensor by tensor for the code paths the engine really runs: TRL's SFTTrainer
with its chunked LM head, PEFT LoRA, Liger kernels, SDPA; transformers' Seq2SeqTrainer), KV caches,
the CUDA context. Three factors were fitted to the NVML peaks measured on an H100
(docs/benchmarks.md); docs/memory.md gives every formula, the fit and the residual of each case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.config import ConfigError, RunConfig, config_from_dict
from engine.model_dims import ModelDims, load_model_dims
from engine.units import GIB

STAGES = ("train", "infer", "evaluate")

# Measured (/work/shared/reference/gpu-and-reliability.md, docs/benchmarks.md): a CUDA context costs
# ~520 MiB per process; an idle H100 with no process shows ~480 MiB used (driver reservation), which
# a stage's peak sits on top of.
CUDA_CONTEXT_GIB = 0.5
IDLE_BASELINE_GIB = 0.47
# DDP on the 3B config: rank 0 peaked 0.9 GiB above the single-GPU run (NCCL buffers and the
# communicator), on top of the gradient buckets counted from the trainable parameters.
DDP_EXTRA_GIB = 0.9

# Fitted to the H100 peaks (docs/memory.md, "How it was fitted"):
# - ALLOCATOR: PyTorch's caching allocator reserves more than the live activations (block rounding,
#   blocks freed in one size and requested in another); multiplies the training step's activations.
# - BACKWARD_LAYERS: the gradients of one layer's activations coexist with all saved activations at
#   the start of the backward pass (and, with checkpointing, with the recomputed layer).
# - CACHE_GROWTH: a dynamic KV cache is re-allocated one token longer at every step (and copied by
#   beam reordering); the blocks it leaves behind stay reserved: NVML shows ~1.7x the live cache.
ALLOCATOR = 1.0
BACKWARD_LAYERS = 1.0
CACHE_GROWTH = 1.7

# 4-bit weights: nf4/fp4 codes (0.5 byte) plus one absmax per 64 weights: fp32, or with double
# quantization 8-bit with an fp32 constant per 256 blocks (bitsandbytes).
QUANT_BLOCK = 64
FP32 = 4


@dataclass(frozen=True)
class Lengths:
    """Token lengths the prediction assumes; None = the config's maximum (what the data can reach).

    Attributes:
        source: longest prompt (causal) or encoder input (seq2seq) in a training batch.
        target: longest summary in a training batch, EOS included.
        generation_source: longest prompt or encoder input a generation batch holds.
    """

    source: int | None = None
    target: int | None = None
    generation_source: int | None = None


@dataclass
class StagePrediction:
    """One stage's peak: ``predicted_gib`` is the NVML peak expected on a GPU with room to spare
    (calibrated; the CUDA context included, the device's idle baseline not); ``required_gib`` the least
    it runs in. They differ only where the caching allocator keeps a pool it gives back before an
    out-of-memory error (a training pool while the in-training evaluation generates)."""

    predicted_gib: float | None
    parts: dict[str, float] = field(default_factory=dict)
    required_gib: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.required_gib is None:
            self.required_gib = self.predicted_gib

    def to_json(self) -> dict[str, Any]:
        return {"predicted_gib": self.predicted_gib, "required_gib": self.required_gib, "parts": self.parts,
                "note": self.note}


@dataclass
class Footprint:
    """The prediction for every stage; ``known`` is False (with ``reason``) when the model's shape is not on disk."""

    stages: dict[str, StagePrediction]
    known: bool
    reason: str = ""
    model_config: str = ""  # the config.json the dimensions came from

    def too_big(self, gpu_total_gib: float, idle_gib: float = IDLE_BASELINE_GIB) -> list[str]:
        """Stages whose required memory plus the device's idle baseline exceeds ``gpu_total_gib``."""
        return [name for name, stage in self.stages.items()
                if stage.required_gib is not None and stage.required_gib + idle_gib > gpu_total_gib]

    def fits(self, gpu_total_gib: float, idle_gib: float = IDLE_BASELINE_GIB) -> bool | None:
        """Whether every stage fits a GPU of ``gpu_total_gib`` (NVML's total); None when unknown."""
        if not self.known:
            return None
        return not self.too_big(gpu_total_gib, idle_gib)

    def to_json(self) -> dict[str, Any]:
        """``{"stages": {stage: {"predicted_gib", "required_gib", "parts", "note"}}, "known", "reason", "model_config"}``."""
        return {"stages": {name: stage.to_json() for name, stage in self.stages.items()}, "known": self.known,
                "reason": self.reason, "model_config": self.model_config}


# --- the pieces ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dtypes:
    weight: int  # bytes per base weight as loaded (model.dtype)
    act: int  # bytes per activation element: the autocast dtype, else the weights'
    residual: int  # the residual stream: fp32 with fp32 weights, and with a 4-bit base (see _dtypes)
    amp: bool


def _dtypes(cfg: RunConfig) -> _Dtypes:
    weight = FP32 if cfg.model.dtype == "float32" else 2
    amp = cfg.train.precision in ("bf16", "fp16")
    act = 2 if amp else weight
    # PEFT's prepare_model_for_kbit_training casts every parameter that is not 4-bit (embeddings,
    # norms) to fp32, so a QLoRA model's hidden states between layers are fp32.
    residual = FP32 if weight == FP32 or cfg.quantization.load_in_4bit else act
    return _Dtypes(weight, act, residual, amp)


def _saved_linears(cfg: RunConfig, dims: ModelDims) -> set[tuple[str, str]]:
    """(stack, name) of the linears whose input autograd keeps: every one in full fine-tuning, the
    LoRA-adapted ones otherwise (a frozen weight needs no input for its gradient; LoRA's A does)."""
    linears = dims.linears()
    if not cfg.lora.enabled or cfg.lora.target_modules == "all-linear":
        return {(lin.stack, lin.name) for lin in linears}
    targets = set(cfg.lora.target_modules)
    return {(lin.stack, lin.name) for lin in linears if lin.name in targets}


def lora_parameters(cfg: RunConfig, dims: ModelDims) -> int:
    """LoRA's A and B of every adapted linear: r x (in + out) each."""
    if not cfg.lora.enabled:
        return 0
    saved = _saved_linears(cfg, dims)
    return sum(cfg.lora.r * (lin.d_in + lin.d_out) * dims.layer_count(lin.stack)
               for lin in dims.linears() if (lin.stack, lin.name) in saved)


def _input_bytes(cfg: RunConfig, dims: ModelDims, dt: _Dtypes, stack: str, group: str, in_bytes: int) -> float:
    """Bytes per token kept for the inputs of one group of linears that read the same tensor."""
    saved = _saved_linears(cfg, dims)
    members = [lin for lin in dims.linears() if lin.stack == stack and lin.group == group]
    n = sum((lin.stack, lin.name) in saved for lin in members)
    if not n:
        return 0.0
    d_in = members[0].d_in
    if cfg.lora.enabled and cfg.lora.dropout > 0:
        # Each adapted module drops out its own copy of the input (kept in the compute dtype for A's
        # gradient) and keeps the mask: the benchmark's "dropout 0.05 doubles activation memory".
        return n * (dt.act + 1) * d_in
    if dt.amp and in_bytes != dt.act:
        return n * dt.act * d_in  # autocast casts the fp32 input once per linear, and each cast is kept
    return in_bytes * d_in  # one tensor shared by the group


def _decoder_only_layer(cfg: RunConfig, dims: ModelDims, dt: _Dtypes) -> float:
    """Bytes per token a Llama/Qwen-style decoder layer keeps for backward (training, SDPA)."""
    h, a, r, i = dims.hidden, dt.act, dt.residual, dims.intermediate
    liger = cfg.train.use_liger_kernel
    norm = (r if liger else FP32) * h  # Liger's RMSNorm keeps its input; HF's eager one an fp32 copy
    total = 2 * norm
    total += _input_bytes(cfg, dims, dt, "decoder", "attn_in", r) + _input_bytes(cfg, dims, dt, "decoder", "mlp_in", r)
    total += _input_bytes(cfg, dims, dt, "decoder", "o", a) + _input_bytes(cfg, dims, dt, "decoder", "down", a)
    # SDPA keeps q, k, v and its output; with the padding mask of a training batch transformers
    # repeats the KV heads to every query head first (use_gqa_in_sdpa is False with a mask).
    total += 4 * dims.q_dim * a
    if dims.qk_norm:  # Qwen3's per-head norms keep q and k as projected
        total += (dims.q_dim + dims.kv_dim) * (a if liger else FP32)
    if dims.gated:  # Liger's SwiGLU keeps gate and up; eager SiLU also keeps its output
        total += (2 if liger else 3) * i * a
    else:
        total += i * a
    return total


def _seq2seq_layers(cfg: RunConfig, dims: ModelDims, dt: _Dtypes) -> tuple[float, float, float]:
    """Bytes kept per token by one encoder layer, one decoder layer, and one decoder layer per
    encoder token (cross-attention's K and V), for BART (post-LayerNorm) and T5 (pre-RMSNorm).

    Under autocast LayerNorm and T5's RMSNorm run in fp32 and keep an fp32 input; dropout keeps a
    one-byte mask per site; GELU keeps its input.
    """
    h, a, r = dims.hidden, dt.act, dt.residual
    norm = (FP32 if dt.amp else r) * h
    mask = h if dims.dropout > 0 else 0

    def ffn(stack: str) -> float:
        width = dims.encoder_intermediate if stack == "encoder" else dims.intermediate
        core = (3 if dims.gated else 1) * width * a  # gated-GELU: both branches and the GELU output
        return (_input_bytes(cfg, dims, dt, stack, "mlp_in", r) + core
                + _input_bytes(cfg, dims, dt, stack, "down", a) + norm + mask)

    def self_attention(stack: str) -> float:
        return (_input_bytes(cfg, dims, dt, stack, "attn_in", r) + 4 * dims.q_dim * a
                + _input_bytes(cfg, dims, dt, stack, "o", a) + norm + mask)

    encoder = self_attention("encoder") + ffn("encoder")
    cross_per_decoder_token = (_input_bytes(cfg, dims, dt, "decoder", "cross_q", r) + 2 * dims.q_dim * a
                               + _input_bytes(cfg, dims, dt, "decoder", "cross_o", a) + norm + mask)
    decoder = self_attention("decoder") + cross_per_decoder_token + ffn("decoder")
    cross_per_encoder_token = _input_bytes(cfg, dims, dt, "decoder", "cross_kv", r) + 2 * dims.q_dim * a
    return encoder, decoder, cross_per_encoder_token


def _pad(length: int, multiple: int | None) -> int:
    return -(-length // multiple) * multiple if multiple else length


def _optimizer_state_bytes(cfg: RunConfig, param_bytes: int) -> int:
    """AdamW's two moments per trainable parameter: in the parameter's dtype, one byte each when 8-bit."""
    return 2 if "8bit" in cfg.train.optim else 2 * param_bytes


@dataclass(frozen=True)
class _Train:
    resident: dict[str, float]  # bytes that live for the whole stage
    dynamic: dict[str, float]  # bytes of one step's activations and transients (allocator factor applies)


def _train_parts(cfg: RunConfig, dims: ModelDims, lengths: Lengths, gpus: int) -> _Train:
    dt = _dtypes(cfg)
    t = cfg.train
    pad = t.pad_to_multiple_of
    source = min(lengths.source or cfg.prompt.max_source_length, cfg.prompt.max_source_length)
    target = min(lengths.target or cfg.prompt.max_target_length, cfg.prompt.max_target_length)

    resident: dict[str, float] = {"cuda_context": CUDA_CONTEXT_GIB * GIB}
    if cfg.quantization.load_in_4bit:
        per_weight = 0.5 + (1 / QUANT_BLOCK + FP32 / (QUANT_BLOCK * 256) if cfg.quantization.double_quant
                            else FP32 / QUANT_BLOCK)
        resident["weights"] = dims.linear_params() * per_weight + dims.other_params() * FP32
    else:
        resident["weights"] = dims.parameters() * dt.weight
    if cfg.lora.enabled:
        # PEFT keeps the adapters in fp32 next to a half-precision base: parameter, gradient, two moments.
        trainable, grad_bytes = lora_parameters(cfg, dims), FP32
        resident["lora_adapters"] = trainable * FP32
        resident["gradients"] = trainable * grad_bytes
        resident["optimizer_state"] = trainable * _optimizer_state_bytes(cfg, FP32)
    else:
        trainable, grad_bytes = dims.parameters(), dt.weight
        resident["gradients"] = trainable * grad_bytes
        resident["optimizer_state"] = trainable * _optimizer_state_bytes(cfg, dt.weight)
        if dt.amp and dt.weight != dt.act:
            # autocast's half-precision copy of every weight, kept by each linear for the backward pass
            resident["autocast_weight_copies"] = trainable * dt.act
    if gpus > 1:
        resident["ddp"] = trainable * grad_bytes + DDP_EXTRA_GIB * GIB

    b = t.batch_size
    dynamic: dict[str, float] = {}
    if dims.family == "decoder":
        tokens = b * _pad(source + target, pad)
        per_layer = _decoder_only_layer(cfg, dims, dt)
        one_layer = tokens * per_layer
        stored = (tokens * dims.layers * dt.residual * dims.hidden if t.gradient_checkpointing
                  else tokens * dims.layers * per_layer)
        # TRL's SFTTrainer projects through the LM head in tiles (its fused LM head, with or without
        # Liger): no vocabulary-sized logits, only the final hidden states and their fp32 gradient.
        dynamic["loss_head"] = tokens * dims.hidden * (dt.residual + FP32)
    else:
        enc_tokens, dec_tokens = b * _pad(source, pad), b * _pad(target, pad)
        enc, dec, cross = _seq2seq_layers(cfg, dims, dt)
        one_layer = max(enc_tokens * enc, dec_tokens * dec + enc_tokens * cross)
        if t.gradient_checkpointing:
            stored = (enc_tokens * dims.encoder_layers + dec_tokens * dims.layers) * dt.residual * dims.hidden
        else:
            stored = (enc_tokens * enc * dims.encoder_layers
                      + (dec_tokens * dec + enc_tokens * cross) * dims.layers)
        # Embedding LayerNorm input and dropout mask of each stack.
        stored += (enc_tokens + dec_tokens) * (FP32 + 1) * dims.hidden
        # Seq2SeqTrainer's loss: vocabulary-sized logits in the compute dtype, their fp32 log-softmax
        # kept for backward, then its fp32 gradient.
        dynamic["loss_head"] = dec_tokens * dims.vocab * (dt.act + 2 * FP32)
    dynamic["activations"] = stored + (one_layer if t.gradient_checkpointing else 0)
    dynamic["backward_transient"] = BACKWARD_LAYERS * one_layer
    return _Train(resident, dynamic)


@dataclass(frozen=True)
class _Generation:
    parts: dict[str, float]  # bytes at the peak moment, beyond weights and context
    first_step: float  # the cache as its first step allocates it (prompt KV, cross-attention KV)


def _generation_parts(cfg: RunConfig, dims: ModelDims, batch: int, source: int, kv_bytes: int, act: int,
                      residual: int) -> _Generation:
    """The memory ``generate()`` adds to the weights for one batch of ``batch`` dialogues."""
    gen = cfg.generation
    rows = batch * gen.num_beams  # transformers expands every input to its beams
    new = gen.max_new_tokens
    growth = 1.0 if gen.cache_implementation == "static" else CACHE_GROWTH
    # Beam search scores the whole vocabulary of each row in fp32 (logits, log-softmax, scores).
    logits = rows * dims.vocab * FP32 * 3
    if dims.family == "decoder":
        per_position = dims.layers * 2 * dims.kv_dim * kv_bytes
        prompt_cache = rows * source * per_position
        final_cache = rows * (source + new) * per_position
        # The prompt pass holds, in its widest moment, the MLP's three intermediate-wide tensors and
        # the residual and normed hidden states of every prompt token (logits only for the last one).
        width = (3 if dims.gated else 2) * dims.intermediate + 2 * dims.hidden
        prefill = {"kv_cache": prompt_cache, "prompt_pass": rows * source * width * act}
        decode = {"kv_cache": final_cache, "kv_cache_growth": final_cache * (growth - 1)}
        parts = decode if sum(decode.values()) >= sum(prefill.values()) else prefill
        return _Generation({**parts, "logits": logits}, prompt_cache)
    # Encoder-decoder: the cross-attention K/V of every decoder layer and the encoder output are
    # expanded to the beams once; the decoder's own cache grows token by token.
    cross = rows * source * dims.layers * 2 * dims.q_dim * kv_bytes
    encoder_out = rows * source * dims.hidden * residual
    self_cache = rows * new * dims.layers * 2 * dims.q_dim * kv_bytes
    # Beam reordering copies each cross-attention tensor while the old one still lives.
    reorder = rows * source * dims.q_dim * kv_bytes if gen.num_beams > 1 else 0
    parts = {"cross_attention_cache": cross, "encoder_output": encoder_out, "kv_cache": self_cache,
             "kv_cache_growth": self_cache * (growth - 1), "beam_reorder": reorder, "logits": logits}
    return _Generation(parts, cross + encoder_out)


def _gib(parts: Mapping[str, float]) -> dict[str, float]:
    return {name: round(value / GIB, 2) for name, value in parts.items() if value}


def _stage(parts: Mapping[str, float], required: float | None = None, note: str = "") -> StagePrediction:
    total = sum(parts.values())
    return StagePrediction(round(total / GIB, 2), _gib(parts),
                           round((required if required is not None else total) / GIB, 2), note)


def _train_stage(cfg: RunConfig, dims: ModelDims, lengths: Lengths, gpus: int) -> StagePrediction:
    train = _train_parts(cfg, dims, lengths, gpus)
    dynamic = {name: ALLOCATOR * value for name, value in train.dynamic.items()}
    parts = {**train.resident, **dynamic}
    step = sum(parts.values())
    if cfg.train.eval_strategy == "no":
        return _stage(parts, note="one training step at the longest batch")
    # In-training evaluation generates with the training model under autocast, beside the training
    # pool the caching allocator keeps. Its first step's cache (tensors larger than any training
    # block) lands in new segments on top of that pool; the growing rest reuses the pool's free
    # blocks. Under memory pressure the allocator gives free segments back before failing, so what
    # is required is the larger of a training step and resident state + generation.
    dt = _dtypes(cfg)
    batch = min(cfg.generation.batch_size, cfg.data.max_eval_samples or cfg.generation.batch_size)
    source = min(lengths.generation_source or cfg.prompt.max_source_length, cfg.prompt.max_source_length)
    gen = _generation_parts(cfg, dims, batch, source, dt.act, dt.act, dt.residual)
    parts["in_training_generation"] = gen.first_step
    resident = sum(value for name, value in train.resident.items() if name != "gradients")
    required = max(step, resident + sum(gen.parts.values()))
    return _stage(parts, required, "a training step at the longest batch, plus the in-training evaluation's "
                                   "generation cache beside the training pool")


def _infer_stage(cfg: RunConfig, dims: ModelDims, lengths: Lengths) -> StagePrediction:
    # infer loads the base in model.dtype (never 4-bit) and merges the adapter; no autocast.
    weight = FP32 if cfg.model.dtype == "float32" else 2
    source = min(lengths.generation_source or cfg.prompt.max_source_length, cfg.prompt.max_source_length)
    gen = _generation_parts(cfg, dims, cfg.generation.batch_size, source, weight, weight, weight)
    parts = {"cuda_context": CUDA_CONTEXT_GIB * GIB, "weights": dims.parameters() * weight, **gen.parts}
    return _stage(parts, note="the first (longest) generation batch")


# --- the public surface -------------------------------------------------------------------------


def predict(cfg: RunConfig, workspace: Path | str | None = None, *, lengths: Lengths | None = None,
            gpus: int = 1, dims: ModelDims | None = None, env: Mapping[str, str] | None = None) -> Footprint:
    """Predict each stage's peak GPU memory for ``cfg``.

    Args:
        cfg: the validated run config.
        workspace: where relative model paths resolve (the engine's working directory); default cwd.
        lengths: token lengths to assume instead of the config's maxima (e.g. measured on the data).
        gpus: GPUs the train stage runs on (DDP adds gradient buckets and NCCL buffers per GPU).
        dims: the model's dimensions, when already read (skips the config.json lookup).
        env: environment for the hub-cache lookup (HF_HUB_CACHE, HF_HOME); default os.environ.

    Returns:
        A :class:`Footprint`; ``known`` is False, with the places looked at, when the model's
        ``config.json`` is not on disk.
    """
    lengths = lengths or Lengths()
    evaluate = StagePrediction(0.0, {}, 0.0, "CPU only: engine/evaluate.py scores Korean ROUGE without torch")
    if cfg.train.device == "cpu":
        cpu = "train.device: cpu — every stage runs on the CPU"
        return Footprint({"train": StagePrediction(0.0, {}, 0.0, cpu), "infer": StagePrediction(0.0, {}, 0.0, cpu),
                          "evaluate": evaluate}, True, cpu)
    reason = ""
    if dims is None:
        dims, reason = load_model_dims(cfg.model.name_or_path, workspace, env)
    if dims is None:
        unknown = StagePrediction(None, {}, None, "unknown: " + reason)
        return Footprint({"train": unknown, "infer": replace(unknown), "evaluate": evaluate}, False, reason)
    return Footprint({"train": _train_stage(cfg, dims, lengths, gpus), "infer": _infer_stage(cfg, dims, lengths),
                      "evaluate": evaluate}, True, "", dims.source)


@dataclass
class Fix:
    """Config changes that make a run fit: ``changes`` as dotted keys for ``--set``/retry, ``text`` one
    line per change for people, ``footprint`` the prediction with them."""

    changes: dict[str, Any]
    text: list[str]
    footprint: Footprint

    def to_json(self) -> dict[str, Any]:
        return {"changes": self.changes, "text": self.text, "footprint": self.footprint.to_json()}


def _train_levers(cfg: RunConfig) -> list[tuple[dict[str, Any], list[str]]]:
    """Training changes from cheapest to dearest: halve the micro-batch (the effective batch kept by
    gradient accumulation), recompute activations, then a 4-bit base (LoRA only)."""
    t = cfg.train
    out: list[tuple[dict[str, Any], list[str]]] = [({}, [])]

    def halvings(prefix: dict[str, Any], text: list[str]) -> list[tuple[dict[str, Any], list[str]]]:
        found, batch = [], t.batch_size
        while batch > 1:
            batch //= 2
            accum = t.grad_accum * t.batch_size // batch
            line = f"train.batch_size {t.batch_size} → {batch} (train.grad_accum {t.grad_accum} → {accum})"
            if batch * accum != t.batch_size * t.grad_accum:
                line += f", effective batch {t.batch_size * t.grad_accum} → {batch * accum}"
            found.append(({**prefix, "train.batch_size": batch, "train.grad_accum": accum}, [*text, line]))
        return found

    out += halvings({}, [])[:1]
    ckpt: tuple[dict[str, Any], list[str]] = ({}, [])
    if not t.gradient_checkpointing:
        ckpt = ({"train.gradient_checkpointing": True}, ["train.gradient_checkpointing false → true"])
        out.append(ckpt)
    out += halvings(*ckpt)
    if cfg.lora.enabled and cfg.model.kind == "causal" and not cfg.quantization.load_in_4bit:
        quant = ({**ckpt[0], "quantization.load_in_4bit": True, "quantization.compute_dtype": cfg.model.dtype},
                 [*ckpt[1], f"quantization.load_in_4bit false → true (nf4, compute dtype {cfg.model.dtype})"])
        out.append(quant)
        out += halvings(*quant)
    return out


def _generation_levers(cfg: RunConfig) -> list[tuple[dict[str, Any], list[str]]]:
    """Generation changes: a smaller generate() batch first (same summaries, slower), then fewer beams
    (different summaries)."""
    g = cfg.generation
    out: list[tuple[dict[str, Any], list[str]]] = [({}, [])]
    batch = g.batch_size
    while batch > 1:
        batch //= 2
        out.append(({"generation.batch_size": batch}, [f"generation.batch_size {g.batch_size} → {batch}"]))
    beams = g.num_beams
    while beams > 1:
        beams //= 2
        out.append(({"generation.num_beams": beams}, [f"generation.num_beams {g.num_beams} → {beams}"]))
    return out


def cheapest_fix(cfg: RunConfig, gpu_total_gib: float, workspace: Path | str | None = None, *,
                 lengths: Lengths | None = None, gpus: int = 1, idle_gib: float = IDLE_BASELINE_GIB,
                 env: Mapping[str, str] | None = None) -> Fix | None:
    """The cheapest config change after which every stage fits a GPU of ``gpu_total_gib``.

    Training levers are tried before generation levers, each list from cheapest to dearest
    (:func:`_train_levers`, :func:`_generation_levers`); the first combination that fits wins.

    Returns:
        A :class:`Fix` (empty ``changes`` when the config already fits), or None when the model is
        unknown or no combination fits.
    """
    dims, _reason = load_model_dims(cfg.model.name_or_path, workspace, env)
    if dims is None:
        return None
    base = cfg.model_dump()
    for gen_changes, gen_text in _generation_levers(cfg):
        for train_changes, train_text in _train_levers(cfg):
            changes = {**train_changes, **gen_changes}
            try:
                candidate = config_from_dict(base, "cheapest_fix", changes) if changes else cfg
            except ConfigError:
                continue  # a combination the config refuses (e.g. 4-bit on a CPU run)
            footprint = predict(candidate, workspace, lengths=lengths, gpus=gpus, dims=dims)
            if footprint.fits(gpu_total_gib, idle_gib):
                return Fix(changes, [*train_text, *gen_text], footprint)
    return None
