"""Provides retries that change something: resuming a stopped run from its last complete checkpoint,
and retrying with ``--set key=value`` or a fixed config file, validated like ``add``.

A retry is always a NEW run. What it came from is recorded in ``runs/<new>/retry.json``
(``RunFiles.retry``): the run it retries, the changed keys (old → new) and, for a resume, the
checkpoint and its step. The launch reads that file (:func:`resume_args`), the results row and the
progress panel read it back (:func:`resumed_note`), and prune keeps the checkpoints such records and
stopped runs point at (:func:`protected_checkpoints`).

Where a run's checkpoints are is read from its own ``artifact`` events and the markers inside them
(:mod:`engine.checkpoints`), never from a directory layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialsum_tui.manager.errors import DialsumError
from dialsum_tui.manager.runs.events import run_summary
from dialsum_tui.manager.runs.models import Action, Run, RunState
from dialsum_tui.manager.workspace import sharing
from engine.artifacts import atomic_write_text
from engine.checkpoints import (
    candidates,
    checkpoint_step,
    dotted_items,
    find_resumable,
    resume_blockers,
)
from engine.config import ConfigError, RunConfig, config_from_dict, load_config, parse_overrides, safe_load
from engine.contract import Artifact, ArtifactKind, RunFiles, Stage, Started, strip_moved_keys

if TYPE_CHECKING:
    from dialsum_tui.manager.workspace.layout import Workspace

# Keys whose change makes the resumed run see its data in another order than the stopped one did.
_ORDER_KEYS = ("train.batch_size", "train.grad_accum", "train.seed", "train.group_by_length", "train.batch_rebalance",
               "data.")


class RetryRefused(DialsumError, ConfigError):
    """A retry that cannot be done as asked (exit status 2); the message says why and what to do."""


@dataclass(frozen=True)
class ResumePoint:
    """A stopped run's last complete checkpoint."""

    path: Path
    step: int
    total: int | None
    run_id: int

    @property
    def where(self) -> str:
        """``"step 758/780"``."""
        return f"step {self.step}/{self.total}" if self.total else f"step {self.step}"

    def to_json(self) -> dict[str, Any]:
        """``path``, ``step``, ``total``, ``run_id``, ``where`` (``"step 758/780"``)."""
        return {"path": str(self.path), "step": self.step, "total": self.total, "run_id": self.run_id,
                "where": self.where}


@dataclass(frozen=True)
class RetryPlan:
    """A retry, worked out but not queued: what the dialog and the CLI show before it is."""

    from_run: int
    nickname: str
    config_path: str
    config_yaml: str
    diff: dict[str, tuple[Any, Any]]  # dotted key -> (old, new), changed keys only
    resume: ResumePoint | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def diff_lines(self) -> list[str]:
        """``["train.batch_size: 8 → 4"]``, or one line saying nothing changed."""
        if not self.diff:
            return ["no config change (same snapshot as run %d)" % self.from_run]
        return [f"{key}: {_show(old)} → {_show(new)}" for key, (old, new) in self.diff.items()]

    def text(self) -> str:
        """What the retry dialog and ``dialsum-tui retry`` show before queueing: the changed keys
        (:meth:`diff_lines`), then a ``note:`` line for each thing to know (data order, skipped checkpoints)."""
        return "\n".join(self.diff_lines() + [f"note: {note}" for note in self.notes])

    def to_json(self) -> dict[str, Any]:
        """``from_run``, ``nickname``, ``config_path``, ``diff`` (key → ``{old, new}``), ``resume``
        (:meth:`ResumePoint.to_json`, null without ``--resume``) and ``notes``."""
        return {"from_run": self.from_run, "nickname": self.nickname, "config_path": self.config_path,
                "diff": {k: {"old": old, "new": new} for k, (old, new) in self.diff.items()},
                "resume": self.resume.to_json() if self.resume is not None else None, "notes": list(self.notes)}

    def record(self) -> dict[str, Any]:
        """The body of ``runs/<new>/retry.json``."""
        body: dict[str, Any] = {"from_run": self.from_run,
                                "diff": {k: {"old": old, "new": new} for k, (old, new) in self.diff.items()}}
        if self.resume is not None:
            body |= {"resume_from": str(self.resume.path), "resumed_from_step": self.resume.step,
                     "resumed_total": self.resume.total}
        return body


def _show(value: Any) -> str:
    return "unset" if value is None else json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


# --- where a run can resume from ------------------------------------------------------------------


def checkpoint_paths(workspace: Workspace, run: Run) -> list[Path]:
    """The checkpoints run ``run`` wrote or resumed from, newest step first.

    Its ``artifact`` events name them; their siblings are added too (a stage killed between the
    marker and the event), but only those whose marker says this run wrote them.
    """
    # The bounded summary keeps every artifact and started record, whatever the file's size.
    events = run_summary(RunFiles(workspace.run_dir(run.id)).events).kept
    announced = [Path(e.path) for e in events if isinstance(e, Artifact) and e.kind == ArtifactKind.CHECKPOINT and e.path]
    resumed = [Path(e.resumed_from) for e in events if isinstance(e, Started) and e.resumed_from]
    # The engine records absolute paths: a moved or copied workspace finds them under today's root.
    announced, resumed = [workspace.resolve(p) for p in announced], [workspace.resolve(p) for p in resumed]
    found = {p: None for p in announced}
    own = workspace.run_dir(run.id).resolve()
    for parent in {p.parent for p in announced}:
        for sibling in candidates(parent):
            writer = _written_by(sibling)
            if sibling not in found and (writer is None or workspace.resolve(writer).resolve() == own):
                found[sibling] = None
    ordered = sorted(found, key=checkpoint_step, reverse=True)
    return ordered + [p for p in resumed if p not in found]  # the one it started from, last


def _written_by(path: Path) -> str | None:
    from engine.contract import CHECKPOINT_META

    try:
        return json.loads((path / CHECKPOINT_META).read_text(encoding="utf-8")).get("run_dir")
    except (OSError, ValueError, AttributeError):
        return None


def resume_point(workspace: Workspace, run: Run) -> tuple[ResumePoint | None, list[str]]:
    """Run ``run``'s last complete checkpoint, and a note for each newer one skipped (half-written)."""
    found, skipped = find_resumable(checkpoint_paths(workspace, run))
    if found is None:
        return None, skipped
    return ResumePoint(found.path, found.step, found.total, run.id), skipped


def resumable(workspace: Workspace, run: Run) -> ResumePoint | None:
    """The resume point of a run that stopped before finishing its training (None otherwise)."""
    if run.state not in (RunState.CANCELLED, RunState.INTERRUPTED, RunState.FAILED) or Stage.TRAIN not in run.stages:
        return None
    if (run.failed_stage or run.stage) not in (None, Stage.TRAIN):
        return None  # training finished: re-infer instead
    return resume_point(workspace, run)[0]


# --- planning a retry ------------------------------------------------------------------------------


def _new_config(run: Run, overrides: list[str], config_file: str | None) -> tuple[RunConfig, str]:
    """The retried run's config, validated like ``add``, and the file it came from."""
    pairs = parse_overrides(overrides)
    if config_file:
        path = Path(config_file).expanduser().resolve()
        return load_config(path, pairs), str(path)
    try:
        tree = safe_load(run.config_yaml or "") or {}
    except Exception as err:  # a snapshot is YAML the engine wrote; say which run if it is not
        raise ConfigError(f"run {run.id} config snapshot: not valid YAML ({err})") from None
    return config_from_dict(strip_moved_keys(tree), f"run {run.id} config snapshot (with --set)", pairs), run.config_path


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Changed dotted keys of two ``model_dump()`` trees, in the new tree's order."""
    before, after = dotted_items(old), dotted_items(new)
    keys = list(after) + [k for k in before if k not in after]
    return {k: (before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)}


def plan_retry(workspace: Workspace, run: Run, *, resume: bool = False, overrides: list[str] | None = None,
               config_file: str | None = None, action: Action | None = None) -> RetryPlan:
    """Work out a retry of ``run``: the new config, its diff against the old snapshot and, with
    ``resume``, the checkpoint to continue from.

    Raises:
        ConfigError: the new config does not validate (names the file or --set and the key).
        RetryRefused: ``resume`` asked for what cannot be resumed (still running, no complete
            checkpoint, a key the checkpoint depends on changed, an action without training).
    """
    old = _old_config(run)
    cfg, config_path = _new_config(run, list(overrides or []), config_file)
    diff = config_diff(old.model_dump(), cfg.model_dump())
    notes: list[str] = []
    point = None
    if resume:
        point, notes = _resume_checks(workspace, run, cfg, diff, action or run.action)
    return RetryPlan(run.id, cfg.model.nickname, config_path, cfg.to_yaml(), diff, point, tuple(notes))


def _old_config(run: Run) -> RunConfig:
    from engine.contract import load_snapshot

    return load_snapshot(run.config_yaml or "", source=f"run {run.id} config snapshot")


def _resume_checks(workspace: Workspace, run: Run, cfg: RunConfig, diff: dict[str, tuple[Any, Any]],
                   action: Action) -> tuple[ResumePoint, list[str]]:
    if Stage.TRAIN not in action.stages:
        raise RetryRefused(f"--resume continues training, and --action {action.value} does not train; drop --resume")
    if not run.state.is_final:
        raise RetryRefused(f"run {run.id} is {run.state.value}: cancel it first (its stop saves a checkpoint), "
                           f"then `dialsum-tui retry {run.id} --resume`")
    point, notes = resume_point(workspace, run)
    if point is None:
        why = "; ".join(notes) or "it wrote no checkpoint (train.save_strategy, or it stopped before the first save)"
        raise RetryRefused(f"run {run.id} has no complete checkpoint to resume from: {why}. "
                           f"`dialsum-tui retry {run.id}` starts over")
    from engine.checkpoints import read_checkpoint_meta

    meta = read_checkpoint_meta(point.path) or {}
    blockers = resume_blockers(meta.get("fingerprint") or {}, cfg.model_dump())
    if blockers:
        raise RetryRefused(f"--resume: the checkpoint at {point.where} of run {run.id} cannot continue with this "
                           "change: " + "; ".join(blockers) + ". Drop --resume to start over with it")
    order = [k for k in diff if any(k == o or (o.endswith(".") and k.startswith(o)) for o in _ORDER_KEYS)]
    if order:
        notes.append(f"{', '.join(order)} changed: after {point.where} the data comes in another order than "
                     f"run {run.id} would have seen")
    return point, notes


# --- the record on the new run ------------------------------------------------------------------------


def write_record(run_dir: Path, plan: RetryPlan) -> None:
    """Write ``retry.json`` into the new run's directory (call before the run can start); the
    checkpoint it resumes from is recorded relative to the workspace (``runs/<id>``'s grandparent)."""
    record = plan.record()
    if record.get("resume_from"):  # a moved or copied workspace resumes from its own checkpoint
        record["resume_from"] = _workspace_of(run_dir).relative(record["resume_from"])
    run_dir.mkdir(mode=sharing.dir_mode(), parents=True, exist_ok=True)
    # The worker that launches it may be a teammate's (a shared workspace): group-readable there.
    atomic_write_text(RunFiles(run_dir).retry, json.dumps(record, ensure_ascii=False, indent=2),
                      mode=sharing.file_mode())


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """A run's ``retry.json`` (None when it is not a retry with changes or a resume)."""
    try:
        body = json.loads(RunFiles(run_dir).retry.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _workspace_of(run_dir: Path) -> Workspace:
    from dialsum_tui.manager.workspace.layout import Workspace

    return Workspace(Path(run_dir).parents[1])  # <root>/runs/<id>


def resume_args(run_dir: Path) -> list[str]:
    """``["--resume-from", CHECKPOINT]`` for the train stage of a resumed run, else ``[]``; the path is
    built from the workspace's root at launch time (the record keeps it relative)."""
    record = read_record(run_dir) or {}
    if not record.get("resume_from"):
        return []
    return ["--resume-from", str(_workspace_of(run_dir).resolve(record["resume_from"]))]


def resumed_note(run_dir: Path) -> str | None:
    """``"resumed from step 758 of run 12"`` for a resumed run (None otherwise)."""
    record = read_record(run_dir) or {}
    if record.get("resumed_from_step") is None:
        return None
    return f"resumed from step {record['resumed_from_step']} of run {record.get('from_run')}"


def protected_checkpoints(workspace: Workspace, runs: list[Run]) -> set[Path]:
    """Checkpoints prune must keep: each stopped run's resume point (until a later run of its
    nickname succeeded) and the checkpoint every unfinished resumed run starts from."""
    keep: set[Path] = set()
    done_after: dict[str, int] = {}
    for run in runs:
        if run.state is RunState.SUCCEEDED:
            done_after[run.nickname] = max(done_after.get(run.nickname, 0), run.id)
    for run in runs:
        if not run.state.is_final:
            record = read_record(workspace.run_dir(run.id)) or {}
            if record.get("resume_from"):
                keep.add(workspace.resolve(record["resume_from"]).resolve())
        if run.state.is_final and done_after.get(run.nickname, 0) < run.id:
            point = resumable(workspace, run)
            if point is not None:
                keep.add(point.path.resolve())
    return keep
