"""Provides the comparison of runs: one metric row per run, the config keys that differ (generation
settings included) and the loss and dev-ROUGE curves, read from each run's snapshot and events.

The numbers come from the run directories (``config.yaml`` through ``engine.contract.load_snapshot``,
``events.jsonl`` through its bounded summary, :func:`dialsum_tui.manager.runs.events.run_summary`), so a
comparison is the same whether the worker, the TUI or a script asks for it, and costs the same for a
2 GB event file as for a 2 KB one (the loss curve is at most a few hundred points per stage).

Scores are compared only on the same basis (:class:`ScoreBasis`): the same tokenizer and scorer, and
the same number of dev rows scored (``n``: dev rows removed or added between two evaluations make
their numbers incomparable).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from dialsum_tui.manager.errors import DialsumError
from dialsum_tui.manager.guards.memory import predicted_vs_measured
from dialsum_tui.manager.runs.events import ScoreBasis, run_summary, stored_eval
from engine.checkpoints import dotted_items
from engine.config import ConfigError
from engine.contract import Artifact, ArtifactKind, Eval, EventRecord, RunFiles, Stage, TrainLog, load_snapshot

if TYPE_CHECKING:
    from pathlib import Path

    from dialsum_tui.manager.runs.models import Run
    from dialsum_tui.manager.workspace.layout import Workspace

# The column label already says which model each column is; listing it as a difference is noise.
_LABEL_KEYS = frozenset({"model.nickname"})


class InsightsError(DialsumError, ValueError):
    """Bad input for compare, samples, submit or lb (exit status 2); the message says what to do."""


def basis_warning(bases: list[ScoreBasis]) -> str | None:
    """Why these scores are not comparable (None when they are): a different tokenizer or scorer,
    or a different number of dev rows scored."""
    if len({(b.tokenizer, b.scorer) for b in bases}) > 1:
        return "these finals were made with different tokenizers/scorers and are not comparable"
    sizes = sorted({b.n for b in bases if b.n is not None})
    if len(sizes) > 1:
        return (f"these finals were scored on different dev sets ({' vs '.join(f'n={n}' for n in sizes)} rows) "
                "and are not comparable")
    return None


@dataclass(frozen=True)
class DevMetric:
    """A run's dev ROUGE and how it was made (numbers made differently are never compared)."""

    rouge1: float | None
    rouge2: float | None
    rougeL: float | None  # noqa: N815 - the events schema's name
    final: float | None
    tokenizer: str | None
    scorer: str | None
    n: int | None
    stage: str | None  # evaluate (the whole dev set) or train (an in-training evaluation)

    @property
    def comparable_key(self) -> tuple[str | None, str | None]:
        """Numbers are comparable only under the same tokenizer and scorer (and ``n``: :attr:`basis`)."""
        return self.tokenizer, self.scorer

    @property
    def basis(self) -> ScoreBasis:
        """What this score was made on (:class:`ScoreBasis`)."""
        return ScoreBasis(self.tokenizer, self.scorer, self.n)

    @classmethod
    def of(cls, record: Eval) -> DevMetric:
        """The metric an evaluation record reports (``stage``: the stage that wrote it)."""
        return cls(record.rouge1, record.rouge2, record.rougeL, record.final, record.tokenizer, record.scorer,
                   record.n, record.command)


_NO_METRIC = DevMetric(None, None, None, None, None, None, None, None)


@dataclass
class Curves:
    """One run's curves: (step, train loss) and (step, dev final) of the in-training evaluations."""

    run_id: int
    loss: list[tuple[float, float]] = field(default_factory=list)
    rouge: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class DiffRow:
    """One config key whose value differs between the runs; ``values`` follows the runs' order."""

    key: str
    values: list[Any]


@dataclass
class Comparison:
    """Everything the compare screen and ``dialsum-tui compare`` show."""

    runs: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    config_diff: list[DiffRow]
    curves: list[Curves]

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` body: exactly ``runs``, ``metrics``, ``config_diff`` and ``curves``."""
        return {
            "runs": self.runs,
            "metrics": self.metrics,
            "config_diff": [asdict(row) for row in self.config_diff],
            "curves": [{"run_id": c.run_id, "loss": [list(p) for p in c.loss], "rouge": [list(p) for p in c.rouge]}
                       for c in self.curves],
        }

    def basis_warning(self) -> str | None:
        """Why these runs' finals are not comparable (:func:`basis_warning`), None when they are."""
        return basis_warning([ScoreBasis(m["tokenizer"], m["scorer"], m["n"]) for m in self.metrics
                              if m["final"] is not None])


def run_label(run: Run) -> str:
    """How a run is named in legends and column headers: its nickname and id."""
    return f"{run.nickname} #{run.id}"


def run_events(workspace: Workspace, run: Run) -> list[EventRecord]:
    """The typed records a reader shows of a run's ``events.jsonl``, in file order: every rare one
    and a loss curve of at most a few hundred points per stage (:func:`run_summary`, bounded)."""
    return list(run_summary(RunFiles(workspace.run_dir(run.id)).events).kept)


def run_snapshot(run: Run) -> Any:
    """The run's config snapshot; a broken one is an :class:`InsightsError` (exit 2, names the run)."""
    try:
        return load_snapshot(run.config_yaml, source=f"run {run.id} config snapshot")
    except ConfigError as err:
        raise InsightsError(str(err)) from None


def written_artifact(workspace: Workspace, run: Run, kind: ArtifactKind, suffix: str = "") -> Path | None:
    """The last file of ``kind`` the run's events say it wrote (ending in ``suffix``), or None."""
    written = [e.path for e in run_events(workspace, run)
               if isinstance(e, Artifact) and e.kind == kind and e.path and e.path.endswith(suffix)]
    return workspace.resolve(written[-1]) if written else None


def dev_metric(workspace: Workspace, run: Run, events: list[EventRecord] | None = None) -> DevMetric | None:
    """The run's dev ROUGE: its evaluate stage's score, else its last in-training evaluation.

    The evaluate stage scores the whole dev set; an in-training evaluation may score a subset
    (``data.max_eval_samples``), which ``n`` and ``stage`` make visible. Without ``events``, the
    store's record of the evaluate stage's score answers when it has one (the file is not opened).
    """
    if events is None:
        stored = stored_eval(run.metrics)
        if stored is not None and stored.command == Stage.EVALUATE and stored.final is not None:
            return DevMetric.of(stored)
        events = run_events(workspace, run)
    evals = [e for e in events if isinstance(e, Eval) and e.final is not None]
    if not evals:
        return None
    return DevMetric.of(next((e for e in reversed(evals) if e.command == Stage.EVALUATE), evals[-1]))


def run_curves(run: Run, events: list[EventRecord]) -> Curves:
    """Loss per logged step and dev final per in-training evaluation (x = optimizer step)."""
    curves = Curves(run.id)
    for event in events:
        if isinstance(event, TrainLog) and event.loss is not None and event.step is not None:
            curves.loss.append((float(event.step), float(event.loss)))
        elif isinstance(event, Eval) and event.command != Stage.EVALUATE and event.final is not None \
                and event.step is not None:
            curves.rouge.append((float(event.step), float(event.final)))
    return curves


def run_config_flat(run: Run) -> dict[str, Any]:
    """The run's validated snapshot, every default filled in, as dotted keys.

    Raises:
        InsightsError: the snapshot does not validate (names the run and the key).
    """
    try:
        cfg = load_snapshot(run.config_yaml, source=f"run {run.id} config snapshot")
    except ConfigError as err:
        raise InsightsError(str(err)) from None
    return dotted_items(cfg.model_dump())


def config_diff(runs: list[Run], only: list[str] | None = None) -> list[DiffRow]:
    """The keys whose values differ between the runs, in the config's section order (``only``: those
    keys, in that order — a sweep's swept keys)."""
    flats = [run_config_flat(run) for run in runs]
    keys: list[str] = []
    for flat in flats:
        keys += [key for key in flat if key not in keys]
    if only is not None:
        keys = [key for key in only if key in keys]
    missing = object()
    rows = []
    for key in keys:
        if key in _LABEL_KEYS:
            continue
        values = [flat.get(key, missing) for flat in flats]
        if any(value != values[0] for value in values[1:]):
            rows.append(DiffRow(key, [None if value is missing else value for value in values]))
    return rows


def compare_runs(workspace: Workspace, runs: list[Run], keys: list[str] | None = None) -> Comparison:
    """Compare two or more runs (``keys``: the config keys to show, e.g. a sweep's swept keys; default
    every key whose value differs).

    Raises:
        InsightsError: fewer than two distinct runs, or a snapshot that does not validate.
    """
    if len({run.id for run in runs}) < 2 or len(runs) != len({run.id for run in runs}):
        raise InsightsError("compare needs two or more different run ids, e.g. `dialsum-tui compare 3 5`")
    rows, metric_rows, curves = [], [], []
    for run in runs:
        events = run_events(workspace, run)
        rows.append({"id": run.id, "nickname": run.nickname, "label": run_label(run), "state": run.state.value,
                     "action": run.action.value, "gpu_memory": predicted_vs_measured(run)})
        metric = dev_metric(workspace, run, events)
        metric_rows.append({"run_id": run.id, **(asdict(metric) if metric else asdict(_NO_METRIC))})
        curves.append(run_curves(run, events))
    return Comparison(rows, metric_rows, config_diff(runs, keys), curves)

