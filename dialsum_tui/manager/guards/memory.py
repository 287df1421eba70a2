"""Provides the admission side of the GPU memory prediction (:mod:`engine.footprint`): what a stage
is expected to take (measured when a run of the same memory-relevant config ran it, else predicted,
else unknown), whether a config fits the chosen GPU(s), and whether a stage may start beside our
own stages on a shared GPU (opt-in, ``gpu_sharing`` in settings.yaml).

Pure: the footprint, the device readings and the runs come in; decisions and the words for them go
out. The I/O (reading the model's config.json, asking NVML) is the callers': the preflight
(:func:`dialsum_tui.manager.guards.preflight.estimate`), the GPU guard and the worker's
:mod:`~dialsum_tui.manager.worker.peaks`. docs/memory.md, "In the manager", says how they fit together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dialsum_tui.manager.runs.models import Run, RunState, parse_gpus
from engine.checkpoints import dotted_items
from engine.config import ConfigError, RunConfig
from engine.contract import load_snapshot
from engine.footprint import IDLE_BASELINE_GIB, Fix, Footprint
from engine.units import GIB

# The reason of a run that waits for our own runs on its devices (admission's, and the GPU guard's when
# a shared GPU has no room yet): ordinary queueing, never "held by a guard" (`check` exits 0 for it).
SAME_DEVICE_REASON = "waiting for the running run(s) on the same device(s)"

MEASURED, PREDICTED, UNKNOWN = "measured", "predicted", "unknown"

# Config keys that do not change a stage's peak GPU memory: a run that differs from a measured one only
# in these uses its measured peaks (a sweep over the learning rate, a retry with more epochs). Every
# other key counts, so a key added to the config later never reuses a figure it might change.
# train.epochs is here because the longest batch comes first (length-grouped) and an in-training
# evaluation runs every epoch; train.max_steps is not (a short run may stop before its first evaluation).
NON_MEMORY_KEYS = frozenset({
    "model.nickname", "model.trust_remote_code",
    "lora.alpha",
    "train.epochs", "train.learning_rate", "train.grad_accum", "train.warmup_ratio", "train.weight_decay",
    "train.lr_scheduler", "train.max_grad_norm", "train.seed", "train.logging_steps", "train.eval_steps",
    "train.save_strategy", "train.save_steps", "train.save_total_limit", "train.save_on_stop",
    "train.early_stopping_patience", "train.report_to", "train.dataloader_num_workers",
    "generation.length_penalty", "generation.no_repeat_ngram_size", "generation.early_stopping",
})
NON_MEMORY_SECTIONS = ("paths.",)


# --- what a stage needs -------------------------------------------------------------------------


def memory_key(cfg: RunConfig, gpus: int = 1) -> str:
    """A hash of everything in ``cfg`` that changes a stage's peak GPU memory, and of the GPU count
    (DDP adds gradient buckets): runs with the same key share their measured peaks."""
    kept = {key: value for key, value in dotted_items(cfg.model_dump()).items()
            if key not in NON_MEMORY_KEYS and not key.startswith(NON_MEMORY_SECTIONS)}
    kept["gpus"] = max(1, gpus)
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def gpu_count(gpus: str | None) -> int:
    """GPUs a run's train stage spreads over (``"0,1"`` → 2; none named → 1)."""
    return len(parse_gpus(gpus) or [0])


def completed_stages(run: Run) -> tuple[str, ...]:
    """The stages of ``run`` that ran to their end: their recorded peak is a whole stage's, not the
    part of one that failed, was cancelled or is still running."""
    stages = tuple(run.stages)
    if run.state is RunState.SUCCEEDED:
        return stages
    current = run.failed_stage or run.stage
    return stages[:stages.index(current)] if current in stages else ()


@dataclass(frozen=True)
class Need:
    """What a stage is expected to take on each of its GPUs: ``gib`` (None: unknown), where the figure
    comes from (``measured``, ``predicted``, ``unknown``), and the run it was measured on."""

    gib: float | None
    source: str = UNKNOWN
    run_id: int | None = None

    @property
    def known(self) -> bool:
        return self.gib is not None

    @property
    def text(self) -> str:
        """``"16.2 GiB measured (run 3)"``, ``"17.5 GiB predicted"``, ``"unknown"``."""
        if self.gib is None:
            return "unknown (the model's config.json is not on disk)"
        of = f" (run {self.run_id})" if self.source == MEASURED and self.run_id is not None else ""
        return f"{self.gib:.1f} GiB {self.source}{of}"


KeyOf = Callable[[Run], "str | None"]


def measured_peaks(key: str | None, runs: Iterable[Run], key_of: KeyOf) -> dict[str, Need]:
    """stage → the newest measured peak of a run with memory key ``key`` whose stage ran to its end."""
    found: dict[str, Need] = {}
    if key is None:
        return found
    for run in sorted((r for r in runs if r.gpu_peaks), key=lambda r: -r.id):
        done = completed_stages(run)
        fresh = [s for s in done if s not in found and isinstance(run.gpu_peaks.get(s), int | float)]
        if fresh and key_of(run) == key:
            found.update({s: Need(float(run.gpu_peaks[s]), MEASURED, run.id) for s in fresh})
    return found


def stage_need(run: Run, stage: str, runs: Iterable[Run], key_of: KeyOf) -> Need:
    """The peak a stage of ``run`` is expected to reach: measured on a run of the same memory key,
    else the prediction stored at ``add`` (only when the model's dimensions were known), else unknown."""
    measured = measured_peaks(key_of(run), runs, key_of).get(stage)
    if measured is not None:
        return measured
    predicted = run.gpu_predicted.get(stage)
    return Need(float(predicted), PREDICTED) if isinstance(predicted, int | float) else Need(None)


def predicted_by_stage(footprint: Footprint, stages: Iterable[str]) -> dict[str, float]:
    """``run.gpu_predicted``: stage → predicted peak GiB, for the stages the run will run (empty when
    the model is unknown: nothing is guessed)."""
    if not footprint.known:
        return {}
    return {s: footprint.stages[s].predicted_gib for s in stages
            if s in footprint.stages and footprint.stages[s].predicted_gib is not None}


def predicted_vs_measured(run: Run) -> dict[str, dict[str, float | None]]:
    """stage → ``{"predicted_gib", "measured_gib"}`` for each stage of the run (results, compare)."""
    return {stage: {"predicted_gib": run.gpu_predicted.get(stage), "measured_gib": run.gpu_peaks.get(stage)}
            for stage in run.stages}


# --- does a config fit ----------------------------------------------------------------------------


@dataclass
class Estimate:
    """A config's prediction against the GPU(s) it would run on: per stage what it needs (measured
    figures win over predicted ones), whether every stage fits, and the cheapest fix when one does not.

    ``gpu_total_gib`` is None when no GPU is visible (then ``fits`` is None and ``note`` says so).
    """

    footprint: Footprint
    stages: tuple[str, ...]
    gpus: list[int] | None
    gpu_total_gib: float | None
    gpu_label: str  # "GPU 0 (NVIDIA H100 80GB HBM3, 79.6 GiB)", or why there is none
    measured: dict[str, Need] = field(default_factory=dict)
    fix: Fix | None = None
    config: str = ""
    note: str = ""
    idle_gib: float = IDLE_BASELINE_GIB

    def need(self, stage: str) -> Need:
        """What ``stage`` is judged by: its measured peak, else the prediction's required memory."""
        if stage in self.measured:
            return self.measured[stage]
        required = self.footprint.stages[stage].required_gib if stage in self.footprint.stages else None
        return Need(required, PREDICTED) if required is not None else Need(None)

    @property
    def too_big(self) -> list[str]:
        """Stages whose need plus the device's idle baseline exceeds the GPU."""
        if self.gpu_total_gib is None:
            return []
        return [s for s in self.stages
                if (gib := self.need(s).gib) is not None and gib + self.idle_gib > self.gpu_total_gib]

    @property
    def fits(self) -> bool | None:
        """True/False against the GPU; None when no GPU is visible or a stage's need is unknown."""
        if self.gpu_total_gib is None:
            return None
        if self.too_big:
            return False
        return True if all(self.need(s).known for s in self.stages) else None

    def one_line(self) -> str:
        """The estimate in one line, for the add dialog: ``"GPU memory on GPU 0 (…): train 17.1 GiB
        predicted · infer 15.1 GiB predicted · evaluate 0.0 GiB predicted — fits"``."""
        if not self.footprint.known and not self.measured:
            return f"GPU memory unknown: {self.footprint.reason}"
        stages = " · ".join(f"{s} {self.need(s).text}" for s in self.stages)
        verdict = {True: "fits", False: "does NOT fit", None: "fit not judged"}[self.fits]
        where = f"on {self.gpu_label}" if self.gpu_total_gib is not None else f"({self.gpu_label})"
        return f"GPU memory {where}: {stages} — {verdict}"

    def problem(self) -> str | None:
        """The refusal's words (None when it fits or cannot be judged): what each stage needs, the GPU,
        and the cheapest fix with its ``--set`` form."""
        big = self.too_big
        if not big:
            return None
        lines = []
        for stage in big:
            need = self.need(stage)
            parts = self.footprint.stages[stage].parts if need.source == PREDICTED else {}
            top = sorted(parts.items(), key=lambda kv: -kv[1])[:3]
            detail = ", ".join(f"{k} {v:.1f}" for k, v in top)
            lines.append(f"{stage} needs {need.text}{f' ({detail})' if detail else ''}")
        text = (f"{'; '.join(lines)}; with the {self.idle_gib:.2f} GiB idle baseline that is more than "
                f"{self.gpu_label} holds")
        if self.fix is not None and self.fix.changes:
            sets = " ".join(f"--set {k}={json.dumps(v)}" for k, v in self.fix.changes.items())
            return f"{text}; cheapest fix: {', '.join(self.fix.text)} (as overrides: {sets})"
        return f"{text}; no batch size, checkpointing, 4-bit or beam setting makes it fit: use a larger GPU or model"

    def to_json(self) -> dict[str, Any]:
        """The ``estimate --json`` body (docs/cli.md)."""
        stages = {}
        for stage in self.stages:
            prediction = self.footprint.stages.get(stage)
            measured = self.measured.get(stage)
            need = self.need(stage)
            stages[stage] = {
                **(prediction.to_json() if prediction else {"predicted_gib": None, "required_gib": None, "parts": {},
                                                            "note": ""}),
                "measured_gib": measured.gib if measured else None,
                "measured_run": measured.run_id if measured else None,
                "need_gib": need.gib, "need_source": need.source,
                "fits": None if self.gpu_total_gib is None or need.gib is None
                else need.gib + self.idle_gib <= self.gpu_total_gib,
            }
        return {
            "config": self.config, "known": self.footprint.known, "reason": self.footprint.reason,
            "model_config": self.footprint.model_config, "gpus": self.gpus, "gpu": self.gpu_label,
            "gpu_total_gib": self.gpu_total_gib, "idle_gib": self.idle_gib, "stages": stages, "fits": self.fits,
            "too_big": self.too_big, "fix": ({"changes": self.fix.changes, "text": self.fix.text}
                                             if self.fix is not None and self.fix.changes else None),
            "note": self.note,
        }

    def text(self) -> str:
        """What ``dialsum-tui estimate`` prints: a line per stage, its parts below it, then the verdict."""
        out = [f"{self.config}: GPU memory per stage on {self.gpu_label}" if self.config
               else f"GPU memory per stage on {self.gpu_label}"]
        if not self.footprint.known:
            out.append(f"  model unknown: {self.footprint.reason}")
        for stage in self.stages:
            prediction = self.footprint.stages.get(stage)
            if prediction is None:
                continue
            head = f"  {stage:<9}"
            if prediction.predicted_gib is None:
                head += " unknown"
            else:
                head += f" {prediction.predicted_gib:6.1f} GiB predicted"
                if prediction.required_gib is not None and prediction.required_gib != prediction.predicted_gib:
                    head += f" (runs in {prediction.required_gib:.1f})"
            if stage in self.measured:
                head += f", {self.measured[stage].text}"
            out.append(head)
            if prediction.parts:
                out.append("      " + " · ".join(f"{k} {v:.2f}" for k, v in prediction.parts.items()))
            if prediction.note and prediction.predicted_gib == 0.0:
                out.append(f"      {prediction.note}")
        fits = self.fits
        if fits is None:
            out.append(f"fits: unknown ({self.note})" if self.note else "fits: unknown")
        elif fits:
            out.append("fits: yes")
        else:
            out.append(f"fits: NO — {self.problem()}")
        return "\n".join(out)


def device_total(devices: Iterable[Any], gpus: list[int] | None) -> tuple[float | None, str]:
    """The memory a run gets: the smallest of its chosen GPUs, else the largest GPU of the host (a run
    that names none may land on any); (None, why) when none is visible or a chosen one is missing."""
    by_index = {d.index: d for d in devices}
    if not by_index:
        return None, "no GPU visible"
    chosen = [by_index[i] for i in gpus or [] if i in by_index]
    if gpus and len(chosen) != len(gpus):
        return None, "the chosen GPU is not on this host"
    pick = min(chosen, key=lambda d: d.total_bytes) if chosen else max(by_index.values(), key=lambda d: d.total_bytes)
    total = round(pick.total_bytes / GIB, 2)
    if gpus:
        return total, f"GPU {','.join(map(str, gpus))} ({pick.name}, {total:.1f} GiB)"
    return total, f"GPU {pick.index}, the largest here ({pick.name}, {total:.1f} GiB)"


# --- sharing a GPU with our own stages ------------------------------------------------------------


@dataclass(frozen=True)
class Resident:
    """One of our stages running now: its devices (None: all) and the peak it is expected to reach."""

    run_id: int
    nickname: str
    devices: list[int] | None
    expected: Need
    exclusive: bool = False  # its config ran out of memory beside another run: it runs alone


@dataclass(frozen=True)
class SharePlan:
    """What the GPU guard needs to let a stage start beside our own (settings ``gpu_sharing: true``)."""

    need: Need  # the candidate stage's
    residents: tuple[Resident, ...]
    margin_gib: float

    def on_device(self, index: int) -> dict[int, Resident]:
        """Our stages running on device ``index``, by run id."""
        return {r.run_id: r for r in self.residents if r.devices is None or index in r.devices}


def share_problem(index: int, total_bytes: int, used_bytes: int, ours_now: Mapping[int, int], plan: SharePlan,
                  residents: Mapping[int, Resident]) -> str | None:
    """Whether the candidate fits beside ``residents`` on one device (None: it does), else why not.

    Each resident is counted at the larger of what it holds now and the peak it is expected to reach
    (it may not have reached it yet); memory nobody of ours holds (the driver's baseline, a process
    NVML cannot attribute) is counted as it is. What is left, less the margin, must cover the need.
    """
    alone = [r for r in residents.values() if r.exclusive]
    if alone:
        r = alone[0]
        return f"{SAME_DEVICE_REASON}: run {r.run_id} ({r.nickname}) runs alone on GPU {index} since its config ran " \
               "out of memory beside another run"
    unknown = [r for r in residents.values() if not r.expected.known]
    if not plan.need.known or unknown:
        who = "this stage's" if not plan.need.known else f"run {unknown[0].run_id}'s ({unknown[0].nickname})"
        return f"{SAME_DEVICE_REASON}: GPU {index} is shared only by measured or predicted peaks, and {who} is " \
               "unknown (its model's config.json is not on disk)"
    others = (used_bytes - sum(ours_now.values())) / GIB
    reserved = others + sum(max(ours_now.get(rid, 0) / GIB, r.expected.gib or 0.0) for rid, r in residents.items())
    room = total_bytes / GIB - reserved - plan.margin_gib
    if plan.need.gib is not None and plan.need.gib <= room:
        return None
    beside = ", ".join(f"run {rid} ({r.nickname}, {r.expected.text})" for rid, r in residents.items())
    return (f"{SAME_DEVICE_REASON}: GPU {index} has {max(room, 0.0):.1f} GiB left beside {beside} after a "
            f"{plan.margin_gib:g} GiB margin; this stage needs {plan.need.text}")


def key_cache() -> KeyOf:
    """:func:`snapshot_key` remembered by run id (a run's snapshot and GPUs never change): one reading
    of each stored run per caller, however many candidates are matched against them."""
    keys: dict[int, str | None] = {}

    def key_of(run: Run) -> str | None:
        if run.id not in keys:
            keys[run.id] = snapshot_key(run)
        return keys[run.id]

    return key_of


def snapshot_key(run: Run) -> str | None:
    """The memory key of a stored run (its config snapshot and GPU count); None when the snapshot
    does not load."""
    try:
        return memory_key(load_snapshot(run.config_yaml, f"run {run.id} config snapshot"), gpu_count(run.gpus))
    except ConfigError:
        return None
