"""Provides the worker's memory bookkeeping: each running stage's peak GPU memory, sampled from the
GPU source's process list (every rank of the run, NVML per process) into ``run.gpu_peaks``; which
stages share a GPU (``gpu_sharing``) and the plan the GPU guard judges a shared start by; and the
fall-back to exclusive for a config that ran out of memory beside another run.

The decisions are :mod:`~dialsum_tui.manager.guards.memory`'s (pure); this module only gathers the
readings and keeps what must outlive a pass: the peak so far per stage, who ran beside whom, and
``.dialsum/gpu_exclusive.json`` (memory key → the OOM that put it there), which outlives the worker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from dialsum_tui.manager.backends.registry import places_devices
from dialsum_tui.manager.guards.gpu import GpuSource
from dialsum_tui.manager.guards.memory import (
    Need,
    Resident,
    SharePlan,
    key_cache,
    measured_peaks,
    stage_need,
)
from dialsum_tui.manager.procfs import ns_pid_map
from dialsum_tui.manager.runs.models import Run, RunState, parse_gpus
from dialsum_tui.manager.store.database import RunNotFound, Store
from dialsum_tui.manager.worker.following import ActiveStage
from dialsum_tui.manager.worker.verdict import Outcome
from dialsum_tui.manager.workspace import sharing
from dialsum_tui.manager.workspace.layout import Workspace
from dialsum_tui.manager.workspace.settings import Settings
from engine.artifacts import atomic_write_text
from engine.contract import FailureKind
from engine.failures import Failure
from engine.units import GIB

log = logging.getLogger("dialsum.worker")

EXCLUSIVE_FILE = "gpu_exclusive.json"
# A peak is written to the store when it grew by this much (the allocator grows in steps; a handful
# of writes per stage), and once more when the stage ends.
WRITE_STEP_GIB = 0.05


def exclusive_path(ws: Workspace) -> Path:
    """``.dialsum/gpu_exclusive.json``: the memory keys of configs that run alone on their GPU."""
    return ws.state_dir / EXCLUSIVE_FILE


def read_exclusive(ws: Workspace) -> dict[str, dict[str, Any]]:
    """memory key → ``{"run", "nickname", "stage", "beside", "at"}`` of the OOM that made it exclusive
    (an unreadable file counts as empty: sharing then tries again, and a new OOM records it again)."""
    try:
        body = json.loads(exclusive_path(ws).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _overlap(a: list[int] | None, b: list[int] | None) -> bool:
    return a is None or b is None or bool(set(a) & set(b))


class MemoryWatch:
    """The worker's memory readings and records, on one workspace (one per worker)."""

    def __init__(self, ws: Workspace, source: GpuSource, store: Store) -> None:
        self.ws = ws
        self.source = source
        self.store = store
        self.exclusive = read_exclusive(ws)
        self.key_of = key_cache()  # run → its memory key (guards.memory.memory_key); None: the snapshot does not load
        self._gpus: dict[int, list[int] | None] = {}
        self._max: dict[tuple[int, str], int] = {}  # (run, stage) → the most bytes seen on one GPU
        self._written: dict[tuple[int, str], float] = {}  # (run, stage) → the GiB on record
        self._beside: dict[int, set[int]] = {}  # run → our runs that shared a GPU with its stage
        self._ns: tuple[frozenset[int], dict[int, int]] = (frozenset(), {})

    # --- what a run's stages need ----------------------------------------------------------------

    def measured(self, run: Run, runs: list[Run]) -> dict[str, Need]:
        """stage → the peak measured on a run of the same memory key (a retry, a sweep variant)."""
        return measured_peaks(self.key_of(run), runs, self.key_of)

    def shares(self, run: Run) -> bool:
        """Whether ``run`` may start beside our own stages (its config never ran out of memory so)."""
        return self.key_of(run) not in self.exclusive

    def share_plan(self, run: Run, stage: str, runs: list[Run], settings: Settings) -> SharePlan | None:
        """What the GPU guard judges a shared start by; None when sharing is off or the run runs alone."""
        if not settings.gpu_sharing or not self.shares(run):
            return None
        residents = tuple(
            Resident(r.id, r.nickname, parse_gpus(r.gpus), stage_need(r, r.stage, runs, self.key_of),
                     exclusive=not self.shares(r))
            for r in runs if r.id != run.id and r.state is RunState.RUNNING and r.pid is not None and r.stage
            and places_devices(r.backend))
        return SharePlan(stage_need(run, stage, runs, self.key_of), residents, settings.gpu_share_margin_gib)

    # --- peaks -----------------------------------------------------------------------------------

    def sample(self, active: Mapping[int, ActiveStage], seen_pids: Mapping[int, tuple[int, str]],
               baselines: Mapping[int, int]) -> None:
        """One reading of every local stage's GPU memory: per GPU, the sum of its processes (launcher
        and ranks); a stage's peak is its largest such sum. Where NVML attributes no memory to any
        process (some containers) and one stage of ours is alone on a GPU, the GPU's use above its idle
        baseline is that stage's. New peaks go to the store (``run.gpu_peaks``)."""
        local = {rid: st for rid, st in active.items() if st.ident is not None}
        if not local:
            return
        try:
            devices = self.source.devices()
        except Exception as err:  # NVML can fail at any call; a missed sample is only a missed sample
            log.debug("peak sample skipped: %s", err)
            return
        ours = {pid: rid for pid, (rid, _nick) in seen_pids.items() if rid in local}
        ours.update({st.ident.pid: rid for rid, st in local.items() if st.ident is not None})
        unmatched = frozenset(p.pid for d in devices for p in d.processes if p.pid not in ours)
        if unmatched:  # inside a container NVML lists host pids: map them through NSpid where visible
            if unmatched != self._ns[0]:
                self._ns = (unmatched, ns_pid_map())
            ours.update({pid: ours[local_pid] for pid in unmatched
                         if (local_pid := self._ns[1].get(pid)) is not None and local_pid in ours})
        per_run: dict[int, int] = {}
        for device in devices:
            held: dict[int, int] = {}
            foreign = 0
            for proc in device.processes:
                rid = ours.get(proc.pid)
                if rid is None:
                    foreign += proc.used_bytes
                else:
                    held[rid] = held.get(rid, 0) + proc.used_bytes
            if not any(held.values()) and not foreign and device.index in baselines:
                alone = [rid for rid in local if _overlap(self._gpus_of(rid), [device.index])]
                if len(alone) == 1:
                    held = {alone[0]: max(0, device.used_bytes - baselines[device.index])}
            for rid, used in held.items():
                per_run[rid] = max(per_run.get(rid, 0), used)
        for rid, used in per_run.items():
            key = (rid, local[rid].stage)
            self._max[key] = max(self._max.get(key, 0), used)
            self._write(key, step=WRITE_STEP_GIB)

    def _write(self, key: tuple[int, str], step: float = 0.0) -> None:
        """Put a stage's peak on record when it grew by ``step`` over what is there."""
        gib = round(self._max.get(key, 0) / GIB, 2)
        written = self._written.get(key)
        if written is not None and (gib <= written or gib < written + step):
            return
        peaks = dict(self.store.get(key[0]).gpu_peaks)  # a restarted worker starts from what is on record
        recorded = peaks.get(key[1])
        recorded = float(recorded) if isinstance(recorded, int | float) else 0.0
        self._written[key] = recorded
        if gib <= recorded or gib < recorded + step:
            return
        peaks[key[1]] = gib
        self.store.update(key[0], gpu_peaks=peaks)
        self._written[key] = gib

    def _gpus_of(self, run_id: int) -> list[int] | None:
        if run_id not in self._gpus:
            try:
                self._gpus[run_id] = parse_gpus(self.store.get(run_id).gpus)
            except RunNotFound:  # never: runs are not deleted; then it counts as on every GPU
                self._gpus[run_id] = None
        return self._gpus[run_id]

    # --- co-location -----------------------------------------------------------------------------

    def launched(self, run: Run, active: Mapping[int, ActiveStage]) -> None:
        """A stage of ``run`` started: note which of our running stages share a GPU with it."""
        mine = parse_gpus(run.gpus)
        self._gpus[run.id] = mine
        beside = {rid for rid, st in active.items()
                  if rid != run.id and st.ident is not None and _overlap(mine, self._gpus_of(rid))}
        if beside:
            self._beside.setdefault(run.id, set()).update(beside)
            for rid in beside:
                self._beside.setdefault(rid, set()).add(run.id)

    def judged(self, run: Run, stage: str, outcome: Outcome, active: Mapping[int, ActiveStage]) -> Outcome:
        """A stage ended: its last peak goes on record, and an out-of-memory failure while it shared
        a GPU with another of our stages says so and puts its config back to running alone."""
        key = (run.id, stage)
        if key in self._max:
            self._write(key)
        self._max.pop(key, None)
        self._written.pop(key, None)
        mine = parse_gpus(run.gpus)
        beside = self._beside.pop(run.id, set()) | {
            rid for rid, st in active.items() if rid != run.id and st.ident is not None and _overlap(mine, self._gpus_of(rid))}
        for rid in beside:
            self._beside.get(rid, set()).discard(run.id)
        failure = outcome.failure
        if failure is None or failure.kind is not FailureKind.OOM or not beside:
            return outcome
        names = ", ".join(f"run {rid} ({self._nickname(rid)})" for rid in sorted(beside))
        where = f"GPU {run.gpus}" if run.gpus else "its GPU"
        memory = self.key_of(run)
        if memory is not None:
            self.exclusive[memory] = {"run": run.id, "nickname": run.nickname, "stage": stage,
                                      "beside": sorted(beside), "at": time.time()}
            atomic_write_text(exclusive_path(self.ws), json.dumps(self.exclusive, indent=2, ensure_ascii=False),
                              mode=sharing.file_mode())
        log.info("run %d: out of memory in %s while sharing %s with %s; its config runs alone from now on",
                 run.id, stage, where, names)
        message = f"out of memory while sharing {where} with {names} (gpu_sharing)\n{failure.message}"
        hint = (f"it ran beside another run: this config now runs alone on its GPU ({EXCLUSIVE_FILE} in .dialsum/); "
                f"`dialsum-tui retry {run.id}` starts it once the GPU is free")
        return replace(outcome, failure=Failure(failure.kind, message, hint))

    def _nickname(self, run_id: int) -> str:
        try:
            return self.store.get(run_id).nickname
        except RunNotFound:
            return "?"
