"""Provides the Markdown hand-off note: the results table, GPU and disk state, active runs,
failures and the next actions, in the shape of the team's own 인수인계 documents.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from dialsum_tui.manager.guards.gpu import resolve_holder
from dialsum_tui.manager.insights.results import ResultRow, format_results, progress_text
from dialsum_tui.manager.runs.identity import predictions_key
from dialsum_tui.manager.runs.models import Run, RunState
from dialsum_tui.manager.runs.sweeps import SweepBest, sweep_best, sweep_groups
from engine.artifacts import submission_path
from engine.units import format_bytes, format_gib

if TYPE_CHECKING:
    from dialsum_tui.manager.guards.disk import DiskUsage
    from dialsum_tui.manager.guards.gpu import GpuDevice
    from dialsum_tui.manager.workspace.layout import Workspace

HANDOFF_FILE = "HANDOFF.md"  # where the TUI writes the note (h), in the workspace; the CLI's `handoff` prints it


def _gpu_lines(gpu: list[GpuDevice], gpu_note: str, runs: list[Run]) -> list[str]:
    owners = {r.pid: r for r in runs if r.pid}
    lines = [f"- {gpu_note}"]
    for d in gpu:
        util = f", util {d.util_percent}%" if d.util_percent is not None else ""
        temp = f", {d.temperature_c}°C" if d.temperature_c is not None else ""
        lines.append(f"- GPU {d.index} {d.name}: {format_gib(d.used_bytes)} / {format_gib(d.total_bytes)} used{util}{temp}")
        for p in d.processes:
            run = owners.get(p.pid)
            if run:
                lines.append(f"  - pid {p.pid} (run {run.id}, {run.nickname}) holds {format_gib(p.used_bytes)}")
                continue
            # Not ours: name the user (and container) so the reader knows whom to ask.
            holder = resolve_holder(p, {})
            named = "; ".join(x for x in ("not ours", holder.user and f"user {holder.user}", holder.container) if x)
            ask = f" — ask {holder.user}" if holder.user else " — owner not visible here"
            lines.append(f"  - GPU {d.index}: {format_gib(p.used_bytes)} held by pid {p.pid} ({named}){ask}")
    return lines


def _disk_lines(disk: DiskUsage | None) -> list[str]:
    if disk is None:
        return ["- not measured yet (the worker measures it in the background)"]
    lines = [f"- {disk.summary()}"]
    lines += [f"  - {label}: {format_bytes(n)}" for label, n in disk.consumers[:8]]
    return lines


def _next_actions(rows: list[ResultRow], disk: DiskUsage | None, runs: list[Run]) -> list[str]:
    by_id = {run.id: run for run in runs}
    actions = []
    for r in rows:
        if r.resume:
            actions.append(f"resume {r.nickname} from {r.resume}: `dialsum-tui retry {r.run_id} --resume`"
                           + (f" ({r.hint})" if r.hint and r.code in ("oom", "failed") else ""))
        elif r.code == "trained_infer_failed":
            actions.append(f"re-infer {r.nickname}: `dialsum-tui retry {r.run_id} --action infer`" + (f" ({r.hint})" if r.hint else ""))
        elif r.code == "oom":
            actions.append(f"retry {r.nickname} once the GPU is free: `dialsum-tui check`, then `dialsum-tui retry {r.run_id}`")
        elif r.code == "failed":
            actions.append(f"fix and retry {r.nickname}: {r.hint or 'see the log'}; `dialsum-tui retry {r.run_id}`")
        elif r.code == "unknown":
            retry = f"; `dialsum-tui retry {r.run_id}`" if r.run_id is not None else ""
            actions.append(f"check {r.nickname}: {r.evidence}{retry}")
    # One best per (tokenizer, scorer) (leaderboard.annotate_rows): numbers made differently are never ranked.
    for best in (r for r in rows if r.code == "done" and r.final is not None and r.best):
        actions.append(f"submit the best model {best.nickname} ({best.rouge_text}): `dialsum-tui submit {best.run_id}` "
                       f"validates {_submission_name(best, by_id)} and copies it")
    for sweep, best in _sweep_bests(runs).items():
        actions.append(f"sweep {sweep}'s best is {best.nickname} (run {best.run_id}, {best.final:.2f} {best.basis}): "
                       f"`dialsum-tui compare --sweep {sweep}`, `dialsum-tui submit {best.run_id}`")
    if disk is not None and disk.used_bytes > disk.safe_bytes:
        actions.append("disk above the safe level: `dialsum-tui prune --dry-run`, then `--yes`")
    return actions or ["nothing pending"]


def _sweep_bests(runs: list[Run]) -> dict[str, SweepBest]:
    """Each ended sweep's best run by evaluate-stage dev ROUGE (one scoring basis: runs.sweeps.sweep_best)."""
    groups = sweep_groups(runs)
    return {sweep: best for sweep, members in groups.items()
            if all(run.state.is_final for run in members) and (best := sweep_best(members)) is not None}


def _sweep_lines(runs: list[Run]) -> list[str]:
    """One line per sweep: its runs, how far it got, what failed and its best run (so far)."""
    lines = []
    for sweep, members in sweep_groups(runs).items():
        done = sum(run.state.is_final for run in members)
        failed = [run.id for run in members if run.state is RunState.FAILED]
        best = sweep_best(members)
        text = f"- sweep {sweep}: {len(members)} runs ({members[0].id}-{members[-1].id}), {done}/{len(members)} done"
        text += f", failed: runs {', '.join(map(str, failed))}" if failed else ""
        text += f"; best {best.text}" if best else "; no evaluate-stage dev ROUGE yet"
        lines.append(text)
    return lines


def _submission_name(row: ResultRow, runs: dict[int, Run]) -> Path:
    """The submission file of the row's run (``submissions/<slug>-r<id>_submission.csv``)."""
    run = runs.get(row.run_id) if row.run_id is not None else None
    return submission_path(Path("submissions"), predictions_key(run) if run else row.nickname)


def handoff_markdown(
    workspace: Workspace,
    runs: list[Run],
    rows: list[ResultRow],
    gpu: list[GpuDevice],
    gpu_note: str,
    disk: DiskUsage | None,
) -> str:
    """Write the session hand-off: results table, GPU and disk state, active runs, failures, next actions.

    Args:
        workspace: the workspace it describes.
        runs: every run.
        rows: from :func:`result_rows`.
        gpu: a snapshot from the GPU source; gpu_note its ``describe()``.
        disk: the cached measurement (None before the first one).
    """
    out = [f"# 인수인계 (hand-off) — {workspace.root}", "", f"Generated {time.strftime('%Y-%m-%d %H:%M %Z')} by `dialsum-tui handoff`.", ""]
    out += ["## Results", "", format_results(rows, "markdown")]
    out += ["## GPU", "", *_gpu_lines(gpu, gpu_note, runs), ""]
    out += ["## Disk", "", *_disk_lines(disk), ""]
    active = [r for r in runs if r.state in (RunState.RUNNING, RunState.WAITING, RunState.QUEUED)]
    out += ["## Running and waiting", ""]
    for r in active:
        eta = r.progress.get("eta_s") if r.progress else None
        eta_text = f", ETA {eta / 60:.0f} min" if isinstance(eta, (int, float)) else ""
        extra = f": {r.reason}" if r.state is not RunState.RUNNING and r.reason else ""
        by = f", queued by {r.user}" if r.user else ""
        out.append(f"- run {r.id} {r.nickname} ({r.action.value}{by}) {r.state.value}: {progress_text(r)}{eta_text}{extra}")
    out += ([] if active else ["- none"]) + [""]
    failed = [r for r in rows if r.code in ("oom", "failed", "trained_infer_failed")]
    out += ["## Failures", ""]
    for row in failed:
        out.append(f"- {row.nickname} (run {row.run_id}, {row.failure_kind}): {row.evidence}" + (f"\n  - hint: {row.hint}" if row.hint else ""))
    out += ([] if failed else ["- none"]) + [""]
    sweeps = _sweep_lines(runs)
    out += (["## Sweeps", "", *sweeps, ""] if sweeps else [])
    out += ["## Next actions", "", *[f"{i}. {a}" for i, a in enumerate(_next_actions(rows, disk, runs), start=1)], ""]
    return "\n".join(out)
