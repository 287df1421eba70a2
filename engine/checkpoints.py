"""Provides resumable training checkpoints: the completeness marker written last into a Trainer
checkpoint, the search for the newest complete one, and the config keys a resume cannot change.

transformers writes a checkpoint file by file (weights, optimizer, scheduler, RNG, trainer state)
and not atomically, so a stage killed while saving leaves a directory that looks like a checkpoint
but is not one. The marker (:data:`engine.contract.CHECKPOINT_META`) is written after the Trainer
finished the directory and records every file's size: a directory without it, or with a file of
another size (truncated by a full disk, say), is skipped with a note and never loaded.

Torch-free on purpose: the manager uses it to find what a stopped run can resume from.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.artifacts import atomic_write_text
from engine.contract import CHECKPOINT_META, CHECKPOINT_PREFIX

_RESTORED = "the checkpoint's optimizer and scheduler state bring the old value back, so the new one would not take effect"

# Config keys a resume must keep, and why: the checkpoint's tensors (weights, adapter, optimizer
# moments) were made for them. The tokenizer comes with model.name_or_path, so it is covered there.
RESUME_KEYS: dict[str, str] = {
    "model.name_or_path": "the checkpoint holds this model's weights (or an adapter for this base and its tokenizer)",
    "model.kind": "the checkpoint was written by this recipe's Trainer",
    "lora.enabled": "the checkpoint holds an adapter or full weights, not the other",
    "lora.r": "the adapter's and its optimizer state's shapes depend on the rank",
    "lora.alpha": "the adapter was trained at this scale (alpha / r)",
    "lora.target_modules": "the adapter has weights for these modules only",
    "quantization.load_in_4bit": "the adapter was trained on this base (4-bit or not)",
    "quantization.quant_type": "the adapter was trained on this 4-bit base",
    "quantization.double_quant": "the adapter was trained on this 4-bit base",
    "quantization.compute_dtype": "the adapter was trained with these 4-bit matmuls",
    "train.optim": "the checkpoint's optimizer state belongs to this optimizer",
    # Not impossible, but silently without effect: the Trainer restores the optimizer's param groups
    # and the scheduler's base rates from the checkpoint (seen: lr stayed on the old schedule).
    "train.learning_rate": _RESTORED,
    "train.lr_scheduler": _RESTORED,
    "train.warmup_ratio": _RESTORED,
    "train.weight_decay": _RESTORED,
}


def dotted_items(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"batch_size": 8}}`` → ``{"train.batch_size": 8}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(dotted_items(value, f"{name}."))
        else:
            out[name] = value
    return out


def fingerprint(tree: dict[str, Any]) -> dict[str, Any]:
    """The :data:`RESUME_KEYS` values of a config (``RunConfig.model_dump()``)."""
    flat = dotted_items(tree)
    return {key: flat.get(key) for key in RESUME_KEYS}


def resume_blockers(old: dict[str, Any], new_tree: dict[str, Any]) -> list[str]:
    """Why a config cannot resume a checkpoint made under ``old`` (a :func:`fingerprint`); empty if it can.

    Each message names the key, both values and the reason, e.g.
    ``lora.r: 16 → 32: the adapter's and its optimizer state's shapes depend on the rank``.
    """
    new = fingerprint(new_tree)
    return [f"{key}: {old[key]!r} → {new[key]!r}: {RESUME_KEYS[key]}"
            for key in RESUME_KEYS if key in old and old[key] != new[key]]


# --- the marker ---------------------------------------------------------------------------------


def _file_sizes(directory: Path) -> dict[str, int]:
    sizes = {}
    for dirpath, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(dirpath) / name
            rel = str(path.relative_to(directory))
            if rel != CHECKPOINT_META and not name.startswith("."):
                sizes[rel] = path.stat().st_size
    return sizes


def write_checkpoint_meta(directory: Path | str, *, step: int, total: int, config_hash: str,
                          resume_fingerprint: dict[str, Any], run_dir: str | None = None) -> None:
    """Mark a finished Trainer checkpoint as complete; call it only after the Trainer wrote it all.

    Args:
        directory: ``…/checkpoint-<step>``.
        step: the global step it holds; total: the run's max steps then.
        config_hash: ``RunConfig.hash()`` of the run that wrote it.
        resume_fingerprint: :func:`fingerprint` of that config, checked when resuming.
        run_dir: the run directory of the stage that wrote it: runs of one nickname may share a
            Trainer directory, and a resume must take its own run's checkpoint.
    """
    directory = Path(directory)
    body = {"step": step, "total": total, "config_hash": config_hash, "fingerprint": resume_fingerprint,
            "run_dir": run_dir,
            "written_at": time.time(), "files": _file_sizes(directory)}
    atomic_write_text(directory / CHECKPOINT_META, json.dumps(body, ensure_ascii=False, indent=2))


def checkpoint_problem(directory: Path | str) -> str | None:
    """Why ``directory`` is not a complete checkpoint (None when it is one)."""
    directory = Path(directory)
    if not directory.is_dir():
        return "it no longer exists (rotated away by train.save_total_limit, or pruned)"
    try:
        meta = json.loads((directory / CHECKPOINT_META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{directory.name} has no {CHECKPOINT_META} (killed while saving?)"
    except (OSError, ValueError) as err:
        return f"{directory.name}: unreadable {CHECKPOINT_META} ({err})"
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int) or not isinstance(meta.get("files"), dict):
        return f"{directory.name}: {CHECKPOINT_META} lacks step or files"
    for rel, size in meta["files"].items():
        path = directory / rel
        if not path.is_file():
            return f"{directory.name}: {rel} is missing"
        if path.stat().st_size != size:
            return f"{directory.name}: {rel} is {path.stat().st_size} bytes, {size} when saved (truncated?)"
    return None


def read_checkpoint_meta(directory: Path | str) -> dict[str, Any] | None:
    """The marker of a complete checkpoint, or None when ``directory`` is not one."""
    if checkpoint_problem(directory) is not None:
        return None
    return json.loads((Path(directory) / CHECKPOINT_META).read_text(encoding="utf-8"))


# --- finding one --------------------------------------------------------------------------------


def checkpoint_step(path: Path) -> int:
    """The step in a ``checkpoint-<step>`` name (-1 for any other name)."""
    tail = path.name.removeprefix(CHECKPOINT_PREFIX)
    return int(tail) if path.name.startswith(CHECKPOINT_PREFIX) and tail.isdigit() else -1


def candidates(path: Path | str) -> list[Path]:
    """The checkpoints to try for ``--resume-from PATH``, newest first.

    PATH is one checkpoint (then it comes first and its older siblings follow, so a half-written
    newest one falls back to the one before) or a Trainer output directory holding ``checkpoint-*``.
    """
    path = Path(path)
    if checkpoint_step(path) >= 0 or (path / CHECKPOINT_META).exists():
        siblings = [p for p in path.parent.glob(f"{CHECKPOINT_PREFIX}*")
                    if p.is_dir() and p != path and checkpoint_step(p) < checkpoint_step(path)]
        return [path, *sorted(siblings, key=checkpoint_step, reverse=True)]
    found = [p for p in path.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir()] if path.is_dir() else []
    return sorted(found, key=checkpoint_step, reverse=True)


@dataclass(frozen=True)
class Resumable:
    """A complete checkpoint and its marker."""

    path: Path
    meta: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def total(self) -> int | None:
        total = self.meta.get("total")
        return total if isinstance(total, int) else None


def find_resumable(paths: list[Path]) -> tuple[Resumable | None, list[str]]:
    """The first complete checkpoint of ``paths`` (newest first) and a note for each one skipped."""
    skipped = []
    for path in paths:
        problem = checkpoint_problem(path)
        if problem is None:
            return Resumable(path, json.loads((path / CHECKPOINT_META).read_text(encoding="utf-8"))), skipped
        never = "; a half-written checkpoint is never loaded" if path.exists() else ""
        skipped.append(f"skipped checkpoint {path}: {problem}{never}")
    return None, skipped
