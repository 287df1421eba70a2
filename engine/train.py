"""Provides ``python -m engine train``: config → data → model → Trainer → atomic ``final_model``,
with every step reported as events in the run directory.
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path
from typing import Any

from engine.artifacts import (
    CONFIG_FILE,
    EventWriter,
    atomic_directory,
    atomic_write_text,
    final_model_dir,
    is_main_process,
    stage_key,
    world_size,
    write_final_model_meta,
)
from engine.config import ConfigError, RunConfig, load_config, resolve_path
from engine.contract import TRAINER_DIR, ArtifactKind, Event, Phase, Stage
from engine.du import tree_size
from engine.profile_settings import profile_settings
from engine.runtime import (
    DiskQuotaReached,
    Interrupted,
    bind_local_device,
    resolve_device,
    run_command,
    stop_requested,
)


def load_samples(cfg: RunConfig, events: EventWriter) -> tuple[list, list]:
    """Train rows (first ``data.max_train_samples``) and the dev rows scored during training."""
    from engine.data import load_split

    events.emit(Event.PHASE, name=Phase.LOAD_DATA)
    data_dir = resolve_path(cfg.data.dir)
    train, _ = load_split(data_dir, "train", normalize=cfg.data.normalize)
    dev, _ = load_split(data_dir, "dev", normalize=cfg.data.normalize)
    if cfg.data.max_train_samples:
        train = train[: cfg.data.max_train_samples]
    if cfg.data.max_eval_samples:
        dev = dev[: cfg.data.max_eval_samples]
    return train, dev


def recipe_for(kind: str):
    """The recipe module for a model kind (seq2seq → Seq2SeqTrainer, causal → SFTTrainer)."""
    if kind == "seq2seq":
        from engine.recipes import seq2seq

        return seq2seq
    from engine.recipes import sft

    return sft


def resume_checkpoint(args: argparse.Namespace, cfg: RunConfig):
    """The complete checkpoint ``--resume-from`` names (None without the flag), and notes on skipped ones.

    A half-written checkpoint (no marker, or a file of the wrong size) is skipped for the newest
    complete one before it, never loaded.

    Raises:
        ConfigError: no complete checkpoint there, or the config changed a key the checkpoint depends on.
    """
    from engine.checkpoints import candidates, find_resumable, resume_blockers

    raw = getattr(args, "resume_from", None)
    if not raw:
        return None, []
    found, skipped = find_resumable(candidates(resolve_path(raw)))
    if found is None:
        why = "; ".join(skipped) or "no checkpoint-* directory there"
        raise ConfigError(f"--resume-from {raw}: no complete checkpoint ({why}); train without --resume-from to start over")
    blockers = resume_blockers(found.meta.get("fingerprint") or {}, cfg.model_dump())
    if blockers:
        raise ConfigError(f"--resume-from {found.path}: this config cannot continue that checkpoint: "
                          + "; ".join(blockers) + ". Set those keys back, or train without --resume-from")
    return found, skipped


def refuse_model_mistakes(cfg: RunConfig, source: str) -> None:
    """Stop before loading anything when the model's files show a config mistake (engine/model_check.py).

    ``add`` refuses these already when the model is on disk then; a model downloaded since, or a run
    started by hand, is caught here, naming the key and the fix instead of failing inside transformers.

    Raises:
        ConfigError: one line per mistake.
    """
    from engine.model_check import model_mistakes

    mistakes = model_mistakes(cfg, Path.cwd())
    if mistakes:
        raise ConfigError("\n".join(f"{source}: {mistake}" for mistake in mistakes))


def disk_guard(args: argparse.Namespace, output_dir: Path, save_on_stop: bool = False):
    """The disk-quota callback, or None when no limit was handed over (a standalone run).

    The quota belongs to the workspace, not to the run config: the manager passes
    ``--disk-root PATH --disk-stop-bytes N`` (dialsum_tui/manager/disk.py: engine_disk_args).
    """
    from engine.callbacks import DiskGuardCallback

    stop_bytes = getattr(args, "disk_stop_bytes", None)
    if stop_bytes is None:
        return None
    return DiskGuardCallback(resolve_path(getattr(args, "disk_root", None) or "."), stop_bytes, output_dir,
                             save_on_stop=save_on_stop)


def build_callbacks(cfg: RunConfig, loaded, dev: list, events: EventWriter, guard, run_dir: Path | None = None) -> list:
    """Events, signal stop, disk guard, ROUGE eval and (if configured) early stopping — in that order,
    so the ROUGE score is in the metrics before early stopping reads them."""
    from transformers import EarlyStoppingCallback

    from engine.callbacks import (
        CheckpointMarkerCallback,
        EventsCallback,
        GenerationEvalCallback,
        StopOnSignalCallback,
    )
    from engine.checkpoints import fingerprint
    from engine.prompts import model_inputs

    # The marker first: the checkpoint artifact event then names a checkpoint already marked complete.
    callbacks: list = [CheckpointMarkerCallback(cfg.hash(), fingerprint(cfg.model_dump()), str(run_dir.resolve()) if run_dir else None),
                       EventsCallback(events),
                       StopOnSignalCallback(cfg.train.save_on_stop)]
    profile = profile_settings()
    if profile.out_dir is not None:
        from engine.callbacks import TorchProfilerCallback

        callbacks.append(TorchProfilerCallback(profile.out_dir, start=profile.start))
    if guard is not None:
        callbacks.append(guard)
    if dev and cfg.train.eval_strategy != "no":
        sources = model_inputs(dev, cfg.prompt, loaded.kind, loaded.tokenizer)
        callbacks.append(GenerationEvalCallback(
            events, sources, [s.summary or "" for s in dev], loaded.kind, cfg.generation,
            cfg.prompt.max_source_length, cfg.generation.batch_size,
        ))
        if cfg.train.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))
    return callbacks


def save_final_model(cfg: RunConfig, loaded, model, metrics: dict[str, Any], events: EventWriter, key: str) -> Path:
    """Write ``checkpoints/<key>/final_model`` atomically; the metadata marker goes in last.

    A LoRA run saves the adapter (loaded on its recorded base at inference) unless
    ``lora.merge_on_save``, which saves merged full weights in ``model.dtype``.
    """
    from engine.runtime import torch_dtype

    events.emit(Event.PHASE, name=Phase.SAVE)
    target = final_model_dir(resolve_path(cfg.paths.checkpoints), key)
    merged = cfg.lora.enabled and cfg.lora.merge_on_save and not cfg.quantization.load_in_4bit
    if cfg.lora.enabled and cfg.lora.merge_on_save and not merged:
        events.emit(Event.WARNING, message="lora.merge_on_save ignored: a 4-bit base cannot be merged losslessly; saving the adapter")
    with atomic_directory(target) as tmp:
        to_save = model.merge_and_unload().to(torch_dtype(cfg.model.dtype)) if merged else model
        to_save.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        write_final_model_meta(tmp, {
            "nickname": cfg.model.nickname,
            "artifact_key": key,
            "kind": cfg.model.kind,
            "base_model": loaded.base_model,
            "dtype": cfg.model.dtype,
            "adapter": cfg.lora.enabled and not merged,
            "merged": merged,
            "quantized_base": cfg.quantization.load_in_4bit,
            "tokenizer": "included",
            "added_tokens": loaded.added_tokens,
            "metrics": metrics,
            "config_hash": cfg.hash(),
        })
    events.emit(Event.ARTIFACT, kind=ArtifactKind.FINAL_MODEL, path=str(target), bytes=tree_size(target))
    return target


def start_trackers(cfg: RunConfig, run_dir: Path, events: EventWriter) -> None:
    """Point the trackers of ``train.report_to`` at ``runs/<id>/trackers/`` before the Trainer builds their callbacks.

    Set in this process's environment, read by the callbacks and the trackers as they start: the
    stage is its own process, so nothing outside this run sees the change.
    """
    from engine.recipes import tracker_environment

    env, notes = tracker_environment(cfg.train.report_to, run_dir, os.environ)
    os.environ.update(env)
    if is_main_process():
        for note in notes:
            events.emit(Event.WARNING, message=note)


def final_metrics(trainer) -> dict[str, Any]:
    """Last training loss, last eval loss/ROUGE and step count from the Trainer's log history."""
    out: dict[str, Any] = {"steps": trainer.state.global_step}
    for entry in trainer.state.log_history:
        for key in ("loss", "eval_loss", "eval_rouge_final", "train_loss"):
            if key in entry:
                out[key] = entry[key]
    first = next((e["loss"] for e in trainer.state.log_history if "loss" in e), None)
    if first is not None:
        out["first_loss"] = first
    return out


def train(args: argparse.Namespace, events: EventWriter) -> dict[str, Any]:
    """The ``train`` command body (run inside :func:`engine.runtime.run_command`)."""
    from transformers import set_seed

    from engine.modeling import load_for_training

    cfg = load_config(args.config, args.set)
    run_dir = Path(args.run_dir)
    if is_main_process():  # one writer per file; every rank of `accelerate launch` runs this function
        atomic_write_text(run_dir / CONFIG_FILE, cfg.to_yaml())
    refuse_model_mistakes(cfg, str(args.config))
    device = resolve_device(cfg, str(args.config))
    bind_local_device(device)
    resume, skipped = resume_checkpoint(args, cfg)
    resumed = {"resumed_from": str(resume.path), "resumed_step": resume.step, "resumed_total": resume.total} if resume else {}
    events.emit(Event.STARTED, nickname=cfg.model.nickname, model=cfg.model.name_or_path, config_hash=cfg.hash(),
                device=device, dtype=cfg.model.dtype, kind=cfg.model.kind, lora=cfg.lora.enabled,
                world_size=world_size(), **resumed)
    for note in skipped:
        events.emit(Event.WARNING, message=note)
    set_seed(cfg.train.seed)
    train_samples, dev = load_samples(cfg, events)
    events.emit(Event.PHASE, name=Phase.LOAD_MODEL)
    loaded = load_for_training(cfg, device)
    recipe = recipe_for(cfg.model.kind)
    rng = random.Random(cfg.train.seed)
    train_ds = recipe.build_dataset(train_samples, cfg, loaded.tokenizer, rng, "train", events)
    eval_ds = recipe.build_dataset(dev, cfg, loaded.tokenizer, None, "dev", events) if dev else None
    key = stage_key(getattr(args, "artifact_key", None), cfg.model.nickname)
    output_dir = resolve_path(cfg.paths.checkpoints) / key / TRAINER_DIR
    guard = disk_guard(args, output_dir, cfg.train.save_on_stop)
    start_trackers(cfg, run_dir, events)
    trainer = recipe.build_trainer(cfg, loaded, train_ds, eval_ds, output_dir, device,
                                   build_callbacks(cfg, loaded, dev, events, guard, run_dir))
    # The Trainer's own resume: weights or adapter, optimizer, scheduler, RNG, data position, global step.
    trainer.train(resume_from_checkpoint=str(resume.path) if resume else None)
    if stop_requested():
        raise Interrupted(f"received {stop_requested()} at step {trainer.state.global_step}/{trainer.state.max_steps}"
                          + saved_note(output_dir, trainer.state.global_step))
    if guard is not None and guard.tripped:
        raise DiskQuotaReached(guard.tripped)
    metrics = final_metrics(trainer)
    if is_main_process():  # DDP keeps the weights identical on every rank: one copy is the model
        save_final_model(cfg, loaded, trainer.model, metrics, events, key)
    return metrics


def saved_note(output_dir: Path, step: int) -> str:
    """"; checkpoint-N saved, resumable" when a complete checkpoint of ``step`` exists (to resume from), else ""."""
    from engine.checkpoints import checkpoint_problem
    from engine.contract import CHECKPOINT_PREFIX

    ckpt = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    return f"; {ckpt.name} saved, resumable" if checkpoint_problem(ckpt) is None else "; no checkpoint saved at the stop"


def main(args: argparse.Namespace) -> int:
    """CLI entry: ``python -m engine train``."""
    return run_command(Stage.TRAIN, args, train)
