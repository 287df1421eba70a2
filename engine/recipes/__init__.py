"""Provides what the seq2seq and SFT recipes share: Trainer arguments from the config and the
truncation count every recipe reports instead of dropping samples silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.contract import Event

# Under train.compile Liger's kernels inside the decoder layers are switched off: inductor generates
# RMSNorm, RoPE and SiLU*mul itself and fuses them with their neighbours (residual adds, LoRA adds),
# which Liger's separately launched Triton kernels would prevent; a Python-side Triton launcher inside
# the layer could also break the graph. The LM head and loss stay fused and eager either way: TRL's
# SFTTrainer patches its own chunked LM head and refuses Liger's fused_linear_cross_entropy (measured
# on the H100: naming it raised ValueError), so the key is left to TRL.
LIGER_OUTSIDE_LAYERS = {"cross_entropy": False, "rope": False, "rms_norm": False, "swiglu": False}


def sampling_strategy(t) -> str:
    """transformers' ``train_sampling_strategy`` for ``cfg.train``: ``batch_rebalance`` wins over ``group_by_length``.

    Why rebalance exists here (docs/benchmarks.md, issue 16): the 3B step is bound by the host
    launching kernels, so fewer, larger micro-batches per optimizer step run faster; with plain length
    grouping a larger micro-batch of the longest samples runs out of memory, while transformers'
    ``BatchRebalanceSampler`` sizes each micro-batch by its padded cost (more short samples, fewer long
    ones) within each step's fixed set of samples — and balances that cost across GPUs too.
    """
    if t.batch_rebalance:
        return "batch_rebalance"
    return "group_by_length" if t.group_by_length else "random"


def training_arguments(cfg: RunConfig, output_dir: Path, device: str, with_eval: bool) -> dict[str, Any]:
    """Keyword arguments for ``TrainingArguments`` (and its Seq2Seq/SFT subclasses) from ``cfg.train``.

    Args:
        cfg: the run config.
        output_dir: ``checkpoints/<nickname>/trainer`` (intermediate checkpoints, ``save_total_limit``).
        device: ``cuda`` or ``cpu``.
        with_eval: whether an eval dataset exists (otherwise evaluation is switched off).
    """
    t = cfg.train
    eval_strategy = t.eval_strategy if with_eval else "no"
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps,
        "learning_rate": t.learning_rate,
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": t.eval_batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "warmup_steps": t.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        "weight_decay": t.weight_decay,
        "lr_scheduler_type": t.lr_scheduler,
        "max_grad_norm": t.max_grad_norm,
        "optim": t.optim,
        "bf16": t.precision == "bf16",
        "fp16": t.precision == "fp16",
        # transformers 5's names for gradient checkpointing (the old ones warn in every run).
        "activation_checkpointing": t.gradient_checkpointing,
        # Reentrant checkpointing breaks with frozen (LoRA/4-bit) bases and is deprecated in torch.
        "activation_checkpointing_kwargs": {"use_reentrant": False} if t.gradient_checkpointing else None,
        "train_sampling_strategy": sampling_strategy(t),
        "seed": t.seed,
        "logging_steps": t.logging_steps,
        "eval_strategy": eval_strategy,
        "eval_steps": t.eval_steps,
        "save_strategy": t.save_strategy,
        "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit,
        "report_to": [r for r in t.report_to if r != "none"] or "none",
        "use_cpu": device == "cpu",
        "dataloader_num_workers": t.dataloader_num_workers,
        # Progress reports real (non-pad) tokens per second: padding is work, not throughput.
        "include_num_input_tokens_seen": "non_padding",
        "use_liger_kernel": t.use_liger_kernel,
        "liger_kernel_config": LIGER_OUTSIDE_LAYERS if t.use_liger_kernel and t.compile else None,
        "disable_tqdm": True,  # run.log is a file: progress bars would fill it with carriage returns
        "remove_unused_columns": False,
    }
    if t.early_stopping_patience and eval_strategy != "no":
        kwargs.update(load_best_model_at_end=True, metric_for_best_model="eval_rouge_final", greater_is_better=True)
        if t.save_strategy != eval_strategy:
            # load_best_model_at_end needs a checkpoint at every evaluation.
            kwargs.update(save_strategy=eval_strategy, save_steps=t.eval_steps)
    return kwargs


def report_truncations(events, split: str, total: int, cuts: list[tuple[int, str, str]]) -> None:
    """Emit a ``warning`` event for each (count, what, config key) with samples cut by a length limit.

    Cut samples are kept, never dropped: the warning says how many and which key keeps more text.
    """
    for truncated, what, limit_key in cuts:
        if truncated:
            events.emit(Event.WARNING, count=truncated,
                        message=f"{split}: {truncated} of {total} samples had their {what} truncated to {limit_key}; "
                                f"they are kept (raise {limit_key} to keep more text)")
