"""Provides the preflight: everything about a run that can be known before its first step, checked
at ``add`` (refused with exit 2) and again when a stage is admitted (the run fails before it starts).

Each check returns :class:`Problem` records naming the key or file to change; nothing here starts a
process or touches the store. The CSVs are read with the engine's own validator
(:func:`engine.data.load_split`, what ``python -m engine check-data`` runs), so the two never
disagree; :class:`DataChecks` remembers verdicts by file size and mtime, so a waiting queue does not
re-read a 12k-row file every tick. A run whose GPU memory (:mod:`engine.footprint`, or a measured peak
of the same config) cannot fit its GPU(s) is refused with the cheapest fix (:func:`check_memory`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dialsum_tui.manager.backends.registry import places_devices
from dialsum_tui.manager.guards.gpu import GpuDevice, GpuSource
from dialsum_tui.manager.guards.memory import Estimate, Need, device_total
from dialsum_tui.manager.runs.models import Run
from dialsum_tui.manager.workspace.layout import Workspace
from engine.artifacts import dev_predictions_path, final_model_dir, is_complete_model
from engine.config import ConfigError, RunConfig
from engine.contract import DATA_FILES, DEV_CSV, TEST_CSV, TRAIN_CSV, FailureKind, Stage, load_snapshot
from engine.data import DataError, load_split
from engine.failures import Failure
from engine.footprint import cheapest_fix, predict
from engine.model_check import model_mistakes

# A hub repo id: "org/name" (HF's rules: letters, digits, '-', '_', '.'; no leading '-' or '.').
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
# What a model directory holds: a transformers config, or a PEFT adapter's.
MODEL_DIR_FILES = ("config.json", "adapter_config.json")
# The CSVs each stage reads (infer writes test and dev predictions: --split both).
STAGE_FILES: dict[str, tuple[str, ...]] = {
    Stage.TRAIN: (TRAIN_CSV, DEV_CSV),
    Stage.INFER: (TEST_CSV, DEV_CSV),
    Stage.EVALUATE: (DEV_CSV,),
}
_SPLIT_OF = {name: name.removesuffix(".csv") for name in DATA_FILES}


@dataclass(frozen=True)
class Problem:
    """One thing that would fail the run later: ``where`` to change it, ``message`` what and how."""

    where: str  # a config key ("data.dir"), a file, a flag ("--gpu") or a setting
    message: str
    kind: FailureKind = FailureKind.CONFIG  # the failure the run records when it is found at admission

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def describe(problems: Iterable[Problem]) -> str:
    """The problems as lines, for an error message (exit 2) or a run's failure message."""
    return "\n".join(f"  - {p}" for p in problems)


@dataclass
class DataChecks:
    """Verdicts of :func:`engine.data.load_split` per file, kept while the file is unchanged."""

    _seen: dict[tuple[str, int, int], str | None] = field(default_factory=dict)

    def problem(self, data_dir: Path, name: str) -> Problem | None:
        path = data_dir / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            return Problem(str(path), f"missing; put the competition's {name} in data.dir ({data_dir})", FailureKind.DATA)
        except OSError as err:
            return Problem(str(path), f"cannot be read ({err.strerror})", FailureKind.DATA)
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._seen:
            try:
                load_split(data_dir, _SPLIT_OF[name], normalize=False)  # errors do not depend on it; 2x faster
                self._seen[key] = None
            except DataError as err:
                self._seen[key] = str(err)
        error = self._seen[key]
        # The engine's message already starts with the file and line; keep it whole.
        return None if error is None else Problem(str(path), error.removeprefix(f"{path}: "), FailureKind.DATA)


def stages_from(stages: tuple[str, ...], stage: str | None) -> tuple[str, ...]:
    """The stages of a run from ``stage`` on (all of them when ``stage`` is None)."""
    return stages[stages.index(stage):] if stage in stages else stages


def check_model(ws: Workspace, name_or_path: str) -> list[Problem]:
    """A local model path must exist and look like a model dir; anything else must look like a hub id.

    ``models/tiny`` with no ``models/`` directory in the workspace is taken as a hub id (``org/name``);
    with a ``models/`` directory there, it is a missing local model — not a hub lookup hours later.
    """
    key = "model.name_or_path"
    local = ws.resolve(name_or_path)
    if local.is_dir():
        if not any((local / name).is_file() for name in MODEL_DIR_FILES):
            return [Problem(key, f"{local} is a directory but not a model (no {' or '.join(MODEL_DIR_FILES)}); "
                                 "point it at the saved model directory")]
        return []
    if local.exists():
        return [Problem(key, f"{local} is a file; point it at a model directory or a hub id such as org/name")]
    explicit_path = name_or_path.startswith(("/", "./", "../", "~")) or name_or_path.count("/") != 1
    if explicit_path or not _HUB_ID.match(name_or_path):
        return [Problem(key, f"{name_or_path!r}: no such local model directory ({local}) and not a hub id "
                             "(org/name); fix the path or download the model")]
    if local.parent.is_dir() and local.parent != ws.root:
        return [Problem(key, f"{name_or_path!r}: no such local model directory ({local}); {local.parent.name}/ exists "
                             "in the workspace, so this reads as a local path, not a hub id; fix the path")]
    return []


def check_data(ws: Workspace, cfg: RunConfig, stages: tuple[str, ...], checks: DataChecks) -> list[Problem]:
    """``data.dir`` exists and the CSVs the stages read pass the engine's validator."""
    data_dir = ws.resolve(cfg.data.dir)
    if not data_dir.is_dir():
        return [Problem("data.dir", f"{data_dir} does not exist or is not a directory; "
                                    "set data.dir to the folder with train.csv, dev.csv and test.csv", FailureKind.DATA)]
    needed = [name for name in DATA_FILES if any(name in STAGE_FILES[s] for s in stages)]
    return [p for name in needed if (p := checks.problem(data_dir, name)) is not None]


def check_prerequisites(ws: Workspace, cfg: RunConfig, stage: str, keys: tuple[str, str] | None = None) -> list[Problem]:
    """What a stage reads that an earlier stage writes: a complete final_model, the dev predictions.

    ``keys`` are the artifact keys the run loads its model from and scores the predictions of
    (``manager.identity.model_key``/``predictions_key``); None: the nickname's own (a standalone layout).
    """
    model_key, predictions_key = keys or (cfg.model.nickname, cfg.model.nickname)
    if stage == Stage.INFER:
        model = final_model_dir(ws.resolve(cfg.paths.checkpoints), model_key)
        if not is_complete_model(model):
            return [Problem(str(model), "no complete final_model to infer from (train it first: "
                                        "`dialsum-tui add CONFIG --action train`, or `retry ID` of its train run)")]
    if stage == Stage.EVALUATE:
        predictions = dev_predictions_path(ws.resolve(cfg.paths.submissions), predictions_key)
        if not predictions.is_file():
            return [Problem(str(predictions), "no dev predictions to evaluate (run infer first: `--action infer`)")]
    return []


def check_outputs(ws: Workspace, cfg: RunConfig, quota_root: Path, allow_outside: bool) -> list[Problem]:
    """Checkpoints and submissions must land inside the quota'd tree: the disk guard and prune see only it."""
    if allow_outside:
        return []
    problems = []
    for key, value in (("paths.checkpoints", cfg.paths.checkpoints), ("paths.submissions", cfg.paths.submissions)):
        where = ws.resolve(value).resolve()
        if where != quota_root and quota_root not in where.parents:
            problems.append(Problem(key, f"{where} is outside the quota'd tree {quota_root}: the disk guard and prune "
                                         "would not see it; move it inside, or set allow_outside_quota: true in "
                                         ".dialsum/settings.yaml"))
    return problems


def check_gpus(gpus: list[int] | None, source: GpuSource, devices: list[GpuDevice] | None = None) -> list[Problem]:
    """Every requested device index exists on this host (NVML's device list; ``devices`` when already read)."""
    if not gpus:
        return []
    try:
        present = {d.index for d in (source.devices() if devices is None else devices)}
    except Exception as err:  # NVML can fail at any call; the run must not start blind
        return [Problem("--gpu", f"cannot list the GPUs ({source.describe()}: {err}); retry when NVML answers")]
    missing = [i for i in gpus if i not in present]
    if not missing:
        return []
    have = ",".join(map(str, sorted(present))) if present else f"none: {source.describe()}"
    return [Problem("--gpu", f"GPU {','.join(map(str, missing))} not on this host (devices: {have}); "
                             "pick present devices, or leave --gpu out")]


def estimate(ws: Workspace, cfg: RunConfig, stages: Iterable[str], gpus: list[int] | None,
             devices: list[GpuDevice], measured: Mapping[str, Need] | None = None, *, source: str = "",
             no_gpu: str = "") -> Estimate:
    """The memory prediction of ``cfg`` against the GPU(s) it would run on (:class:`Estimate`).

    Args:
        ws: where a relative model path resolves.
        stages: the stages judged (the rest of the run's).
        gpus: the chosen devices (None: any GPU of the host, so the largest counts).
        devices: this host's GPUs as the GPU source read them ([] when none is visible).
        measured: stage → peak measured on a run of the same memory key (wins over the prediction).
        source: the config's name for the text.
        no_gpu: the GPU source's description, said when no GPU is visible.
    """
    count = len(gpus) if gpus else 1
    footprint = predict(cfg, ws.root, gpus=count)
    total, label = device_total(devices, gpus)
    found = Estimate(footprint, tuple(stages), gpus, total, label, dict(measured or {}), config=source)
    if total is None:
        found.gpu_label = no_gpu or label
        found.note = f"{no_gpu or label}: the prediction is not checked against a GPU here"
    elif not footprint.known:
        found.note = f"model unknown: {footprint.reason}"
    if found.too_big:
        found.fix = cheapest_fix(cfg, total, ws.root, gpus=count)
    return found


def check_memory(ws: Workspace, cfg: RunConfig, stages: tuple[str, ...], gpus: list[int] | None,
                 devices: list[GpuDevice], measured: Mapping[str, Need] | None = None) -> list[Problem]:
    """A run whose stages cannot fit the chosen GPU(s) (or, none chosen, any GPU of the host), by its
    measured peaks or else the prediction: refused with what each stage needs and the cheapest fix.
    No GPU visible, or a model whose shape is not on disk: nothing is refused."""
    problem = estimate(ws, cfg, stages, gpus, devices, measured).problem() if devices else None
    return [Problem("GPU memory", problem, FailureKind.CONFIG)] if problem else []


def preflight(ws: Workspace, cfg: RunConfig, stages: tuple[str, ...], gpus: list[int] | None,
              gpu_source: GpuSource, checks: DataChecks | None = None,
              keys: tuple[str, str] | None = None, measured: Mapping[str, Need] | None = None) -> list[Problem]:
    """Everything that would fail ``stages`` of a run later, as problems (empty: go).

    Args:
        ws: the workspace (paths in the config are relative to it).
        cfg: the run's validated config.
        stages: the stages still to run, first one next (its prerequisite is checked on disk).
        gpus: the run's device indices (None: any, or CPU).
        gpu_source: the host's GPUs (tests script it).
        checks: remembered CSV verdicts (the worker keeps one); a fresh one otherwise.
        keys: the (model, predictions) artifact keys the run reads (see :func:`check_prerequisites`).
        measured: stage → peak measured on a run of the same memory key (:func:`check_memory`).

    Raises:
        dialsum_tui.manager.workspace.settings.SettingsError: settings.yaml does not validate.
    """
    from dialsum_tui.manager.guards.disk import quota_root

    settings = ws.settings()
    problems: list[Problem] = []
    if Stage.TRAIN in stages:
        problems += check_model(ws, cfg.model.name_or_path)
        # What the model's own files contradict (kind vs architecture, no chat template, LoRA targets):
        # known before the first step, so refused here rather than failing as `unknown` an hour in.
        problems += [Problem(m.key, f"{m.message}; {m.fix}", FailureKind.CONFIG) for m in model_mistakes(cfg, ws.root)]
    problems += check_data(ws, cfg, stages, checks or DataChecks())
    if stages:
        problems += check_prerequisites(ws, cfg, stages[0], keys)
    problems += check_outputs(ws, cfg, quota_root(ws), settings.allow_outside_quota)
    if places_devices(settings.backend):  # else the devices are a scheduler's (a count), not this host's
        try:
            devices: list[GpuDevice] | None = gpu_source.devices()
        except Exception:  # NVML can fail at any call: check_gpus asks again and says so
            devices = None
        problems += check_gpus(gpus, gpu_source, devices)
        if devices and not any(p.where == "--gpu" for p in problems):
            problems += check_memory(ws, cfg, stages, gpus, devices, measured)
    return [_inside_named_relatively(ws, p) for p in problems]


def _inside_named_relatively(ws: Workspace, problem: Problem) -> Problem:
    """Paths inside the workspace said relative to it (``data/dev.csv: line 73 …``): the cause, not
    the server's directory tree, is what an 80-column ``ls`` or queue note has room for."""
    root = f"{ws.root}/"
    return Problem(problem.where.removeprefix(root), problem.message.replace(root, ""), problem.kind)


def refusal(ws: Workspace, run: Run, stage: str, gpu_source: GpuSource, checks: DataChecks,
            measured: Mapping[str, Need] | None = None) -> Failure | None:
    """The preflight again when a stage is admitted (files change while a run waits): the failure to
    record before the stage starts, or None to go (an unreadable snapshot is start_stage's to report).
    ``measured``: stage → a measured peak of the same memory key, which the memory check trusts first.

    Raises:
        WorkspaceError: settings.yaml broke meanwhile (the disk guard then holds the run).
    """
    from dialsum_tui.manager.runs.identity import model_key, predictions_key

    try:
        cfg = load_snapshot(run.config_yaml, f"run {run.id} config snapshot")
    except ConfigError:
        return None
    stages = run.stages[run.stages.index(stage):] if stage in run.stages else (stage,)
    gpus = [int(x) for x in run.gpus.split(",") if x.strip()] if run.gpus else None
    problems = preflight(ws, cfg, stages, gpus, gpu_source, checks, keys=(model_key(run), predictions_key(run)),
                         measured=measured)
    if not problems:
        return None
    kind = problems[0].kind
    return Failure(kind, f"preflight before {stage}:\n{describe(problems)}", kind.hint)
