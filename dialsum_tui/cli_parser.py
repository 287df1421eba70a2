"""Provides the ``dialsum-tui`` argument parser: every command, flag and its help text."""

from __future__ import annotations

import argparse

from dialsum_tui import cli_insights
from dialsum_tui import serve as serve_mod
from dialsum_tui.manager.runs.models import Action

ACTIONS = [a.value for a in Action]
# What `--help` prints: plain text, not the module docstring (its reST markup showed up verbatim).
DESCRIPTION = ("Queue, inspect and steer fine-tuning runs in a dialsum-tui workspace. "
               "With no command, open the TUI (and start the worker if none runs).")
EPILOG = ("Exit codes: 0 ok, 1 an operation failed, 2 bad input (the message says what to change). "
          "`dialsum-tui COMMAND --help` describes each command.")


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

    p = sub.add_parser("demo", help="build the demo workspace if needed, queue its runs, start the worker, open the TUI")
    p.add_argument("dir", nargs="?", default="demo-workspace", help="demo workspace (default ./demo-workspace)")
    p.add_argument("--no-tui", action="store_true", help="stop after queueing and starting the worker (scripts, tests)")

    p = sub.add_parser("add", help="queue a config (validated now) and start the worker")
    p.add_argument("config")
    p.add_argument("--action", choices=ACTIONS, default="pipeline", help="pipeline = train → infer → evaluate")
    p.add_argument("--gpu", help="device indices for CUDA_VISIBLE_DEVICES, e.g. 0 or 0,1 (backend: slurm: a count, e.g. 2)")
    p.add_argument("--after", type=int, metavar="ID", help="start only after run ID succeeded")

    p = sub.add_parser("ls", help="list runs")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("cancel", help="cancel a queued run, or stop a running one cleanly (SIGINT first)")
    p.add_argument("id", type=int)

    p = sub.add_parser("retry", help="queue a new run with the same config snapshot (or changed, or resumed)")
    p.add_argument("id", type=int)
    p.add_argument("--action", choices=ACTIONS, help="e.g. infer: re-infer without retraining")
    p.add_argument("--resume", action="store_true", help="continue training from run ID's last complete checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a config key of the snapshot (repeatable), validated like add")
    p.add_argument("--config", metavar="FILE", help="take this (fixed) config file instead of the old snapshot")

    sub.add_parser("pause", help="start nothing new (running stages continue)")
    sub.add_parser("resume", help="let the queue start runs again (starts the worker)")

    p = sub.add_parser("logs", help="print a run's log")
    p.add_argument("id", type=int)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the run is final")

    p = sub.add_parser("check", help="backend (Slurm: do sbatch/squeue/sacct answer), GPU, leftovers, disk, worker, queue")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("results", help="one row per model: ROUGE and 상태")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")

    p = sub.add_parser("prune", help="list (or delete) what can go: old checkpoints, unused HF caches")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--dry-run", action="store_true", help="only list (the default)")
    group.add_argument("--yes", action="store_true", help="delete the listed items")
    p.add_argument("--include-shared-cache", action="store_true",
                   help="also offer models in HF caches outside the workspace (other workspaces may need them)")

    p = sub.add_parser("handoff", help="write the Markdown hand-off note")
    p.add_argument("--out", help="file to write (atomically); default stdout")
    p.add_argument("--mkdir", action="store_true", help="create --out's directory if it does not exist")

    sub.add_parser("repair", help="keep a broken state.db as state.db.broken-<time> and rebuild it from runs/")

    p = sub.add_parser("worker", help="start, stop or inspect the detached worker")
    p.add_argument("op", choices=["start", "stop", "status"])

    p = sub.add_parser("serve", help="serve the TUI to a browser tab (textual-serve; one app process per tab)",
                       description=serve_mod.DESCRIPTION)
    p.add_argument("--port", type=int, default=serve_mod.DEFAULT_PORT, help=f"default {serve_mod.DEFAULT_PORT}")
    p.add_argument("--host", default=serve_mod.DEFAULT_HOST,
                   help=f"address to bind (default {serve_mod.DEFAULT_HOST}; others need {serve_mod.PUBLIC_FLAG})")
    p.add_argument(serve_mod.PUBLIC_FLAG, dest="allow_public", action="store_true",
                   help="allow a non-loopback --host: anyone reaching the port can cancel runs")
    p.add_argument("--public-url", help="URL browsers use to reach the server, when it differs (a proxy)")

    cli_insights.add_parsers(sub)  # compare, samples, submit, lb
    return parser
