"""Provides the best run by dev ROUGE (among numbers made the same way only), the validated copy of a
run's submission for upload, and public-leaderboard scores kept next to the run
(``runs/<id>/leaderboard.json``), so dev ROUGE and the leaderboard can be read side by side.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialsum_tui.manager.insights.compare import (
    DevMetric,
    InsightsError,
    dev_metric,
    run_snapshot,
    written_artifact,
)
from dialsum_tui.manager.runs.events import ScoreBasis, ranked_basis
from dialsum_tui.manager.runs.identity import predictions_key
from engine.artifacts import atomic_write_text, safe_name, submission_path
from engine.contract import SUBMISSION_SUFFIX, TEST_CSV, ArtifactKind, Stage

if TYPE_CHECKING:
    from dialsum_tui.manager.runs.models import Run
    from dialsum_tui.manager.workspace.layout import Workspace

# Next to config.yaml, run.log and events.jsonl in runs/<id>/ (the store is not the place: the
# score is typed in by a person, long after the run, and must survive a store migration).
LEADERBOARD_FILE = "leaderboard.json"
BEST_MARK = "★"


@dataclass(frozen=True)
class Submitted:
    """A validated submission copied for upload."""

    source: Path
    target: Path
    rows: int


# --- best run ---------------------------------------------------------------------------------


def full_dev_metric(workspace: Workspace, run: Run) -> DevMetric | None:
    """The run's evaluate-stage score (whole dev set); in-training scores may cover a subset."""
    metric = dev_metric(workspace, run)
    return metric if metric is not None and metric.stage == Stage.EVALUATE else None


@dataclass(frozen=True)
class Ranking:
    """The best run of each (tokenizer, scorer), and the runs left out of it because their score
    was made on another basis (:class:`~dialsum_tui.manager.runs.events.ScoreBasis`)."""

    best: dict[tuple[str | None, str | None], int]  # (tokenizer, scorer) → run id
    unranked: dict[int, str]  # run id → why its score is not ranked


def ranking(workspace: Workspace, runs: list[Run]) -> Ranking:
    """Rank the runs' evaluate-stage finals: numbers made differently never meet.

    Within one (tokenizer, scorer), scores are ranked on one basis of dev rows scored: the one most
    runs were scored on, ties the newest (:func:`~dialsum_tui.manager.runs.events.ranked_basis`, as a
    sweep's best is judged). A score on a dev set of another size is not starred and says so, instead
    of silently competing (dev rows removed mid-run changed the basis).
    """
    metrics = {run.id: m for run in runs if (m := full_dev_metric(workspace, run)) is not None and m.final is not None}
    groups: dict[tuple[str | None, str | None], list[tuple[int, ScoreBasis]]] = {}
    for run_id, metric in sorted(metrics.items()):
        groups.setdefault(metric.comparable_key, []).append((run_id, metric.basis))
    ranked = {key: ranked_basis(scored) for key, scored in groups.items()}
    best: dict[tuple[str | None, str | None], tuple[float, int]] = {}
    unranked: dict[int, str] = {}
    for run_id, metric in metrics.items():
        key, basis = metric.comparable_key, ranked[metric.comparable_key]
        if basis is not None and metric.basis.differs(basis):
            others = sum(1 for _id, b in groups[key] if not b.differs(basis))
            unranked[run_id] = (f"not ranked: scored on {metric.basis.text} dev rows, {others} other run(s) on "
                                f"{basis.text}; the dev set changed between them")
            continue
        if key not in best or (metric.final, -run_id) > (best[key][0], -best[key][1]):
            best[key] = (metric.final, run_id)
    return Ranking({key: run_id for key, (_final, run_id) in best.items()}, unranked)


def best_runs(workspace: Workspace, runs: list[Run]) -> dict[tuple[str | None, str | None], int]:
    """The best run by dev final for each (tokenizer, scorer), among scores on the same basis (:func:`ranking`).

    Returns:
        (tokenizer, scorer) → run id of the highest evaluate-stage final; runs without one are left out.
    """
    return ranking(workspace, runs).best


# --- leaderboard scores -----------------------------------------------------------------------


def leaderboard_path(workspace: Workspace, run_id: int) -> Path:
    return workspace.run_dir(run_id) / LEADERBOARD_FILE


def read_leaderboard(workspace: Workspace, run_id: int) -> dict[str, Any]:
    """The run's ``leaderboard.json`` (empty lists when there is none, or it is unreadable)."""
    try:
        body = json.loads(leaderboard_path(workspace, run_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    return {"scores": list(body.get("scores") or []), "submissions": list(body.get("submissions") or [])}


def latest_score(workspace: Workspace, run_id: int) -> dict[str, Any] | None:
    scores = [s for s in read_leaderboard(workspace, run_id)["scores"] if isinstance(s, dict) and "score" in s]
    return scores[-1] if scores else None


def parse_score(text: str) -> float:
    """A public-leaderboard score as typed: a number from 0 to 100 (the leaderboard's final × 100).

    Raises:
        InsightsError: not a number, or outside 0..100.
    """
    try:
        score = float(text.strip().rstrip("%"))
    except ValueError:
        raise InsightsError(f"score {text!r} is not a number; type it as the leaderboard shows it, e.g. 47.52") from None
    if not math.isfinite(score) or not 0 <= score <= 100:
        raise InsightsError(f"score {text!r} is outside 0..100; the leaderboard shows mean(R1,R2,RL)×100, e.g. 47.52")
    return score


def record_score(workspace: Workspace, run: Run, text: str) -> dict[str, Any]:
    """Append a public-leaderboard score to ``runs/<id>/leaderboard.json``, with the dev ROUGE beside it.

    Raises:
        InsightsError: the score is not a number in 0..100.
    """
    score = parse_score(text)
    body = read_leaderboard(workspace, run.id)
    metric = full_dev_metric(workspace, run)
    entry = {"score": score, "at": time.time(),
             "dev_final": metric.final if metric else None,
             "tokenizer": metric.tokenizer if metric else None,
             "scorer": metric.scorer if metric else None,
             "n": metric.n if metric else None,  # dev rows scored: the basis of dev_final
             "submission": body["submissions"][-1]["target"] if body["submissions"] else None}
    body["scores"].append(entry)
    _write(workspace, run.id, body)
    return entry


def _write(workspace: Workspace, run_id: int, body: dict[str, Any]) -> None:
    atomic_write_text(leaderboard_path(workspace, run_id), json.dumps(body, ensure_ascii=False, indent=2) + "\n")


# --- submit -----------------------------------------------------------------------------------


def submission_file(workspace: Workspace, run: Run) -> Path:
    """The run's test submission: its ``submission`` artifact, else its config's path."""
    written = written_artifact(workspace, run, ArtifactKind.SUBMISSION, SUBMISSION_SUFFIX)
    if written is not None:
        return written
    cfg = run_snapshot(run)
    return submission_path(workspace.resolve(cfg.paths.submissions), predictions_key(run))


def _read_csv(path: Path, what: str) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return list(csv.reader(fh))
    except FileNotFoundError:
        raise InsightsError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InsightsError(f"{what} {path} is unreadable ({err}); save it as UTF-8 CSV") from None


def validate_submission(path: Path, test_csv: Path) -> int:
    """Check a submission against test.csv: header fname,summary, every test fname in test order, no empty summary.

    Returns:
        The number of rows (499 for the competition's test set).

    Raises:
        InsightsError: naming the file, the first wrong row and the fix.
    """
    test_rows = _read_csv(test_csv, "test file")
    if not test_rows or "fname" not in test_rows[0]:
        raise InsightsError(f"test file {test_csv} has no fname column; it should be the competition's test.csv")
    column = test_rows[0].index("fname")
    expected = [row[column] for row in test_rows[1:] if row]
    rows = _read_csv(path, "submission")
    if not rows:
        raise InsightsError(f"submission {path} is empty; re-infer the run")
    offset = 1 if rows[0][:1] == [""] else 0  # sample_submission.csv's unnamed index column
    if rows[0][offset:offset + 2] != ["fname", "summary"]:
        raise InsightsError(f"submission {path}: header {','.join(rows[0])}, expected fname,summary")
    body = [row for row in rows[1:] if row]
    fnames = [row[offset] if len(row) > offset else "" for row in body]
    if len(body) != len(expected):
        raise InsightsError(f"submission {path} has {len(body)} rows but {test_csv} has {len(expected)}; "
                            "re-infer the run on this test set")
    wrong = next((i for i, (got, want) in enumerate(zip(fnames, expected)) if got != want), None)
    if wrong is not None:
        raise InsightsError(f"submission {path} row {wrong + 2}: fname {fnames[wrong]!r} where {test_csv} has "
                            f"{expected[wrong]!r}; rows must follow test.csv's order")
    empty = [fnames[i] for i, row in enumerate(body) if len(row) < offset + 2 or not row[offset + 1].strip()]
    if empty:
        shown = ", ".join(empty[:5]) + (f" (and {len(empty) - 5} more)" if len(empty) > 5 else "")
        raise InsightsError(f"submission {path}: {len(empty)} empty summary(ies): {shown}; "
                            "the leaderboard scores them 0 — fix the generation and re-infer")
    return len(body)


def default_name(run: Run, when: float | None = None) -> str:
    """``<nickname>_run<id>_<YYYYMMDD-HHMM>.csv``: model, run and date, never ``*_submission.csv``."""
    stamp = time.strftime("%Y%m%d-%H%M", time.localtime(when))
    return f"{safe_name(run.nickname)}_run{run.id}_{stamp}.csv"


def submit(workspace: Workspace, run: Run, to: str | Path | None = None) -> Submitted:
    """Validate the run's submission and copy it under a name that says model, run and date.

    Args:
        to: a file, or a directory for the default name; default ``submissions/`` of the run.

    Raises:
        InsightsError: invalid submission, missing test.csv, or the target already exists.
    """
    cfg = run_snapshot(run)
    source = submission_file(workspace, run)
    if not source.is_file():
        raise InsightsError(f"run {run.id} ({run.nickname}) has no submission ({source} is missing); "
                            f"write it with `dialsum-tui retry {run.id} --action infer`")
    test_csv = workspace.resolve(cfg.data.dir) / TEST_CSV
    if not test_csv.is_file():
        raise InsightsError(f"{test_csv} is missing: the submission cannot be checked against the test fnames; "
                            "put the competition's test.csv there")
    rows = validate_submission(source, test_csv)
    target = Path(to).expanduser() if to else source.parent
    if not target.is_absolute():
        target = Path.cwd() / target
    if target.is_dir():
        target = target / default_name(run)
    if target.exists():
        raise InsightsError(f"{target} already exists; pass another --to or delete it")
    atomic_write_text(target, source.read_text(encoding="utf-8"))
    body = read_leaderboard(workspace, run.id)
    # Relative inside the workspace (a copy keeps pointing at its own files); a --to elsewhere stays absolute.
    body["submissions"].append({"target": workspace.relative(target), "source": workspace.relative(source),
                                "rows": rows, "at": time.time()})
    _write(workspace, run.id, body)
    return Submitted(source, target, rows)
