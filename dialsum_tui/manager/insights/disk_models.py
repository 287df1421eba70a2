"""Provides the reader of model directories found on disk without a run in the store: this tool's own
run-keyed ``checkpoints/<slug>-r<id>/``, the first releases' ``checkpoints/<nickname>/``, and the
team's own script layout ``checkpoints/llm_finetuning/<nickname>/final_model`` with its
``checkpoints/llm_finetuning/submissions/`` — each model its own row, never one row per folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.artifacts import submission_nickname
from engine.contract import CHECKPOINT_PREFIX, FINAL_MODEL_DIR, FINAL_MODEL_META, SUBMISSION_SUFFIX, TRAINER_DIR

if TYPE_CHECKING:
    from dialsum_tui.manager.workspace.layout import Workspace

SUBMISSIONS_DIRNAME = "submissions"  # the team's script kept them beside the models
# Files a training script leaves with its scores (the HF Trainer's, and ours inside final_model).
_METRIC_FILES = ("eval_results.json", "all_results.json", f"{FINAL_MODEL_DIR}/{FINAL_MODEL_META}")


@dataclass(frozen=True)
class DiskModel:
    """One model directory (or a lone submission) and what is on disk about it."""

    name: str
    directory: Path  # checkpoints/.../<name> (may not exist for a lone submission)
    submission: Path | None
    metric: dict[str, Any] | None  # {"final", "tokenizer", "file"} when a score was written beside it


def _is_model_dir(path: Path) -> bool:
    return ((path / FINAL_MODEL_DIR).exists() or (path / TRAINER_DIR).exists()
            or any(path.glob(f"{CHECKPOINT_PREFIX}*")))


def _dirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
    except OSError:
        return []


def _metric(directory: Path) -> dict[str, Any] | None:
    """A ROUGE written beside the model: ``eval_rouge_final``/``rouge_final``/``final`` (0-100), else None."""
    for name in _METRIC_FILES:
        try:
            data = json.loads((directory / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
            data = data["metrics"]
        for key in ("eval_rouge_final", "rouge_final", "final"):
            value = data.get(key) if isinstance(data, dict) else None
            if isinstance(value, (int, float)):
                return {"final": float(value), "tokenizer": data.get("tokenizer") or "as recorded", "file": name}
    return None


def _groups(checkpoints: Path) -> list[tuple[Path, Path]]:
    """(model directory, submissions directory) for every model under ``checkpoints``.

    A folder that holds no model itself but whose children do (``llm_finetuning/``) is a group:
    each child is a model and its ``submissions/`` holds their files.
    """
    found = []
    for top in _dirs(checkpoints):
        children = [c for c in _dirs(top) if c.name != SUBMISSIONS_DIRNAME]
        if not _is_model_dir(top) and any(_is_model_dir(c) for c in children):
            found += [(c, top / SUBMISSIONS_DIRNAME) for c in children]
        elif top.name != SUBMISSIONS_DIRNAME:
            found.append((top, checkpoints.parent / SUBMISSIONS_DIRNAME))
    return found


def disk_models(workspace: Workspace) -> list[DiskModel]:
    """Every model directory and lone submission under the workspace, one entry per model name."""
    models: dict[str, DiskModel] = {}
    for directory, subs in _groups(workspace.checkpoints_dir):
        sub = subs / f"{directory.name}{SUBMISSION_SUFFIX}"
        if subs != workspace.submissions_dir and not sub.exists():
            sub = workspace.submissions_dir / sub.name
        models.setdefault(directory.name, DiskModel(directory.name, directory, sub if sub.exists() else None,
                                                    _metric(directory)))
    for sub_dir in {workspace.submissions_dir, *(s for _d, s in _groups(workspace.checkpoints_dir))}:
        for path in sorted(sub_dir.glob(f"*{SUBMISSION_SUFFIX}")) if sub_dir.is_dir() else []:
            name = submission_nickname(path) or path.name
            models.setdefault(name, DiskModel(name, workspace.checkpoints_dir / name, path, None))
    return [models[name] for name in sorted(models)]
