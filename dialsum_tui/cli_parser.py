"""Provides the ``dialsum-tui`` argument parser: every command, flag and its help text."""

from __future__ import annotations

import argparse

from dialsum_tui import cli_insights
from dialsum_tui import serve as serve_mod
from dialsum_tui.manager.runs.models import Action
from dialsum_tui.manager.service import Manager

ACTIONS = [a.value for a in Action]
PRIORITIES = ["high", "normal", "low"]
JSON_HELP = "print one JSON object (keys: docs/cli.md) instead of text; errors too: {error, exit_code}"
# What `--help` prints: plain text, not the module docstring (its reST markup showed up verbatim).
DESCRIPTION = ("Queue, inspect and steer fine-tuning runs in a dialsum-tui workspace. "
               "With no command, open the TUI (and start the worker if none runs).")
EPILOG = ("Exit codes: 0 ok, 1 an operation failed (for check and worker status: something needs attention), "
          "2 bad input (the message says what to change), 130 interrupted. Every command but demo and serve "
          "takes --json. `dialsum-tui COMMAND --help` describes each command; docs/cli.md lists them all.")


def add_json(parser: argparse.ArgumentParser, help_: str = JSON_HELP) -> None:
    parser.add_argument("--json", action="store_true", help=help_)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dialsum-tui", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--workspace", "-w", help="workspace root (default: $DIALSUM_WORKSPACE, or cwd upwards)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("init", help="create a workspace (or adopt an existing directory)")
    p.add_argument("dir", nargs="?", default=".")
    p.add_argument("--demo", action="store_true", help="also add the demo data, tiny models and configs")
    share = p.add_mutually_exclusive_group()
    share.add_argument("--share-group", metavar="NAME",
                       help="share the queue with Unix group NAME (group-writable, setgid dirs, nothing for others)")
    share.add_argument("--private", action="store_true", help="undo --share-group: the workspace is yours alone again")
    p.add_argument("--quota-path", metavar="DIR",
                   help="the tree the server's disk quota counts (du -sx), e.g. the competition root; default: the "
                        "workspace. Stored as quota_path in .dialsum/settings.yaml")
    add_json(p)

    p = sub.add_parser("demo", help="build the demo workspace if needed, queue its runs, start the worker, open the TUI")
    p.add_argument("dir", nargs="?", default="demo-workspace", help="demo workspace (default ./demo-workspace)")
    p.add_argument("--no-tui", action="store_true", help="stop after queueing and starting the worker (scripts, tests)")

    p = sub.add_parser("add", help="queue a config, or a sweep of it (every variant validated now), and start the worker")
    p.add_argument("config")
    p.add_argument("--action", choices=ACTIONS, default="pipeline", help="pipeline = train → infer → evaluate")
    p.add_argument("--gpu", help="device indices for CUDA_VISIBLE_DEVICES, e.g. 0 or 0,1 (backend: slurm: a count, e.g. 2)")
    p.add_argument("--after", type=int, metavar="ID",
                   help="start only after run ID succeeded (cancelled, saying why, if it does not)")
    p.add_argument("--priority", choices=PRIORITIES, default="normal",
                   help="high jumps the waiting queue (never a running run); low waits for the rest")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a config key (repeatable), validated like the file's own values")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                   help="queue a sweep: one run per value (repeat for a grid: every combination), e.g. "
                        "--sweep train.learning_rate=1e-4,2e-4 --sweep lora.r=8,16 (docs/sweeps.md)")
    p.add_argument("--seeds", type=int, metavar="N", help="a sweep over N seeds (train.seed, train.seed+1, …)")
    p.add_argument("--sweep-file", metavar="FILE", help="a sweep from a YAML list of override sets (non-grid designs)")
    add_json(p)

    p = sub.add_parser("ls", help="list runs, in queue order (a table as wide as the terminal; --json has every field); "
                                  "a sweep's runs under its group line")
    p.add_argument("--collapse", action="store_true", help="one line per sweep (its progress and best), not its runs")
    add_json(p, "print a JSON list of runs, every field (keys: docs/cli.md)")

    p = sub.add_parser("move", help="reorder the queue: where a queued or waiting run stands among the pending ones")
    p.add_argument("id", type=int)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", type=int, metavar="N", help="position N among the pending runs (1 = starts next)")
    where.add_argument("--top", action="store_true", help="same as --to 1")
    where.add_argument("--bottom", action="store_true", help="after every other pending run")
    where.add_argument("--before", type=int, metavar="ID", help="just before pending run ID")
    add_json(p)

    p = sub.add_parser("cancel", help="cancel a queued run, or stop a running one cleanly (SIGINT first); or a whole sweep")
    p.add_argument("id", type=int, nargs="?")
    p.add_argument("--sweep", metavar="ID", help="every run of sweep ID (s3) that has not ended")
    add_json(p)

    p = sub.add_parser("retry", help="queue a new run with the same config snapshot (or changed, or resumed); "
                                     "or a sweep's failed variants")
    p.add_argument("id", type=int, nargs="?")
    p.add_argument("--sweep", metavar="ID", help="with --failed: sweep ID's variants that failed or were interrupted")
    p.add_argument("--failed", action="store_true", help="with --sweep: retry its failed and interrupted variants")
    p.add_argument("--action", choices=ACTIONS, help="e.g. infer: re-infer without retraining")
    p.add_argument("--resume", action="store_true",
                   help="continue training from run ID's last complete checkpoint (refused once its training finished)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a config key of the snapshot (repeatable), validated like add")
    p.add_argument("--config", metavar="FILE", help="take this (fixed) config file instead of the old snapshot")
    add_json(p)

    add_json(sub.add_parser("pause", help="start nothing new (a running pipeline finishes its stages)"))
    add_json(sub.add_parser("resume", help="let the queue start runs again (starts the worker)"))

    p = sub.add_parser("logs", help="print a run's log (a run that failed before its log began: its failure)")
    p.add_argument("id", type=int)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the run is final")
    add_json(p, "print the log's lines and the run's failure as one JSON object (not with --follow)")

    p = sub.add_parser("check", help="backend (Slurm: do sbatch/squeue/sacct answer), GPU, leftovers, disk, worker, "
                                     "queue, runs held by a guard; exit 1 when something needs attention")
    add_json(p)

    p = sub.add_parser("estimate", help="predict each stage's peak GPU memory from a config (its parts, measured peaks "
                                        "of the same config) and whether it fits the GPU(s); nothing is queued")
    p.add_argument("config")
    p.add_argument("--gpu", metavar="IDS", help="device indices to check against, e.g. 0 or 0,1 (default: the largest "
                                                "GPU of this host; 0,1 also predicts the DDP overhead)")
    add_json(p)

    p = sub.add_parser("results", help="one row per model: ROUGE and 상태")
    p.add_argument("--format", choices=Manager.result_formats(), default="table")
    add_json(p, "same as --format json")

    p = sub.add_parser("prune", help="list (or delete) what can go: old checkpoints, unused HF caches")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--dry-run", action="store_true", help="only list (the default)")
    group.add_argument("--yes", action="store_true", help="delete the listed items")
    p.add_argument("--include-shared-cache", action="store_true",
                   help="also offer models in HF caches outside the workspace (other workspaces may need them)")
    add_json(p)

    p = sub.add_parser("handoff", help="write the Markdown hand-off note")
    p.add_argument("--out", help="file to write (atomically); default stdout")
    p.add_argument("--mkdir", action="store_true", help="create --out's directory if it does not exist")
    add_json(p)

    add_json(sub.add_parser("repair", help="keep a broken state.db as state.db.broken-<time> and rebuild it from runs/"))

    p = sub.add_parser("worker", help="start, stop or inspect the detached worker (status: exit 1 when it needs attention)")
    p.add_argument("op", choices=["start", "stop", "status"])
    add_json(p)

    p = sub.add_parser("serve", help="serve the TUI to a browser tab (textual-serve; one app process per tab)",
                       description=serve_mod.DESCRIPTION)
    p.add_argument("--port", type=int, default=serve_mod.DEFAULT_PORT, help=f"default {serve_mod.DEFAULT_PORT}")
    p.add_argument("--host", default=serve_mod.DEFAULT_HOST,
                   help=f"address to bind (default {serve_mod.DEFAULT_HOST}; others need {serve_mod.PUBLIC_FLAG})")
    p.add_argument(serve_mod.PUBLIC_FLAG, dest="allow_public", action="store_true",
                   help="allow a non-loopback --host: anyone reaching the port can cancel runs")
    p.add_argument("--public-url", help="URL browsers use to reach the server, when it differs (a proxy)")

    cli_insights.add_parsers(sub, add_json)  # compare, samples, submit, lb
    return parser
