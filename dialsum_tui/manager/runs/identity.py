"""Provides a run's artifact identity: the key its checkpoints and submissions are named by
(``<slug>-r<id>``, :func:`engine.artifacts.artifact_key`), the keys an infer- or evaluate-only run
reads from, the nickname check done at ``add``, and the next free run id.

Files are keyed by run, never by the nickname alone: ``코바트`` and ``라마`` (or two runs of one
nickname) never share a checkpoint directory or a submission file. The old layout
(``checkpoints/<nickname>/final_model``) is still read: it is what an infer-only run with no
source run loads, and what the results table shows for models trained before run keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dialsum_tui.manager.runs.models import Action, Run
from engine.artifacts import (
    artifact_key,
    dev_predictions_path,
    final_model_dir,
    is_complete_model,
    nickname_problem,
    safe_name,
    submission_path,
)

TRAINS = (Action.PIPELINE, Action.TRAIN)


def run_key(run: Run) -> str:
    """The key of the files this run writes: ``<slug>-r<id>``."""
    return artifact_key(run.nickname, run.id)


def model_key(run: Run) -> str:
    """The key of the final_model this run trains (its own) or loads (its source's)."""
    return run.model_key or run_key(run)


def predictions_key(run: Run) -> str:
    """The key of the submission and dev predictions this run writes (its own) or scores (its source's)."""
    return run.predictions_key or run_key(run)


@dataclass(frozen=True)
class RunPaths:
    """Where one run's artifacts are, resolved against the workspace."""

    final_model: Path
    submission: Path
    dev_predictions: Path


def run_paths(run: Run, checkpoints: Path, submissions: Path) -> RunPaths:
    pkey = predictions_key(run)
    return RunPaths(final_model_dir(checkpoints, model_key(run)), submission_path(submissions, pkey),
                    dev_predictions_path(submissions, pkey))


def check_nickname(nickname: str) -> None:
    """Refuse a nickname that cannot name files (exit 2 at ``add``).

    Raises:
        ValueError: saying what to change (empty, too long, separators, control characters).
    """
    problem = nickname_problem(nickname)
    if problem:
        raise ValueError(problem)


def source_keys(action: Action, nickname: str, source: Run | None, checkpoints: Path) -> dict[str, object]:
    """The store fields that tie an infer- or evaluate-only run to what it reads.

    ``source`` is the run it came from (a retry), or None for ``add --action infer|evaluate``: then
    the nickname's old-layout model ``checkpoints/<nickname>/final_model`` is loaded if complete.
    A training run reads nothing from another run.
    """
    if action in TRAINS:
        return {}
    if source is not None:
        fields: dict[str, object] = {"source_run": source.id, "model_key": model_key(source)}
        if action is Action.EVALUATE:
            fields["predictions_key"] = predictions_key(source)
        return fields
    legacy = safe_name(nickname)
    if is_complete_model(final_model_dir(checkpoints, legacy)):
        fields = {"model_key": legacy}
        return fields | ({"predictions_key": legacy} if action is Action.EVALUATE else {})
    return {}


def latest_source(runs: Iterable[Run], nickname: str, checkpoints: Path) -> Run | None:
    """The newest run of ``nickname`` whose model is complete (what ``add --action infer`` loads)."""
    for run in sorted(runs, key=lambda r: -r.id):
        if run.nickname == nickname and is_complete_model(final_model_dir(checkpoints, model_key(run))):
            return run
    return None


def next_free_id(runs_dir: Path) -> int:
    """One above the highest ``runs/<id>`` directory: ids are never reused while a run directory exists."""
    try:
        ids = [int(p.name) for p in runs_dir.iterdir() if p.name.isdigit() and p.is_dir()]
    except OSError:
        ids = []
    return max(ids, default=0) + 1
