"""Provides the insight commands of the CLI: ``compare``, ``samples``, ``submit`` and ``lb``.

``cli.py`` registers them (:func:`add_parsers`) and dispatches through :data:`COMMANDS`; bad input
raises the manager's ``InsightsError`` (a :class:`~dialsum_tui.manager.errors.DialsumError`), so it exits 2 there.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len

from dialsum_tui.cli_output import emit
from dialsum_tui.manager.errors import DialsumError
from dialsum_tui.manager.service import Manager
from engine.contract import ExitCode

if TYPE_CHECKING:
    from dialsum_tui.manager.insights.compare import Comparison


def add_parsers(sub: Any, add_json: Callable[..., None]) -> None:
    """Add the four subcommands to ``dialsum-tui``'s subparsers; ``add_json`` gives one its ``--json``."""
    sorts, filters = Manager.sample_choices()
    p = sub.add_parser("compare", help="compare runs: metrics, config keys that differ, loss and ROUGE curves")
    p.add_argument("ids", type=int, nargs="*", metavar="ID", help="two or more run ids")
    p.add_argument("--sweep", metavar="ID", help="every run of sweep ID (the latest of each variant), its swept keys only")
    p.add_argument("--json", action="store_true", help="keys: runs, metrics, config_diff, curves (--sweep: and sweep)")

    p = sub.add_parser("samples", help="per-sample dev insights: references, predictions, per-item ROUGE")
    p.add_argument("id", type=int)
    p.add_argument("--vs", type=int, metavar="ID", help="a second run, side by side (enables --sort diff)")
    p.add_argument("--worst", type=int, metavar="N", help="the N worst dialogues (same as --sort worst --limit N)")
    p.add_argument("--sort", choices=sorts, help="worst (default), best, or diff (largest |B − A|, needs --vs)")
    p.add_argument("--limit", type=int, metavar="N", help="show at most N dialogues")
    p.add_argument("--filter", choices=filters, help="empty outputs, far-off length, or foreign-script leakage")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("submit", help="validate a run's submission (test order, no empty summary) and copy it")
    p.add_argument("id", type=int)
    p.add_argument("--to", metavar="FILE", help="target file or directory (default: submissions/, named "
                                                "<model>_run<id>_<date>.csv)")
    add_json(p)

    p = sub.add_parser("lb", help="record a public-leaderboard score next to a run (runs/<id>/leaderboard.json)")
    p.add_argument("id", type=int)
    p.add_argument("score", help="the score as the leaderboard shows it, e.g. 47.52")
    add_json(p)


def _metric_cell(value: float | None, scale: float = 100.0) -> str:
    return "-" if value is None else f"{value * scale:.2f}"


def format_comparison(comparison: Comparison, diff_heading: str = "config keys that differ:") -> str:
    """Plain text: metric table, config diff, curve lengths."""
    labels = [r["label"] for r in comparison.runs]
    width = max(cell_len(label) for label in labels)

    def pad(text: str) -> str:  # Hangul takes two cells: ljust would misalign the columns
        return text + " " * (width - cell_len(text))

    lines = [f"{pad('run')}  {'R1':>6} {'R2':>6} {'RL':>6} {'final':>6}  tokenizer  scorer       n  from"]
    for label, m in zip(labels, comparison.metrics):
        lines.append(f"{pad(label)}  {_metric_cell(m['rouge1']):>6} {_metric_cell(m['rouge2']):>6} "
                     f"{_metric_cell(m['rougeL']):>6} {_metric_cell(m['final'], 1):>6}  {str(m['tokenizer'] or '-'):<9}  "
                     f"{str(m['scorer'] or '-'):<11} {str(m['n'] or '-'):>3}  {m['stage'] or '-'}")
    keys = {(m["tokenizer"], m["scorer"]) for m in comparison.metrics if m["final"] is not None}
    if len(keys) > 1:
        lines.append("warning: these finals were made with different tokenizers/scorers and are not comparable")
    lines += ["", diff_heading if comparison.config_diff else "config: no key differs"]
    for row in comparison.config_diff:
        lines.append(f"  {row.key}: " + " | ".join(f"{json.dumps(v, ensure_ascii=False)}" for v in row.values))
    lines.append("")
    for label, curves in zip(labels, comparison.curves):
        last_loss = f", last loss {curves.loss[-1][1]:.4f}" if curves.loss else ""
        lines.append(f"{label}: {len(curves.loss)} loss points{last_loss}, {len(curves.rouge)} dev evaluations")
    return "\n".join(lines)


def cmd_compare(manager: Manager, args: argparse.Namespace) -> ExitCode:
    if args.sweep is not None and args.ids:
        raise DialsumError("compare takes run ids or --sweep ID, not both")
    if args.sweep is None:
        if len(args.ids) < 2:
            raise DialsumError("compare needs two or more different run ids, e.g. `dialsum-tui compare 3 5`, "
                               "or a sweep: `dialsum-tui compare --sweep s1`")
        comparison = manager.compare(args.ids)
        print(json.dumps(comparison.to_json(), ensure_ascii=False, indent=2) if args.json else format_comparison(comparison))
        return ExitCode.OK
    status = manager.sweep(args.sweep)
    comparison = manager.compare_sweep(status.id)
    if args.json:
        print(json.dumps(comparison.to_json() | {"sweep": status.to_json()}, ensure_ascii=False, indent=2))
        return ExitCode.OK
    head = f"sweep {status.id}: {status.sweep.nickname} ×{status.total} ({status.keys_text}), {status.progress_text}"
    best = f"best by dev ROUGE: {status.best.text}" if status.best else "no evaluate-stage dev ROUGE yet"
    print("\n".join([head, best, "", format_comparison(comparison, "swept keys:")]))
    return ExitCode.OK


def cmd_samples(manager: Manager, args: argparse.Namespace) -> ExitCode:
    for flag, value in (("--worst", args.worst), ("--limit", args.limit)):
        if value is not None and value < 1:
            raise DialsumError(f"{flag} {value}: give a count of 1 or more")
    if args.worst is not None and args.sort not in (None, "worst"):
        raise DialsumError(f"--worst and --sort {args.sort} contradict each other; use one")
    sort = args.sort or "worst"
    limit = args.worst if args.worst is not None else args.limit
    sample_set = manager.samples(args.id, args.vs)
    sample_set.view(sort, args.filter)  # bad combinations (diff without --vs) fail before printing
    if args.json:
        print(json.dumps(sample_set.to_json(sort, args.filter, limit), ensure_ascii=False, indent=2))
    else:
        print(manager.samples_text(sample_set, sort, args.filter, limit))
    return ExitCode.OK


def cmd_submit(manager: Manager, args: argparse.Namespace) -> ExitCode:
    done = manager.submit(args.id, args.to)
    text = (f"{done.source.name}: valid ({done.rows} rows, test order, no empty summary)\n"
            f"copied to {done.target}\n"
            f"after uploading, record the public score: `dialsum-tui lb {args.id} SCORE`")
    emit(args, {"id": args.id, "source": str(done.source), "target": str(done.target), "rows": done.rows}, text)
    return ExitCode.OK


def cmd_lb(manager: Manager, args: argparse.Namespace) -> ExitCode:
    entry = manager.record_score(args.id, args.score)
    label = manager.run_label(manager.get(args.id))
    dev = f"dev {entry['dev_final']:.2f} ({entry['tokenizer']}/{entry['scorer']})" if entry["dev_final"] is not None \
        else "no dev ROUGE from an evaluate stage"
    emit(args, {"id": args.id, "label": label, **entry}, f"{label}: leaderboard {entry['score']:.2f} · {dev}")
    return ExitCode.OK


COMMANDS = {"compare": cmd_compare, "samples": cmd_samples, "submit": cmd_submit, "lb": cmd_lb}
