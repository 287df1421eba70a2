"""Provides the TUI-only text helpers the panels share: durations, bars, state icons and notes.

Byte sizes are formatted by :mod:`engine.units` (decimal GB for disk, GiB for GPU memory), the one
definition of units for every layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.cells import cell_len, set_cell_size
from rich.text import Text

from dialsum_tui.manager.snapshot import failure_headline

if TYPE_CHECKING:
    from textual.widgets import Static

    from dialsum_tui.manager.snapshot import Progress, Run

# Keyed by the state's value: ``RunState`` is a StrEnum, so ``STATE_ICONS[run.state]`` finds it, and
# this module (on the first frame's import path) does not load the manager's run package.
STATE_ICONS: dict[str, str] = {
    "queued": "○ queued",
    "waiting": "◷ waiting",
    "running": "▶ running",
    "succeeded": "✔ done",
    "failed": "✖ failed",
    "cancelled": "⊘ cancelled",
    "interrupted": "! interrupted",
}
SPARKS = "▁▂▃▄▅▆▇█"


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
    """The one-line explanation shown next to a run: guard reason, failure, or status note.

    A failure leads with its cause (``data: dev.csv line 73: unescaped quote``), never with the
    heading a long message opens with; the whole message is one key away (enter).
    """
    failed = failure_headline(run)
    if failed:
        return failed
    if run.job_id and run.state.is_active:  # on Slurm: the job to look up (scontrol, squeue)
        return f"job {run.job_id}" + (f" · {run.reason}" if run.reason else "")
    return _first_line(run.reason)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def sparkline(values: list[float], width: int) -> str:
    """``values`` as at most ``width`` block characters (▁ low … █ high): the whole series, each block
    the mean of its share of the points when there are more points than blocks (the curve's shape from
    the first step; the panel prints the last value beside it)."""
    if width <= 0 or not values:
        return ""
    if len(values) > width:
        edges = [round(i * len(values) / width) for i in range(width + 1)]
        values = [sum(values[a:b]) / (b - a) for a, b in zip(edges, edges[1:]) if b > a]
    low, high = min(values), max(values)
    span = high - low
    top = len(SPARKS) - 1
    return "".join(SPARKS[round((v - low) / span * top) if span else top // 2] for v in values)


def show_text(widget: Static, text: Text | str, before: Text | str | None) -> None:
    """Put ``text`` into ``widget``, laying the screen out again only when its number of lines changed.

    ``Static.update`` re-arranges the whole screen by default; once a second for the GPU line, and on
    every cursor move for the detail line, that was most of what a key cost in a 1,000-run queue.
    """
    lines = str(text).count("\n")
    widget.update(text, layout=before is None or str(before).count("\n") != lines)


def fit_cell(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal cells with "…" where it was cut (wide Hangul counts 2)."""
    if cell_len(text) <= width:
        return text
    return set_cell_size(text, max(0, width - 1)).rstrip() + "…"
