"""Provides how the CLI prints: the ``ls`` table (rich measures Korean cell widths and cuts with "…",
as wide as the terminal; a sweep's runs under its group line), a run as JSON, and one call that
prints a command's text or its JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dialsum_tui.manager.runs.models import Run, RunState, headline
from dialsum_tui.manager.snapshot import run_progress

if TYPE_CHECKING:
    from dialsum_tui.manager.runs.sweeps import SweepStatus

DEFAULT_WIDTH = 80  # what `ls` fits when stdout is not a terminal (a pipe, a file) and $COLUMNS is unset
GAP = 2  # cells between two columns
LS_COLUMNS = ("ID", "NICKNAME", "ACTION", "STAGE", "STATE", "PRIO", "GPU", "BACKEND", "PROGRESS", "NOTE")
# How the table gives way when it is wider than the terminal, step by step: (column, width it keeps).
# Nicknames keep 20 cells before the note goes below 24 (the cause must stay readable), then both
# shrink; the id, action, stage, state and GPU are never cut.
CUTS = (("NICKNAME", 20), ("NOTE", 24), ("NICKNAME", 12), ("NOTE", 12), ("PROGRESS", 7), ("BACKEND", 7),
        ("NOTE", 5), ("NICKNAME", 5), ("PROGRESS", 5), ("BACKEND", 5))
# Shown only when a run has something to say there (every run local, no device named, no progress: no column).
OPTIONAL = {"PRIO": "-", "GPU": "-", "BACKEND": "local", "PROGRESS": ""}
PRIORITY_NAMES = {1: "high", -1: "low"}  # normal shows as "-"
MEMBER_INDENT = "  "  # a sweep's runs stand under its group line


def terminal_width() -> int:
    """The terminal's columns ($COLUMNS first); :data:`DEFAULT_WIDTH` when stdout is no terminal."""
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def run_note(run: Run) -> str:
    """The one line ``ls`` shows for a run: a failure's cause (not its heading), else why it waits or its status."""
    if run.state is RunState.FAILED and run.failure_message:
        return headline(run.failure_message)
    return headline(run.reason)


def progress_text(run: Run) -> str:
    """``"120/400"`` while it reports progress (``"train 400/400"`` when that was another stage than the
    run's). It comes from the snapshot the TUI reads, so a run between stages shows none, not the
    last stage's 400/400."""
    progress = run_progress(run)
    if progress is None or not progress.total:
        return ""
    stage = run.progress.get("stage")
    return f"{'' if stage in (None, run.stage) else f'{stage} '}{progress.step or 0}/{progress.total}"


def run_json(run: Run) -> dict[str, Any]:
    """A run as ``ls --json`` and every verb that names a run print it: the store's fields (action and
    state as their values, without the config snapshot: ``runs/<id>/config.yaml`` has it) and ``note``."""
    data = dataclasses.asdict(run)
    data["action"], data["state"] = run.action.value, run.state.value
    data.pop("config_yaml")
    data["note"] = run_note(run)
    return data


def _priority(value: int) -> str:
    return PRIORITY_NAMES.get(value, "-" if value == 0 else str(value))


def _cells(run: Run, name: str | None = None) -> tuple[str, ...]:
    state = run.state.value + (f"({run.failure_kind})" if run.failure_kind else "")
    backend = f"{run.backend} {run.job_id}" if run.job_id else run.backend  # "slurm 1234": the job to scontrol
    return (str(run.id), run.nickname if name is None else name, run.action.value, run.stage or "-", state,
            _priority(run.priority), run.gpus or "-", backend, progress_text(run), run_note(run))


def variant_name(status: SweepStatus, nickname: str) -> str:
    """A sweep's run under its group line: what sets it apart (``lr1e-4-r8`` of ``kobart-lr1e-4-r8``), so a
    narrow terminal cuts the sweep's common prefix, never the values."""
    base = status.sweep.nickname + "-"
    return MEMBER_INDENT + (nickname[len(base):] if nickname.startswith(base) and len(nickname) > len(base) else nickname)


def sweep_note(status: SweepStatus) -> str:
    """A sweep's group line note: its swept keys, what did not succeed, then its best run by dev ROUGE."""
    bad = [(status.count(RunState.FAILED), "failed"), (status.count(RunState.CANCELLED), "cancelled"),
           (status.count(RunState.INTERRUPTED), "interrupted")]
    parts = [f"sweep of {status.keys_text}"] + [f"{n} {what}" for n, what in bad if n]
    if status.best is not None:
        parts.append(f"best {variant_name(status, status.best.nickname).strip()} {status.best.final:.2f} "
                     f"(run {status.best.run_id})")
    return " · ".join(parts)


def _sweep_cells(status: SweepStatus) -> tuple[str, ...]:
    actions = {run.action.value for run in status.runs}
    priorities = {run.priority for run in status.runs}
    backends = {run.backend for run in status.runs}
    running = [run for run in status.runs if run.state is RunState.RUNNING]
    return (status.id, f"{status.sweep.nickname} ×{status.total}",
            actions.pop() if len(actions) == 1 else "-", "-", f"{status.done}/{status.total} done",
            _priority(priorities.pop()) if len(priorities) == 1 else "-", "-",
            backends.pop() if len(backends) == 1 else "-", f"{len(running)} running" if running else "",
            sweep_note(status))


def ls_rows(runs: list[Run], sweeps: list[SweepStatus] | None = None, collapse: bool = False) -> list[tuple[str, ...]]:
    """The rows of ``ls``: runs in queue order, each sweep as a group line (``s3``, ``3/4 done``) where its
    first run stands, with its runs under it named by what sets them apart (``collapse``: the group line alone)."""
    by_id = {status.id: status for status in sweeps or []}
    members: dict[str, list[Run]] = {}
    for run in runs:
        if run.sweep in by_id:
            members.setdefault(run.sweep, []).append(run)
    rows: list[tuple[str, ...]] = []
    for run in runs:
        if run.sweep not in by_id:
            rows.append(_cells(run))
            continue
        group = members.pop(run.sweep, None)
        if group is None:
            continue  # listed under its group line already
        rows.append(_sweep_cells(by_id[run.sweep]))
        if not collapse:
            rows += [_cells(member, variant_name(by_id[run.sweep], member.nickname)) for member in group]
    return rows


def _widths(names: list[str], rows: list[tuple[str, ...]], width: int) -> list[int]:
    """Each column's width: its widest cell, cut step by step (:data:`CUTS`) until the table fits ``width``."""
    widths = [max(cell_len(row[i]) for row in rows) for i in range(len(names))]
    excess = sum(widths) + GAP * (len(widths) - 1) - width
    for name, keep in CUTS:
        if excess <= 0:
            break
        if name in names:
            i = names.index(name)
            give = max(0, min(excess, widths[i] - keep))
            widths[i] -= give
            excess -= give
    return widths


def ls_table(runs: list[Run], width: int | None = None, sweeps: list[SweepStatus] | None = None,
             collapse: bool = False) -> str:
    """The runs as a table ``width`` cells wide at most (default: the terminal's); a cut cell ends in "…".

    Rich measures the cells (a Hangul syllable takes two) and cuts them; a run id is never cut. A sweep's
    runs stand under its group line (:func:`ls_rows`).
    """
    width = terminal_width() if width is None else width
    names = list(LS_COLUMNS)
    rows = ls_rows(runs, sweeps, collapse)
    keep = [i for i, name in enumerate(names) if name not in OPTIONAL or any(row[i] != OPTIONAL[name] for row in rows)]
    names = [names[i] for i in keep]
    rows = [tuple(names), *(tuple(row[i] for i in keep) for row in rows)]
    table = Table(box=None, show_header=True, show_edge=False, pad_edge=False, padding=(0, GAP // 2),
                  header_style="bold")
    widths = _widths(names, rows, width)
    for name, size in zip(names, widths, strict=True):
        table.add_column(name, width=size, no_wrap=True, overflow="ellipsis")
    for row in rows[1:]:
        table.add_row(*(Text(cell) for cell in row))
    # Narrower than the columns that are never cut: wider lines (the terminal wraps them), never a cut id.
    width = max(width, sum(widths) + GAP * (len(widths) - 1))
    console = Console(width=width, highlight=False, emoji=False, markup=False, soft_wrap=False,
                      force_terminal=False, color_system=None)
    with console.capture() as captured:
        console.print(table)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


def emit(args: argparse.Namespace, data: Any, text: str | Callable[[], str] | None = None) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text`` (nothing when None)."""
    if getattr(args, "json", False):
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    elif text is not None:
        print(text() if callable(text) else text)


def say(args: argparse.Namespace, text: str) -> None:
    """A line for people: on stdout, or on stderr with ``--json`` (stdout is the JSON then)."""
    print(text, file=sys.stderr if getattr(args, "json", False) else sys.stdout)
