"""Provides the TUI-only text helpers the panels share: durations, bars, state icons and notes.

Byte sizes are formatted by :mod:`engine.units` (decimal GB for disk, GiB for GPU memory), the one
definition of units for every layer.
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size

from dialsum_tui.manager.runs.models import Run, RunState
from dialsum_tui.manager.snapshot import Progress

STATE_ICONS: dict[RunState, str] = {
    RunState.QUEUED: "○ queued",
    RunState.WAITING: "◷ waiting",
    RunState.RUNNING: "▶ running",
    RunState.SUCCEEDED: "✔ done",
    RunState.FAILED: "✖ failed",
    RunState.CANCELLED: "⊘ cancelled",
    RunState.INTERRUPTED: "! interrupted",
}


def duration(seconds: float | None) -> str:
    """Format seconds as ``1h02m``, ``3m20s`` or ``45s``; empty when unknown."""
    if seconds is None or seconds < 0:
        return ""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def bar(fraction: float, width: int) -> str:
    """Return a text bar ``width`` cells wide, filled to ``fraction`` (clamped to 0..1)."""
    fraction = min(max(fraction, 0.0), 1.0)
    full = int(round(fraction * width))
    return "█" * full + "░" * (width - full)


def progress_fraction(progress: Progress | None) -> float | None:
    """Return how far a stage is (0..1), or None when it has not reported."""
    if progress is None or progress.step is None or not progress.total or progress.total <= 0:
        return None
    return min(progress.step / progress.total, 1.0)


def run_note(run: Run) -> str:
    """The one-line explanation shown next to a run: guard reason, failure, or status note."""
    if run.state is RunState.FAILED and run.failure_kind:
        where = f" in {run.failed_stage}" if run.failed_stage else ""
        return f"{run.failure_kind}{where}: {run.failure_message or ''}".strip()
    if run.job_id and run.state.is_active:  # on Slurm: the job to look up (scontrol, squeue)
        return f"job {run.job_id}" + (f" · {run.reason}" if run.reason else "")
    return run.reason or ""


def fit_cell(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal cells with "…" where it was cut (wide Hangul counts 2)."""
    if cell_len(text) <= width:
        return text
    return set_cell_size(text, max(0, width - 1)).rstrip() + "…"
