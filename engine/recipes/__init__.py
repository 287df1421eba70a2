"""Provides what the seq2seq and SFT recipes share: Trainer arguments from the config, the
environment that keeps each experiment tracker's files in the run directory, and the truncation
count every recipe reports instead of dropping samples silently.
"""

from __future__ import annotations

import netrc
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

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
        "report_to": "none" if t.report_to == ["none"] else list(t.report_to),
        # output_dir is checkpoints/<key>/trainer: the trackers name the run as the manager does (kobart-r12).
        "run_name": output_dir.parent.name,
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


# runs/<id>/trackers/<name>/ holds each tracker's local files (event files, offline runs, databases).
TRACKERS_DIR = "trackers"

# The variable each tracker reads for where its local files go (transformers' TensorBoardCallback reads
# TENSORBOARD_LOGGING_DIR, else output_dir/runs/; wandb writes <WANDB_DIR>/wandb/; trackio keeps its
# databases in TRACKIO_DIR, else ~/.cache/huggingface/trackio; swanlab in SWANLAB_LOG_DIR, else ./swanlog;
# mlflow's tracking store is MLFLOW_TRACKING_URI, else ./mlruns). The others log to their own servers
# (comet_ml, neptune, clearml, dagshub), to ./dvclive (dvclive) or to output_dir (codecarbon).
TRACKER_DIR_VARIABLES = {
    "tensorboard": "TENSORBOARD_LOGGING_DIR",
    "wandb": "WANDB_DIR",
    "trackio": "TRACKIO_DIR",
    "swanlab": "SWANLAB_LOG_DIR",
    "mlflow": "MLFLOW_TRACKING_URI",
}


def tracker_environment(report_to: list[str], run_dir: Path,
                        environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The environment variables that put each tracker of ``train.report_to`` under ``run_dir/trackers/<name>/``.

    A variable the user already set wins (a team's shared tracking server or directory). wandb logs
    offline unless it can reach an account: without ``WANDB_MODE`` and without an API key
    (``WANDB_API_KEY`` or ``wandb login``'s netrc entry), ``wandb.init`` in a stage with no terminal
    would fail the run at its first step, so the run is kept locally instead and a warning says how
    to upload it (``wandb sync``) or go online (``WANDB_MODE=online``).

    Args:
        report_to: ``cfg.train.report_to``.
        run_dir: ``runs/<id>``.
        environ: the current environment (``os.environ``).

    Returns:
        (variables to set, warnings to report); the directories are created.
    """
    env: dict[str, str] = {}
    notes: list[str] = []
    for name in report_to:
        variable = TRACKER_DIR_VARIABLES.get(name)
        if variable is None or environ.get(variable):
            continue
        folder = (run_dir / TRACKERS_DIR / name).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        env[variable] = folder.as_uri() if name == "mlflow" else str(folder)
    if "wandb" in report_to and not environ.get("WANDB_MODE") and not wandb_key_known(environ):
        env["WANDB_MODE"] = "offline"
        where = env.get("WANDB_DIR") or environ["WANDB_DIR"]
        notes.append(f"wandb: no API key here (WANDB_API_KEY or `wandb login`), so the run is logged offline in {where}; "
                     f"`wandb sync {where}/wandb/offline-run-*` uploads it later (set WANDB_MODE=online to log live)")
    return env, notes


def wandb_key_known(environ: Mapping[str, str]) -> bool:
    """Whether wandb will find an API key: ``WANDB_API_KEY``, or a netrc entry for its host (``wandb login``)."""
    if environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    path = environ.get("NETRC") or str(Path(environ.get("HOME") or "~").expanduser() / ".netrc")
    try:
        return netrc.netrc(path).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def report_truncations(events, split: str, total: int, cuts: list[tuple[int, str, str]]) -> None:
    """Emit a ``warning`` event for each (count, what, config key) with samples cut by a length limit.

    Cut samples are kept, never dropped: the warning says how many and which key keeps more text.
    """
    for truncated, what, limit_key in cuts:
        if truncated:
            events.emit(Event.WARNING, count=truncated,
                        message=f"{split}: {truncated} of {total} samples had their {what} truncated to {limit_key}; "
                                f"they are kept (raise {limit_key} to keep more text)")
