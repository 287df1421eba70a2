"""Provides StatusLine: the top line — the workspace, queue live or paused, the worker, runs per state."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from dialsum_tui.manager.snapshot import BoardSnapshot


def render_status(board: BoardSnapshot, workspace: str = "") -> Text:
    """Name the workspace, say whether the queue runs, whether the worker is up, and how many runs are in each state."""
    counts: dict[str, int] = {}
    for run in board.runs:
        counts[run.state.value] = counts.get(run.state.value, 0) + 1
    text = Text(f"{workspace} · " if workspace else "", style="bold")
    text.append("⏸ queue paused (space resumes)" if board.paused else "▶ queue live", style="bold")
    worker = f"worker pid {board.worker_pid}" if board.worker_pid else "worker not running"
    text.append(f" · {worker} · ", style="" if board.worker_pid else "bold red")
    text.append(", ".join(f"{n} {state}" for state, n in counts.items()) or "no runs yet (a adds one)")
    problems = [line for line in board.attention if not line.startswith("worker not running")]  # said above
    if problems:
        text.append(f" · ⚠ {problems[0]}" + (f" (+{len(problems) - 1} more: `dialsum-tui check`)" if len(problems) > 1 else ""),
                    style="bold red")
    return text


class StatusLine(Static):
    """Shows :func:`render_status` of the board for ``workspace``; the ``-paused`` class colours it while paused."""

    def __init__(self, workspace: str, **kwargs) -> None:
        super().__init__(Text(f"{workspace} · opening the workspace…"), **kwargs)
        self.workspace = workspace

    def show(self, board: BoardSnapshot) -> None:
        self.update(render_status(board, self.workspace), layout=False)  # always one line
        self.set_class(board.paused, "-paused")
