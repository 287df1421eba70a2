"""Provides the failure streak that pauses part of the queue: N runs in a row that fail within their
first minutes for the same kind of reason (``pause_after_failures``, ``early_failure_s`` in
``.dialsum/settings.yaml``) stop the runs that share what failed them — and only those.

What a kind of failure shares (:data:`SCOPES`): a data error is the data directory's, an OOM the
GPUs', a config or dtype error the model's; a full disk, the host's OOM killer, a SIGKILL or a
scheduler's time limit are everyone's. "In a row" counts only the runs that share it: a run on
another data dir succeeding in between neither breaks a data streak nor is held by its pause.

Pure: runs and their config snapshots in, a :class:`FailurePause` out. The worker records it in
the store (``meta``), admission holds the runs it covers, ``resume`` clears it (docs/sweeps.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from dialsum_tui.manager.runs.models import Run, RunState, parse_gpus
from engine.config import resolve_path, safe_load
from engine.contract import FailureKind

# What a kind of failure is about, so what the runs it holds must share with the failed ones.
# () = everything: the disk, the host's memory, whoever kills our processes, the scheduler's limits.
SCOPES: dict[FailureKind, tuple[str, ...]] = {
    FailureKind.DATA: ("data",),
    FailureKind.OOM: ("gpus",),
    FailureKind.CONFIG: ("model",),
    FailureKind.DTYPE: ("model",),
    FailureKind.UNKNOWN: ("data", "model"),
    FailureKind.DISK: (),
    FailureKind.HOST_OOM: (),
    FailureKind.KILLED: (),
    FailureKind.TIMEOUT: (),
}
# Held runs wait with a reason that starts so (check tells them from runs a guard holds).
HELD_PREFIX = "held: "


@dataclass(frozen=True)
class RunScope:
    """What a run shares with others: its data directory, its model, its GPUs (None: any / all)."""

    data: str | None
    model: str | None
    gpus: tuple[int, ...] | None


@lru_cache(maxsize=4096)
def _scope(config_yaml: str, gpus: str | None, root: str) -> RunScope:
    try:
        tree = safe_load(config_yaml or "") or {}
    except Exception:  # a snapshot that does not parse shares nothing we can name
        tree = {}
    data = (tree.get("data") or {}).get("dir", "data") if isinstance(tree, dict) else None
    model = (tree.get("model") or {}).get("name_or_path") if isinstance(tree, dict) else None
    devices = parse_gpus(gpus)
    return RunScope(str(resolve_path(str(data), Path(root))) if data else None, model,
                    tuple(devices) if devices is not None else None)


def run_scope(run: Run, root: Path | str) -> RunScope:
    """The run's :class:`RunScope` from its config snapshot (cached: a snapshot never changes)."""
    return _scope(run.config_yaml, run.gpus, str(root))


def _overlap(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> bool:
    return a is None or b is None or bool(set(a) & set(b))


def shares(scope: dict[str, Any], other: RunScope) -> bool:
    """Whether a run of ``other`` shares every part of ``scope`` (``gpus``: any device in common)."""
    for part, value in scope.items():
        if part == "gpus":
            if not _overlap(tuple(value) if value is not None else None, other.gpus):
                return False
        elif getattr(other, part) != value:
            return False
    return True


@dataclass(frozen=True)
class FailurePause:
    """Runs that share ``scope`` wait: ``runs`` failed in a row, each within ``window_s`` of its start, as ``kind``."""

    kind: str
    scope: dict[str, Any]  # part → value ("data": dir, "model": name_or_path, "gpus": [ids] or None)
    runs: tuple[int, ...]
    at: float
    window_s: float
    hint: str | None = None

    @property
    def where(self) -> str:
        """``"data dir /ws/data-broken"``, ``"GPU 0,1"``, ``"model models/x"``; ``"every run"`` for ()."""
        parts = []
        for part, value in self.scope.items():
            if part == "data":
                parts.append(f"data dir {value}")
            elif part == "model":
                parts.append(f"model {value}")
            elif part == "gpus":
                parts.append("every GPU" if value is None else f"GPU {','.join(map(str, value))}")
        return " and ".join(parts) or "every run"

    @property
    def headline(self) -> str:
        """``"3 runs failed in a row within 10 min of their start (data) on data dir …: runs 4, 5, 6"``."""
        minutes = f"{self.window_s / 60:.0f} min" if self.window_s >= 60 else f"{self.window_s:.0f} s"
        return (f"{len(self.runs)} runs failed in a row within {minutes} of their start ({self.kind}) on "
                f"{self.where}: runs {', '.join(map(str, self.runs))}")

    @property
    def reason(self) -> str:
        """Why the runs it covers wait (their ``reason``; stable, so the worker writes it once)."""
        return (f"{HELD_PREFIX}{len(self.runs)} runs on {self.where} failed in a row ({self.kind}); "
                "fix the cause, then `dialsum-tui resume`")

    @property
    def message(self) -> str:
        """The whole line for ``check``, ``ls``, the TUI banner and the notify: what, where, the fix."""
        fix = f"; {self.hint}" if self.hint else ""
        return (f"queue paused for {self.where}: {self.headline}{fix}; runs that share nothing with them go on; "
                "`dialsum-tui resume` once fixed")

    def same_cause(self, other: FailurePause) -> bool:
        return self.kind == other.kind and self.scope == other.scope

    def holds(self, scope: RunScope) -> bool:
        return shares(self.scope, scope)

    def to_json(self) -> dict[str, Any]:
        """``kind``, ``scope``, ``runs``, ``at``, ``window_s``, ``hint``, ``where``, ``message``."""
        return {"kind": self.kind, "scope": self.scope, "runs": list(self.runs), "at": self.at,
                "window_s": self.window_s, "hint": self.hint, "where": self.where, "message": self.message}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> FailurePause:
        return cls(str(body["kind"]), dict(body.get("scope") or {}), tuple(int(r) for r in body.get("runs") or ()),
                   float(body.get("at") or 0.0), float(body.get("window_s") or 0.0), body.get("hint"))


def failed_early(run: Run, window_s: float) -> bool:
    """A run that failed within ``window_s`` of its start (``started_at``; one failed before it started: 0 s)."""
    if run.state is not RunState.FAILED or run.finished_at is None:
        return False
    return run.finished_at - (run.started_at if run.started_at is not None else run.finished_at) <= window_s


def failure_scope(run: Run, scope_of: Callable[[Run], RunScope]) -> dict[str, Any]:
    """What ``run``'s failure is about: the parts of its :class:`RunScope` its kind names (:data:`SCOPES`)."""
    kind = FailureKind.parse(run.failure_kind)
    mine = scope_of(run)
    out: dict[str, Any] = {}
    for part in SCOPES.get(kind, ("data", "model")):
        value = getattr(mine, part)
        out[part] = list(value) if part == "gpus" and value is not None else value
    return out


def failure_streak(runs: Iterable[Run], ended: Run, threshold: int, window_s: float,
                   scope_of: Callable[[Run], RunScope], since: float = 0.0) -> FailurePause | None:
    """The pause ``ended``'s failure completes, or None.

    Walks the runs that ended before it (newest first, cancelled ones skipped: whoever cancelled
    chose to), keeping those that share what its failure is about; the streak is the unbroken run of
    early failures of its kind among them. Runs that ended before ``since`` (the last ``resume``)
    no longer count.

    Args:
        runs: every run (any order).
        ended: a run that just reached its final state.
        threshold: ``pause_after_failures``; 0 turns pausing off.
        window_s: ``early_failure_s``: "within its first minutes".
        scope_of: a run's :class:`RunScope` (:func:`run_scope`).
        since: when the last pause was cleared.
    """
    if threshold <= 0 or not failed_early(ended, window_s) or FailureKind.parse(ended.failure_kind) not in SCOPES:
        return None
    kind = ended.failure_kind
    scope = failure_scope(ended, scope_of)
    finished = sorted((r for r in runs if r.state.is_final and r.state is not RunState.CANCELLED
                       and r.finished_at is not None and r.finished_at >= since and r.id != ended.id),
                      key=lambda r: (r.finished_at, r.id), reverse=True)
    streak = [ended.id]
    for run in finished:
        if len(streak) >= threshold:
            break
        if not shares(scope, scope_of(run)):
            continue  # independent of this failure: neither part of the streak nor breaking it
        if run.failure_kind != kind or not failed_early(run, window_s):
            break
        streak.append(run.id)
    if len(streak) < threshold:
        return None
    return FailurePause(str(kind), scope, tuple(sorted(streak)), ended.finished_at or 0.0, window_s,
                        ended.failure_hint or FailureKind.parse(kind).hint)


def holding(pauses: list[FailurePause], scope_of: Callable[[Run], RunScope]) -> Callable[[Run], str | None] | None:
    """Admission's hold: the reason a pending run waits (the first pause that covers it), None when
    it may go; None altogether when nothing is paused."""
    if not pauses:
        return None

    def hold(run: Run) -> str | None:
        mine = scope_of(run)
        return next((pause.reason for pause in pauses if pause.holds(mine)), None)

    return hold
