"""Provides the small text formatters the panels share: sizes, durations, bars and state icons."""

from __future__ import annotations

from dialsum_tui.manager.models import Run, RunState

GIB = 1024**3
GB = 1000**3  # the quota is stated in GB (the server's 150 GB rule), GPU memory in GiB

STATE_ICONS: dict[RunState, str] = {
    RunState.QUEUED: "○ queued",
    RunState.WAITING: "◷ waiting",
    RunState.RUNNING: "▶ running",
    RunState.SUCCEEDED: "✔ done",
    RunState.FAILED: "✖ failed",
    RunState.CANCELLED: "⊘ cancelled",
    RunState.INTERRUPTED: "! interrupted",
}


def gib(n: int | float) -> str:
    """Format bytes as GiB with one decimal (GPU memory)."""
    return f"{n / GIB:.1f}"


def gb(n: int | float) -> str:
    """Format bytes as GB with one decimal (disk quota)."""
    return f"{n / GB:.1f}"


def human_bytes(n: int | float) -> str:
    """Format bytes with the largest unit that keeps the number readable."""
    for unit, size in (("GB", GB), ("MB", 1000**2), ("kB", 1000)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


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


def progress_fraction(run: Run) -> float | None:
    """Return how far the run's current stage is (0..1), or None when it has not reported."""
    step, total = run.progress.get("step"), run.progress.get("total")
    if isinstance(step, (int, float)) and isinstance(total, (int, float)) and total > 0:
        return min(step / total, 1.0)
    return None


def run_note(run: Run) -> str:
    """The one-line explanation shown next to a run: guard reason, failure, or status note."""
    if run.state is RunState.FAILED and run.failure_kind:
        where = f" in {run.failed_stage}" if run.failed_stage else ""
        return f"{run.failure_kind}{where}: {run.failure_message or ''}".strip()
    return run.reason or ""
