"""Provides a run's artifact identity: the key its checkpoints and submissions are named by
(``<slug>-r<id>``, :func:`engine.artifacts.artifact_key`), the keys an infer- or evaluate-only run
reads from, the nickname check done at ``add``, and the next free run id.

Files are keyed by run, never by the nickname alone: ``코바트`` and ``라마`` (or two runs of one
nickname) never share a checkpoint directory or a submission file. The old layout
(``checkpoints/<nickname>/final_model``) is still read: it is what an infer-only run with no
source run loads, and what the results table shows for models trained before run keys.
"""

from __future__ import annotations

import os
import unicodedata
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
    """Refuse a nickname that cannot name files or a run's command line, or that can pass for another (exit 2 at ``add``).

    Raises:
        ValueError: saying what to change (empty, too long, separators, control characters, a
            leading ``-``, an invisible or formatting character named by its code point, a name not in NFC).
    """
    problem = nickname_problem(nickname) or _lookalike_problem(nickname)
    if problem:
        raise ValueError(problem)


# Invisible or formatting characters: a name with one prints like another (an RTL override turns
# 'bart-v2' around on screen, a zero-width space or a BOM is not seen at all), so two runs would look
# like one. Plain space (Zs U+0020) is fine; other spaces (no-break, ideographic) look like it.
_INVISIBLE = frozenset({"Cf", "Co", "Cn", "Cs", "Zl", "Zp"})


def _lookalike_problem(nickname: str) -> str | None:
    if nickname.startswith("-"):
        # It names the stages' files and reaches their command line (--artifact-key -rf-r3): argparse
        # takes it for an option and every stage fails.
        return (f"model.nickname {nickname!r} starts with '-', which a command line takes for an option; "
                f"start it with a letter or digit (e.g. {nickname.lstrip('-') or 'run'!r})")
    for ch in nickname:
        category = unicodedata.category(ch)
        if category in _INVISIBLE or (category == "Zs" and ch != " "):
            return (f"model.nickname {nickname!r} contains U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed character')}"
                    ", an invisible or formatting character that makes two names look alike; remove it")
    if unicodedata.normalize("NFC", nickname) != nickname:
        return (f"model.nickname {unicodedata.normalize('NFC', nickname)!r} is written decomposed (not NFC: Hangul "
                "as separate jamo, as some editors and macOS save it), so it is another name that looks the same; "
                "retype it, or save the config as NFC")
    return None


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
    """One above the highest ``runs/<id>``: ids are never reused while a run directory exists, and
    never given where anything else takes the name (a dangling link, a file)."""
    try:
        ids = [int(name) for name in os.listdir(runs_dir) if name.isdigit()]
    except OSError:
        ids = []
    return max(ids, default=0) + 1
