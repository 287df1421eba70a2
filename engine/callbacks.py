"""Provides the Trainer callbacks that turn training into events (progress, losses, ROUGE evals,
checkpoints) and stop it cleanly on a signal or before the disk quota is reached.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from engine.artifacts import EventWriter
from engine.config import GenerationConfig
from engine.contract import CHECKPOINT_PREFIX, ArtifactKind, Event, Phase
from engine.du import tree_size
from engine.runtime import stop_from_other_rank, stop_requested
from engine.units import disk_full, format_bytes


def any_rank(flag: bool, args) -> bool:
    """Whether ``flag`` is set on any rank of a distributed run (just ``flag`` when not distributed).

    A collective: every rank must call it at the same point (the same step hook), which the Trainer
    guarantees. Ranks that stopped at different steps would wait on each other's gradients forever.
    """
    if getattr(args, "world_size", 1) <= 1:
        return flag
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    vote = torch.tensor([1 if flag else 0], device=args.device)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return bool(vote.item())


class EventsCallback(TrainerCallback):
    """Writes ``phase``, ``progress``, ``train_log`` and checkpoint ``artifact`` events."""

    def __init__(self, events: EventWriter):
        self.events = events
        self.start = 0.0
        self.start_step = 0
        self.start_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()
        # A resumed run begins at the checkpoint's step and token count: rates count from there.
        self.start_step = state.global_step
        self.start_tokens = getattr(state, "num_input_tokens_seen", 0) or 0
        self.events.emit(Event.PHASE, name=Phase.TRAIN)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return  # eval and end-of-train summaries have their own events
        self.events.emit(Event.TRAIN_LOG, step=state.global_step, epoch=_round(state.epoch), loss=logs["loss"],
            lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"),
        )
        self.events.emit(Event.PROGRESS, **progress_fields(args, state, time.monotonic() - self.start,
                                                           self.start_step, self.start_tokens))

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
        if path.is_dir():
            self.events.emit(Event.ARTIFACT, kind=ArtifactKind.CHECKPOINT, path=str(path), bytes=tree_size(path))


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def progress_fields(args, state, elapsed: float, start_step: int = 0, start_tokens: int = 0) -> dict[str, Any]:
    """Step, total, epoch, ETA and throughput from the Trainer state (top-level so it is unit-testable).

    ``start_step``/``start_tokens``: where this process began (a resume), so rates count its own work.
    """
    step, total = state.global_step, state.max_steps
    done = step - start_step
    samples = done * args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    rate = done / elapsed if elapsed > 0 else 0.0
    tokens = (getattr(state, "num_input_tokens_seen", 0) or 0) - start_tokens
    return {
        "step": step,
        "total": total,
        "epoch": _round(state.epoch),
        "eta_s": round((total - step) / rate, 1) if rate > 0 else None,
        "samples_per_s": round(samples / elapsed, 2) if elapsed > 0 else None,
        "tokens_per_s": round(tokens / elapsed, 1) if elapsed > 0 and tokens else None,
    }


class GenerationEvalCallback(TrainerCallback):
    """At each evaluation, generates summaries for dev rows and scores them with Korean ROUGE.

    Generation (not teacher-forced loss) is what the leaderboard measures, so the curve the TUI
    draws is the one that matters. The score is also put into the metrics as ``eval_rouge_final``
    so early stopping and best-model selection can use it.
    """

    def __init__(self, events: EventWriter, sources: list[str], references: list[str], kind: str,
                 generation: GenerationConfig, max_source_length: int, batch_size: int):
        self.events = events
        self.sources = sources
        self.references = references
        self.kind = kind
        self.generation = generation
        self.max_source_length = max_source_length
        self.batch_size = batch_size

    def on_evaluate(self, args, state, control, model=None, processing_class=None, metrics=None, **kwargs):
        import contextlib

        import torch

        from engine.inference import generate_summaries
        from engine.metrics import score

        metrics = metrics if metrics is not None else {}
        start = time.monotonic()
        was_training = model.training
        model.eval()
        # The training model runs under autocast only (see engine.modeling.keep_activation_dtype).
        amp = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
        device_type = next(model.parameters()).device.type
        autocast = torch.autocast(device_type, dtype=amp) if amp is not None else contextlib.nullcontext()
        try:
            with autocast:
                predictions = generate_summaries(
                    model, processing_class, self.sources, self.kind, self.generation, self.max_source_length,
                    self.batch_size,
                )
        finally:
            model.train(was_training)
        scores = score(predictions, [[ref] for ref in self.references], tokenizer="mecab")
        metrics["eval_rouge_final"] = scores.final
        # Training is paused for the Trainer's loss pass (its own ``eval_runtime``) and for our
        # generation and scoring: ``seconds`` is both, so the cost of evaluating is visible per eval.
        paused = time.monotonic() - start + float(metrics.get("eval_runtime") or 0.0)
        self.events.emit(Event.EVAL, step=state.global_step, epoch=_round(state.epoch), rouge1=scores.rouge1, rouge2=scores.rouge2,
            rougeL=scores.rougeL, final=scores.final, sum=scores.sum, loss=metrics.get("eval_loss"),
            tokenizer=scores.tokenizer, scorer=scores.scorer, n=scores.n, split="dev", seconds=round(paused, 2),
        )


class CheckpointMarkerCallback(TrainerCallback):
    """Writes the completeness marker into each checkpoint once the Trainer has finished it.

    ``on_save`` runs after the Trainer wrote weights, optimizer, scheduler, RNG and trainer state
    (and rotated old checkpoints), so the marker is the last file: a checkpoint without it was cut
    short and is never resumed (:mod:`engine.checkpoints`). Put it before :class:`EventsCallback`,
    so the ``artifact`` event announces a checkpoint that is already marked.
    """

    def __init__(self, config_hash: str, resume_fingerprint: dict[str, Any], run_dir: str | None = None):
        self.config_hash = config_hash
        self.fingerprint = resume_fingerprint
        self.run_dir = run_dir

    def on_save(self, args, state, control, **kwargs):
        from engine.checkpoints import write_checkpoint_meta

        path = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
        if state.is_world_process_zero and path.is_dir():
            write_checkpoint_meta(path, step=state.global_step, total=state.max_steps, config_hash=self.config_hash,
                                  resume_fingerprint=self.fingerprint, run_dir=self.run_dir)


class StopOnSignalCallback(TrainerCallback):
    """Ends training at the next step boundary after SIGINT/SIGTERM/SIGHUP (see :mod:`engine.runtime`).

    With ``save_on_stop`` (``train.save_on_stop``) the Trainer saves a checkpoint at that step, so
    the stop can be resumed; the disk guard, placed after this callback, may still cancel the save
    when it would not fit under the quota.
    """

    def __init__(self, save_on_stop: bool = False):
        self.save_on_stop = save_on_stop

    def on_step_end(self, args, state, control, **kwargs):
        if any_rank(stop_requested() is not None, args):
            stop_from_other_rank()  # every rank reports interrupted, not only the one signalled
            control.should_training_stop = True
            control.should_save = self.save_on_stop or control.should_save
            control.should_evaluate = False
        return control


class DiskGuardCallback(TrainerCallback):
    """Stops training before the tree ``quota_path`` reaches ``stop_bytes``.

    ``stop_bytes`` is what the manager hands over (``train --disk-stop-bytes``): the workspace's
    quota less its margin, :func:`engine.units.disk_stop_bytes`, the same count at which the
    manager's running-disk watch stops a run; both compare with :func:`engine.units.disk_full`.

    ``du`` over a big tree can take a minute, so the tree is measured once at the start and only the
    trainer's output directory (what this run writes) is re-measured every ``every`` steps and
    before each checkpoint save. A save that would reach the limit is cancelled and training stops;
    ``tripped`` then holds the message for the ``failed`` event.

    With ``save_on_stop`` the guard keeps room for one checkpoint (the last one's size, or an
    estimate from the trainable weights): it stops once one more checkpoint would fit but a second
    would not, and lets the Trainer save that one, so a run stopped by the quota can be resumed. A stop checkpoint that no longer
    fits (the tree grew from elsewhere) is not written.
    """

    def __init__(self, quota_path: Path, stop_bytes: int, watch_dir: Path, every: int = 20,
                 save_on_stop: bool = False):
        self.quota_path = quota_path
        self.stop_bytes = stop_bytes
        self.watch_dir = watch_dir
        self.every = every
        self.save_on_stop = save_on_stop
        self.saved_at_stop = False
        self.baseline = 0
        self.watch_start = 0
        self.save_estimate = 0
        self.tripped: str | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.baseline = tree_size(self.quota_path)
        self.watch_start = tree_size(self.watch_dir) if self.watch_dir.exists() else 0
        if model is not None:
            # A checkpoint holds the trainable weights plus two Adam moments (~3x their size).
            self.save_estimate = 3 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        self.check(control, upcoming=0, args=args)
        control.should_save = False  # nothing trained yet: nothing to save at this stop

    def on_step_end(self, args, state, control, **kwargs):
        # should_save and global_step are the same on every rank, so all ranks vote at the same step.
        checkpoint = self.last_checkpoint_bytes() or self.save_estimate
        if stop_requested() is not None and control.should_save:
            # A signal asked for a stop checkpoint (StopOnSignalCallback ran first): write it only when it fits.
            if any_rank(disk_full(self.usage() + checkpoint, self.stop_bytes), args):
                control.should_save = False
        elif control.should_save or state.global_step % self.every == 0:
            # With save_on_stop the next checkpoint (scheduled, or the one a stop would write) must
            # leave room for one more: the stop therefore comes while a checkpoint still fits.
            upcoming = checkpoint if control.should_save or self.save_on_stop else 0
            if self.check(control, upcoming=upcoming, reserve=checkpoint if self.save_on_stop else 0, args=args):
                # Stopped while a checkpoint still fits (the reserve): save it, so the run can resume.
                fits = not any_rank(disk_full(self.usage() + checkpoint, self.stop_bytes), args)
                control.should_save = self.saved_at_stop = self.save_on_stop and fits
                if self.saved_at_stop:
                    self.tripped = f"{self.tripped}; {CHECKPOINT_PREFIX}{state.global_step} saved at the stop, so it can resume"
        return control

    def last_checkpoint_bytes(self) -> int:
        checkpoints = sorted(self.watch_dir.glob(f"{CHECKPOINT_PREFIX}*"), key=lambda p: p.stat().st_mtime) if self.watch_dir.exists() else []
        return tree_size(checkpoints[-1]) if checkpoints else 0

    def usage(self) -> int:
        grown = (tree_size(self.watch_dir) if self.watch_dir.exists() else 0) - self.watch_start
        return self.baseline + grown

    def check(self, control, upcoming: int = 0, args=None, reserve: int = 0) -> bool:
        """Measure, and stop training if the tree (plus ``upcoming`` bytes and the ``reserve`` kept for a
        stop checkpoint) reached the limit; True if it did."""
        used = self.usage()
        over = disk_full(used + upcoming + reserve, self.stop_bytes)
        if args is not None and any_rank(over, args) and not over:
            self.tripped = "disk quota guard: another rank found the quota reached; training stopped"
            control.should_training_stop = True
            control.should_save = False
            return True
        if over:
            self.tripped = (
                f"disk quota guard: {self.quota_path} uses {format_bytes(used)}"
                + (f" and the next checkpoint needs ~{format_bytes(upcoming)}" if upcoming else "")
                + (f" (~{format_bytes(reserve)} kept for a checkpoint at the stop)" if reserve else "")
                + f"; the limit is {format_bytes(self.stop_bytes)} ({self.stop_bytes} bytes: quota_gb - margin_gb "
                "in the workspace's .dialsum/settings.yaml). Training stopped before writing more"
            )
            control.should_training_stop = True
            control.should_save = False
        return over


class TorchProfilerCallback(TrainerCallback):
    """Profiles optimizer steps ``[start, start + steps)`` with ``torch.profiler`` and writes where the
    time went: ``profile.txt`` (top kernels) and ``kernels.json`` (every kernel's self device time).

    Enabled by ``DIALSUM_TORCH_PROFILE=DIR`` (:class:`engine.profile_settings.ProfileSettings`) (see ``benchmarks/train_throughput.py --profile``); off in
    normal runs because profiling slows the profiled steps.
    """

    def __init__(self, out_dir: Path, start: int = 5, steps: int = 3):
        self.out_dir = Path(out_dir)
        self.start = start
        self.stop = start + steps
        self.profiler = None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.start and self.profiler is None:
            import torch

            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if self.profiler is None or state.global_step < self.stop:
            return
        import json

        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.profiler.__exit__(None, None, None)
        averages = self.profiler.key_averages()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        sort_key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        (self.out_dir / "profile.txt").write_text(averages.table(sort_by=sort_key, row_limit=40), encoding="utf-8")
        kernels = [
            {"name": e.key, "count": e.count, "device_type": str(e.device_type),
             "self_device_us": getattr(e, "self_device_time_total", 0.0), "self_cpu_us": e.self_cpu_time_total}
            for e in averages
        ]
        (self.out_dir / "kernels.json").write_text(json.dumps({"steps": self.stop - self.start, "kernels": kernels}))
        self.profiler = None
