"""Provides per-sample insights on dev predictions: each dialogue with its references, the predictions
of one or two runs side by side, per-item ROUGE made exactly like ``python -m engine evaluate``,
sorts (worst, best, largest difference) and filters (empty, length, foreign script) with counts.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialsum_tui.manager.insights.compare import InsightsError, dev_metric, run_label, run_snapshot, written_artifact
from dialsum_tui.manager.runs.identity import predictions_key
from engine import evaluate, metrics
from engine.artifacts import dev_predictions_path
from engine.contract import DEV_CSV, ArtifactKind
from engine.data import MASK_PATTERN, DataError, load_split
from engine.item_scores import ItemScore, score_items

if TYPE_CHECKING:
    from dialsum_tui.manager.runs.models import Run
    from dialsum_tui.manager.workspace.layout import Workspace

SORTS = ("worst", "best", "diff")
FILTERS = ("empty", "foreign", "length")

# "Far" from the references: under half or over twice their mean length (characters, spaces not
# counted, so that Korean spacing habits do not move the ratio).
LENGTH_LOW, LENGTH_HIGH = 0.5, 2.0
RULES = {
    "empty": "the prediction is empty or whitespace only (it scores 0)",
    "length": f"the prediction is under {LENGTH_LOW:g}× or over {LENGTH_HIGH:g}× the references' mean length "
              "(characters without spaces)",
    "foreign": "the prediction has a Latin word (2+ letters, outside #Mask# tokens), a CJK ideograph or kana "
               "that the dialogue and references do not contain",
}

_LATIN = re.compile(r"[A-Za-z]{2,}")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff]")


@dataclass
class Sample:
    """One dev dialogue; ``predictions``, ``scores`` and ``flags`` follow the set's runs."""

    fname: str
    dialogue: str
    references: list[str]
    predictions: list[str]
    scores: list[ItemScore]
    flags: list[dict[str, str]]  # per run: filter name → what was found

    @property
    def diff(self) -> float | None:
        """Second run's final minus the first's (×100 scale); None with one run."""
        return self.scores[1].final - self.scores[0].final if len(self.scores) > 1 else None


@dataclass
class SampleSet:
    """The dev samples of one or two runs, scored the same way."""

    runs: list[dict[str, Any]]
    tokenizer: str
    scorer: str
    samples: list[Sample]
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, list[int]]:
        """How many predictions of each run every filter flags."""
        return {name: [sum(name in s.flags[i] for s in self.samples) for i in range(len(self.runs))]
                for name in FILTERS}

    def means(self) -> list[float]:
        """Each run's mean per-item final: equals its ``evaluate`` final on these rows."""
        return [statistics.fmean(s.scores[i].final for s in self.samples) for i in range(len(self.runs))]

    def view(self, sort: str = "worst", filter_: str | None = None, limit: int | None = None) -> list[Sample]:
        """The samples to show: filtered (any shown run flagged), sorted, cut to ``limit``.

        Raises:
            InsightsError: unknown sort or filter, or ``diff`` with a single run.
        """
        if sort not in SORTS:
            raise InsightsError(f"sort {sort!r}: use one of {', '.join(SORTS)}")
        if filter_ is not None and filter_ not in FILTERS:
            raise InsightsError(f"filter {filter_!r}: use one of {', '.join(FILTERS)}")
        if sort == "diff" and len(self.runs) < 2:
            raise InsightsError("sort diff needs a second run: pass --vs ID")
        rows = [s for s in self.samples if filter_ is None or any(filter_ in f for f in s.flags)]
        if sort == "worst":
            rows.sort(key=lambda s: (s.scores[0].final, s.fname))
        elif sort == "best":
            rows.sort(key=lambda s: (-s.scores[0].final, s.fname))
        else:
            rows.sort(key=lambda s: (-abs(s.diff or 0.0), s.fname))
        return rows[:limit] if limit is not None else rows

    def to_json(self, sort: str = "worst", filter_: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """The ``samples --json`` body; scores ×100 like the leaderboard."""
        shown = self.view(sort, filter_, limit)
        return {
            "runs": self.runs,
            "tokenizer": self.tokenizer,
            "scorer": self.scorer,
            "n": len(self.samples),
            "means": [round(m, 4) for m in self.means()],
            "counts": self.counts(),
            "rules": RULES,
            "sort": sort,
            "filter": filter_,
            "notes": self.notes,
            "samples": [
                {"fname": s.fname, "dialogue": s.dialogue, "references": s.references, "predictions": s.predictions,
                 "scores": [{"rouge1": x.rouge1 * 100, "rouge2": x.rouge2 * 100, "rougeL": x.rougeL * 100,
                             "final": x.final} for x in s.scores],
                 "diff": s.diff, "flags": s.flags}
                for s in shown
            ],
        }


# --- flags -------------------------------------------------------------------------------------


def _chars(text: str) -> int:
    return sum(not ch.isspace() for ch in text)


def flag_prediction(prediction: str, dialogue: str, references: list[str]) -> dict[str, str]:
    """Which filters a prediction trips (see :data:`RULES`), each with what was found."""
    if not prediction.strip():
        return {"empty": "empty output"}
    flags: dict[str, str] = {}
    ref_mean = statistics.fmean(_chars(r) for r in references)
    ratio = _chars(prediction) / ref_mean if ref_mean else 0.0
    if ratio < LENGTH_LOW or ratio > LENGTH_HIGH:
        flags["length"] = f"{ratio:.1f}× the references' length"
    source = MASK_PATTERN.sub(" ", dialogue + "\n" + "\n".join(references))
    known_words = {w.lower() for w in _LATIN.findall(source)}
    found = []
    latin = [w for w in _LATIN.findall(MASK_PATTERN.sub(" ", prediction)) if w.lower() not in known_words]
    if latin:
        found.append("Latin " + " ".join(dict.fromkeys(latin)))
    for name, pattern in (("CJK", _HAN), ("kana", _KANA)):
        chars = [ch for ch in pattern.findall(prediction) if ch not in source]
        if chars:
            found.append(f"{name} " + "".join(dict.fromkeys(chars)))
    if found:
        flags["foreign"] = "; ".join(found)
    return flags


# --- loading -----------------------------------------------------------------------------------


def predictions_file(workspace: Workspace, run: Run) -> Path:
    """Where the run's dev predictions are: its ``dev_predictions`` artifact, else its config's path."""
    written = written_artifact(workspace, run, ArtifactKind.DEV_PREDICTIONS)
    if written is not None:
        return written
    cfg = run_snapshot(run)
    return dev_predictions_path(workspace.resolve(cfg.paths.submissions), predictions_key(run))


def _read_predictions(workspace: Workspace, run: Run) -> tuple[Path, dict[str, str]]:
    path = predictions_file(workspace, run)
    if not path.is_file():
        raise InsightsError(
            f"run {run.id} ({run.nickname}) has no dev predictions ({path} is missing); "
            f"write them with `dialsum-tui retry {run.id} --action infer`")
    try:
        return path, evaluate.read_predictions(path)
    except DataError as err:
        raise InsightsError(str(err)) from None


def _scoring(workspace: Workspace, run: Run) -> tuple[str, str]:
    """The tokenizer and scorer of the run's evaluate stage (the worker's defaults when it has none)."""
    metric = dev_metric(workspace, run)
    tokenizer = metric.tokenizer if metric and metric.tokenizer in metrics.TOKENIZERS else "mecab"
    scorer = metric.scorer if metric and metric.scorer in metrics.SCORERS else "competition"
    return tokenizer, scorer


def load_samples(workspace: Workspace, run: Run, vs: Run | None = None) -> SampleSet:
    """Score the dev predictions of ``run`` (and of ``vs``) item by item against ``run``'s dev.csv.

    Both runs are scored with ``run``'s tokenizer and scorer, so their items compare like for like.

    Raises:
        InsightsError: no dev predictions, unreadable data, or predictions that miss dev fnames.
    """
    if vs is not None and vs.id == run.id:
        raise InsightsError(f"--vs {vs.id} is the run itself; pass another run id")
    cfg = run_snapshot(run)
    dev_csv = workspace.resolve(cfg.data.dir) / DEV_CSV
    try:
        references = evaluate.read_references(dev_csv)
        dialogues = {s.fname: s.dialogue for s in load_split(dev_csv.parent, "dev", normalize=cfg.data.normalize)[0]}
    except DataError as err:
        raise InsightsError(str(err)) from None
    tokenizer, scorer = _scoring(workspace, run)
    order = list(references)
    runs, columns, notes = [], [], []
    for one in [run] + ([vs] if vs is not None else []):
        path, predicted = _read_predictions(workspace, one)
        missing = [f for f in order if f not in predicted]
        if missing:
            raise InsightsError(f"{path}: {len(missing)} fname(s) of {dev_csv} have no prediction "
                                f"(e.g. {missing[0]}); re-infer run {one.id} on this dev set")
        runs.append({"id": one.id, "nickname": one.nickname, "label": run_label(one), "predictions": str(path)})
        columns.append([predicted[f] for f in order])
    if vs is not None and _scoring(workspace, vs) != (tokenizer, scorer):
        notes.append(f"run {vs.id} was evaluated with {'/'.join(_scoring(workspace, vs))}; "
                     f"both runs are scored here with {tokenizer}/{scorer}")
    try:
        scored = [score_items(column, [references[f] for f in order], tokenizer, scorer) for column in columns]
    except ValueError as err:
        raise InsightsError(str(err)) from None
    samples = [
        Sample(fname, dialogues.get(fname, ""), references[fname], [c[i] for c in columns], [s[i] for s in scored],
               [flag_prediction(c[i], dialogues.get(fname, ""), references[fname]) for c in columns])
        for i, fname in enumerate(order)
    ]
    return SampleSet(runs, tokenizer, scorer, samples, notes)


# --- text output -------------------------------------------------------------------------------


def format_samples(sample_set: SampleSet, sort: str, filter_: str | None, limit: int | None) -> str:
    """The plain-text report of ``dialsum-tui samples``."""
    labels = [r["label"] for r in sample_set.runs]
    counts = sample_set.counts()
    means = sample_set.means()
    lines = [f"{len(sample_set.samples)} dev dialogues · scorer {sample_set.scorer} · tokenizer {sample_set.tokenizer}"]
    for i, label in enumerate(labels):
        flagged = ", ".join(f"{name} {counts[name][i]}" for name in FILTERS)
        lines.append(f"{'AB'[i]} = {label}: mean final {means[i]:.2f} · {flagged}")
    lines += [f"note: {note}" for note in sample_set.notes]
    shown = sample_set.view(sort, filter_, limit)
    lines.append(f"sort {sort}" + (f" · filter {filter_}: {RULES[filter_]}" if filter_ else "")
                 + f" · {len(shown)} shown")
    for s in shown:
        scores = "  ".join(f"{'AB'[i]} {x.final:6.2f}" for i, x in enumerate(s.scores))
        diff = f"  Δ {s.diff:+.2f}" if s.diff is not None else ""
        lines += ["", f"── {s.fname}  {scores}{diff}"]
        lines += [f"  dialogue: {line}" if n == 0 else f"            {line}" for n, line in enumerate(s.dialogue.split("\n"))]
        lines += [f"  ref {n}: {ref}" for n, ref in enumerate(s.references, start=1)]
        for i, prediction in enumerate(s.predictions):
            found = "; ".join(f"{k}: {v}" for k, v in s.flags[i].items())
            lines.append(f"  {'AB'[i]}: {prediction or '(empty)'}" + (f"   [{found}]" if found else ""))
    return "\n".join(lines)
