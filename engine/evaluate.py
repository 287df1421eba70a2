"""Provides ``python -m engine evaluate``: read predictions and references (CSV), score them with
:mod:`engine.metrics`, print or record the numbers (``metrics.json`` and an ``eval`` event in a run).

Split from the metric itself so the scoring arithmetic reads on its own; both stay torch-free.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from engine.artifacts import EventWriter, atomic_write_text
from engine.contract import ArtifactKind, Event, ExitCode, Phase, Stage
from engine.data import DataError, load_references, read_table
from engine.metrics import METRICS_FILE, TOKENIZER_LABELS, MetricInputError, Scores, listed, score

# --- CSV input --------------------------------------------------------------------------------


def _require_file(path: Path, role: str) -> None:
    # Checked here because the shared reader's hint (data.dir, synth) is about the training data.
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        example = "submissions/<nickname>_dev_predictions.csv" if role == "predictions" else "data/dev.csv"
        raise MetricInputError(f"{role} file {path} {what}; pass the path of a CSV file such as {example}")


def _by_fname(path: Path, rows: list[dict[str, Any]]) -> dict[str, str]:
    by_fname: dict[str, str] = {}
    duplicates: list[str] = []
    blank: list[int] = []
    for row in rows:
        fname = (row.get("fname") or "").strip()
        if not fname:
            blank.append(row["_line"])
        elif fname in by_fname:
            duplicates.append(fname)
        else:
            by_fname[fname] = row.get("summary") or ""
    if blank:
        raise MetricInputError(f"predictions file {path}: empty fname on line(s) {listed(blank)}; fill in or delete those rows")
    if duplicates:
        raise MetricInputError(f"predictions file {path}: duplicate fname(s) {listed(duplicates)}; keep one row per fname")
    return by_fname


def read_predictions(path: Path | str) -> dict[str, str]:
    """Read ``fname,summary`` predictions with the shared CSV reader (:func:`engine.data.read_table`).

    UTF-8 with or without BOM (cp949 is read too); a leading unnamed index column, as in
    sample_submission.csv, and any other extra column are ignored.

    Args:
        path: The predictions CSV.

    Returns:
        Predicted summary by fname, in file order; an empty cell is an empty prediction.

    Raises:
        MetricInputError: Missing or broken file, missing column, blank or duplicate fname.
    """
    path = Path(path)
    _require_file(path, "predictions")
    try:
        rows, _report = read_table(path)
    except DataError as err:
        raise MetricInputError(f"predictions file {err}") from None
    if not rows:
        raise MetricInputError(f"predictions file {path} has no rows; write one fname,summary row per dialogue")
    header = [name for name in rows[0] if name != "_line"]
    missing = [name for name in ("fname", "summary") if name not in header]
    if missing:
        raise MetricInputError(
            f"predictions file {path} has no {' or '.join(repr(m) for m in missing)} column "
            f"(columns: {', '.join(header)}); write the header fname,summary"
        )
    return _by_fname(path, rows)


def read_references(path: Path | str) -> dict[str, list[str]]:
    """Read references with the shared reader (:func:`engine.data.load_references`).

    Args:
        path: CSV with ``fname`` and ``summary`` and/or ``summary1``, ``summary2``, ... columns
            (``dev.csv`` works as is: other columns are ignored; empty ``summaryN`` cells are not
            references).

    Returns:
        The non-empty references of each fname, in column order, by fname in file order.

    Raises:
        MetricInputError: Missing or broken file, missing columns, duplicate fname, or a row
            without any reference text.
    """
    _require_file(Path(path), "references")
    try:
        return load_references(path)
    except DataError as err:
        raise MetricInputError(f"references file {err}") from None


def score_files(
    predictions_csv: Path | str,
    references_csv: Path | str,
    tokenizer: str = "mecab",
    scorer: str = "competition",
) -> Scores:
    """Join predictions and references on ``fname`` and score them (see :func:`score`).

    Raises:
        MetricInputError: Unreadable input, or fnames present on one side only (both lists named).
    """
    predictions = read_predictions(predictions_csv)
    references = read_references(references_csv)
    missing = [fname for fname in references if fname not in predictions]
    extra = [fname for fname in predictions if fname not in references]
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"{len(missing)} fname(s) of {references_csv} have no prediction in {predictions_csv}: {listed(missing)}")
        if extra:
            problems.append(f"{len(extra)} fname(s) of {predictions_csv} are not in {references_csv}: {listed(extra)}")
        raise MetricInputError("; ".join(problems) + ". Predict every reference fname, and score dev predictions against dev references")
    order = list(references)
    return score([predictions[f] for f in order], [references[f] for f in order], tokenizer=tokenizer, scorer=scorer)


# --- the evaluate command ---------------------------------------------------------------------


def format_table(scores: Scores) -> str:
    """Return a small aligned table that names the scorer, the tokenizer and both aggregates."""
    label = TOKENIZER_LABELS[scores.tokenizer]
    if scores.scorer == "baseline":
        label = "raw text split on spaces and '.', as rouge==1.0.1 (the organizer baseline)"
    leaderboard = scores.scorer == "competition" and scores.tokenizer == "mecab"
    comparable = "the leaderboard number" if leaderboard else "the leaderboard's aggregate, not its tokens"
    lines = [
        f"scorer     {scores.scorer}",
        f"tokenizer  {scores.tokenizer}: {label}",
        f"items      {scores.n} ({scores.refs_per_item:g} references each on average)",
        "",
        f"ROUGE-1 F1 {scores.rouge1:9.4f}",
        f"ROUGE-2 F1 {scores.rouge2:9.4f}",
        f"ROUGE-L F1 {scores.rougeL:9.4f}",
        f"final      {scores.final:9.4f}   final = mean(R1,R2,RL)×100 ({comparable})",
        f"sum        {scores.sum:9.4f}   sum = (R1+R2+RL)×100, 0..300 (not comparable with final)",
    ]
    if scores.empty_predictions:
        lines.append(f"warning    {scores.empty_predictions} empty prediction(s) scored 0")
    return "\n".join(lines)


def _check_arguments(args: argparse.Namespace) -> None:
    from engine.config import ConfigError  # pydantic; only the command needs it

    # mecab is the parser default, so only an explicit other choice can be caught here.
    if args.scorer == "baseline" and args.tokenizer != "mecab":
        raise ConfigError(
            f"--tokenizer {args.tokenizer} applies to the competition scorer only; the baseline scorer always "
            "splits raw text on spaces like rouge==1.0.1. Drop --tokenizer or use --scorer competition"
        )


def _print(scores: Scores, as_json: bool) -> None:
    if as_json:
        # Exactly the documented keys: scripts parse this line; empty_predictions is in metrics.json.
        body = scores.to_dict()
        body.pop("empty_predictions")
        print(json.dumps(body, ensure_ascii=False))
    else:
        print(format_table(scores))


def _evaluate_in_run(args: argparse.Namespace, events: EventWriter) -> dict[str, Any]:
    """The command body under :func:`engine.runtime.run_command`, which adds ``finished``/``failed``."""
    events.emit(Event.STARTED, pid=os.getpid(), predictions=str(args.predictions), references=str(args.references),
                tokenizer=args.tokenizer, scorer=args.scorer)
    _check_arguments(args)
    events.emit(Event.PHASE, name=Phase.SCORE)
    scores = score_files(args.predictions, args.references, tokenizer=args.tokenizer, scorer=args.scorer)
    metrics_path = Path(args.run_dir) / METRICS_FILE
    saved = {
        **scores.to_dict(),
        "split": "dev",
        "predictions": str(Path(args.predictions).resolve()),
        "references": str(Path(args.references).resolve()),
    }
    atomic_write_text(metrics_path, json.dumps(saved, ensure_ascii=False, indent=2) + "\n")
    fields = {key: value for key, value in scores.to_dict().items() if key not in ("refs_per_item", "empty_predictions")}
    events.emit(Event.EVAL, **fields, split="dev")
    if scores.empty_predictions:
        events.emit(Event.WARNING, message="empty predictions scored 0", count=scores.empty_predictions)
    events.emit(Event.ARTIFACT, kind=ArtifactKind.METRICS, path=str(metrics_path), bytes=metrics_path.stat().st_size)
    _print(scores, args.json)
    return scores.to_dict()


def main(args: argparse.Namespace) -> int:
    """Run ``python -m engine evaluate``: print the scores; with ``--run-dir`` also record them.

    With ``--run-dir`` the command behaves like ``train`` and ``infer``: ``started``, ``eval``,
    ``artifact`` (``metrics.json``) and ``finished`` events, or ``failed`` with kind ``data`` or
    ``config``.

    Returns:
        0 on success, 2 on bad input (the message on stderr names the file, the fnames and the fix).
    """
    if args.run_dir:
        from engine.runtime import run_command

        return run_command(Stage.EVALUATE, args, _evaluate_in_run)
    from engine.config import ConfigError

    try:
        _check_arguments(args)
        scores = score_files(args.predictions, args.references, tokenizer=args.tokenizer, scorer=args.scorer)
    except (DataError, ConfigError) as err:
        print(f"evaluate: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    _print(scores, args.json)
    return ExitCode.OK
