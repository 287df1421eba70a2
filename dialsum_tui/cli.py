"""Provides the ``dialsum-tui`` command line: queue, inspect and steer runs through the Manager;
with no subcommand it opens the TUI.

Exit codes: 0 ok, 1 an operation failed — or, for ``check`` and ``worker status``, something needs
attention (the worker is down or failing, the disk is unmeasured or over quota) — 2 bad input (the
message says what to change).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from rich.cells import cell_len

from dialsum_tui import cli_insights
from dialsum_tui import serve as serve_mod
from dialsum_tui.cli_check import cmd_check, say_store_problem
from dialsum_tui.cli_parser import build_parser
from dialsum_tui.manager.runs.models import Run
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.store.database import IllegalTransition, RunNotFound
from dialsum_tui.manager.workspace.layout import Workspace, WorkspaceError, find_workspace, init_workspace
from engine.artifacts import atomic_write_text
from engine.config import ConfigError

# --- output helpers ---------------------------------------------------------------------------


def _run_dict(run: Run) -> dict[str, Any]:
    data = dataclasses.asdict(run)
    data["action"], data["state"] = run.action.value, run.state.value
    data.pop("config_yaml")  # large; `runs/<id>/config.yaml` has it
    return data


def _progress_text(run: Run) -> str:
    p = run.progress or {}
    if p.get("total"):
        return f"{p.get('stage', run.stage)} {p.get('step', 0)}/{p['total']}"
    return ""


def _ls_table(runs: list[Run]) -> str:
    header = ("ID", "NICKNAME", "ACTION", "STAGE", "STATE", "GPU", "BACKEND", "PROGRESS", "NOTE")
    rows = [header]
    for r in runs:
        state = r.state.value + (f"({r.failure_kind})" if r.failure_kind else "")
        note = r.reason or (r.failure_message or "")
        backend = f"{r.backend} {r.job_id}" if r.job_id else r.backend  # "slurm 1234": the job to scontrol
        rows.append((str(r.id), r.nickname, r.action.value, r.stage or "-", state, r.gpus or "-", backend,
                     _progress_text(r), note[:80]))
    # Pad by terminal cells, not characters: a Hangul syllable takes two cells, so `ljust` misaligned
    # every column after a Korean nickname.
    widths = [max(cell_len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c + " " * (w - cell_len(c)) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
                     for row in rows)


def _start_worker(manager: Manager) -> None:
    pid = manager.ensure_worker()
    print(f"worker running (pid {pid}); log: {manager.workspace.worker_log}")


# --- commands ---------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    if args.demo:
        from dialsum_tui.manager.demo import init_demo_workspace

        ws = init_demo_workspace(args.dir)
    else:
        try:
            ws = init_workspace(args.dir)
        except OSError as err:  # /proc/foo, a read-only mount, no permission: say so, no traceback
            raise WorkspaceError(f"{args.dir}: cannot create a workspace there ({err.strerror or err}); "
                                 "pick a directory you can write to") from None
    if args.share_group or args.private:
        from dialsum_tui.manager.workspace.sharing import set_share_group

        print(set_share_group(ws, args.share_group))  # before the database exists, so it is made shared
    from dialsum_tui.manager.guards.quota import choose_quota_path

    print(choose_quota_path(ws, args.quota_path))
    manager = Manager.open(ws)  # creates the state database now (or rebuilds it from runs/), not on first add
    _say_rebuilt(manager)
    from dialsum_tui.manager.insights.disk_models import disk_models

    found = [m.directory.relative_to(ws.root) for m in disk_models(ws) if m.directory.exists()]
    if found:
        print(f"found {len(found)} model folder(s) on disk: {', '.join(map(str, found[:8]))}"
              f"{' …' if len(found) > 8 else ''}; `dialsum-tui results` shows one row each")
    print(f"workspace ready: {ws.root}")
    return 0


def _say_rebuilt(manager: Manager) -> None:
    if manager.rebuilt is not None:  # never silent: the user must know the queue came back from disk
        print(f"dialsum-tui: {manager.rebuilt.note} (see {manager.workspace.worker_log})", file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> int:
    from dialsum_tui.manager.demo import init_demo_workspace, queue_demo_runs

    ws = init_demo_workspace(args.dir)
    manager = Manager.open(ws)
    _say_rebuilt(manager)
    queue_demo_runs(manager)
    _start_worker(manager)
    if args.no_tui:
        print(f"watch it with `dialsum-tui --workspace {ws.root}` (or `ls`, `logs -f ID`, `results`)")
        return 0
    return _open_tui(str(ws.root))


def cmd_add(manager: Manager, args: argparse.Namespace) -> int:
    run = manager.add(args.config, action=args.action, gpus=args.gpu, after=args.after)
    print(f"queued run {run.id}: {run.nickname} ({run.action.value})")
    _start_worker(manager)
    return 0


def cmd_ls(manager: Manager, args: argparse.Namespace) -> int:
    runs = manager.runs()
    if args.json:
        print(json.dumps([_run_dict(r) for r in runs], ensure_ascii=False, indent=2))
    else:
        print(_ls_table(runs) if runs else "no runs yet; queue one with `dialsum-tui add CONFIG`")
        say_store_problem(manager)
        if manager.is_paused():
            print("queue paused: `dialsum-tui resume` to continue")
    return 0


def cmd_cancel(manager: Manager, args: argparse.Namespace) -> int:
    run = manager.cancel(args.id)
    if run.state.is_final:
        print(f"run {run.id} is {run.state.value}" + (f": {run.reason}" if run.reason else ""))
    else:
        _running, pid = manager.worker_status()
        print(f"run {run.id}: stop requested; the worker (pid {pid}) sends SIGINT (then SIGTERM, SIGKILL) to its stage")
    return 0


def cmd_retry(manager: Manager, args: argparse.Namespace) -> int:
    plan = None
    if args.resume or args.set or args.config:
        plan = manager.plan_retry(args.id, resume=args.resume, overrides=args.set, config_file=args.config,
                                  action=args.action)
        print("\n".join(plan.diff_lines() + [f"note: {n}" for n in plan.notes]))
    run = manager.retry(args.id, args.action, plan=plan)
    how = f", resuming from {plan.resume.where}" if plan is not None and plan.resume is not None else ""
    print(f"queued run {run.id}: {run.nickname} ({run.action.value}), retry of run {args.id}{how}")
    _start_worker(manager)
    return 0


def cmd_pause(manager: Manager, _args: argparse.Namespace) -> int:
    manager.pause()
    print("queue paused: running stages continue, nothing new starts")
    return 0


def cmd_resume(manager: Manager, _args: argparse.Namespace) -> int:
    manager.resume()
    print("queue resumed")
    _start_worker(manager)
    return 0


def cmd_logs(manager: Manager, args: argparse.Namespace) -> int:
    from dialsum_tui.manager.runs.logs import LogTail

    manager.get(args.id)  # a clear error for an unknown id
    path = manager.log_path(args.id)
    tail = LogTail(path, window=None)  # the whole file, a chunk at a time; tqdm redraws collapsed
    printed, live = False, None
    while True:
        # Read the state before draining: lines written just before the run ended are still printed.
        final = not args.follow or manager.get(args.id).state.is_final
        while (chunk := tail.read_new()) is not None:
            if chunk.lines:
                sys.stdout.write("".join(line + "\n" for line in chunk.lines))
                sys.stdout.flush()
                printed = True
            live = chunk.live
        if final:
            if live:  # an unfinished last line (a tqdm bar) is printed once, at the end
                print(live)
            elif not printed and not args.follow:
                print(f"run {args.id} has no log yet ({path})", file=sys.stderr)
            return 0
        time.sleep(0.3)


def cmd_results(manager: Manager, args: argparse.Namespace) -> int:
    from dialsum_tui.manager.insights.results import format_results

    print(format_results(manager.results(), args.format))
    return 0


def cmd_prune(manager: Manager, args: argparse.Namespace) -> int:
    from dialsum_tui.manager.guards.disk import human
    from dialsum_tui.manager.guards.prune import shared_caches

    items = manager.prune_plan(include_shared=args.include_shared_cache)
    if not args.include_shared_cache:
        for cache in shared_caches(manager.workspace):  # say what was left alone, and why
            print(f"not touched: {cache} is a shared HF cache (outside this workspace; other workspaces or "
                  "users may need its models); `--include-shared-cache` lists them too")
    if not items:
        print("nothing to prune")
        return 0
    for item in items:
        print(f"{human(item.bytes):>10}  {item.path}  ({item.reason})")
    total = sum(i.bytes for i in items)
    if args.yes:
        print(f"freed {human(manager.prune(items))}")
    else:
        print(f"{human(total)} can go; run `dialsum-tui prune --yes` to delete")
    return 0


def cmd_handoff(manager: Manager, args: argparse.Namespace) -> int:
    if args.out:
        out = Path(args.out).expanduser()
        if not out.parent.is_dir():
            if not args.mkdir:
                raise WorkspaceError(f"--out {args.out}: directory {out.parent} does not exist; "
                                     "create it, pick another path, or add --mkdir")
            out.parent.mkdir(parents=True, exist_ok=True)
    text = manager.handoff()
    if args.out:
        try:
            atomic_write_text(out, text, mode=0o600)
        except OSError as err:
            raise WorkspaceError(f"--out {args.out}: cannot write ({err.strerror or err}); pick another path") from None
        print(f"hand-off written to {args.out}")
    else:
        print(text)
    return 0


def cmd_worker(manager: Manager, args: argparse.Namespace) -> int:
    if args.op == "start":
        _start_worker(manager)
    elif args.op == "stop":
        if manager.stop_worker():
            print("worker stopped; running stages keep running and are re-adopted when a worker starts again")
        else:
            print("no worker was running")
    else:
        running, pid = manager.worker_status()
        print(f"worker running (pid {pid})" if running else "worker not running (`dialsum-tui worker start`)")
        problems = [line for line in manager.attention() if line.startswith("worker ") and running]
        for line in problems:
            print(f"needs attention: {line}")
        return 0 if running and not problems else 1
    return 0


def cmd_serve(manager: Manager, args: argparse.Namespace) -> int:
    warning = serve_mod.check_host(args.host, args.allow_public)
    if warning:
        print(warning, file=sys.stderr)
    return serve_mod.serve(manager.workspace, host=args.host, port=args.port, public_url=args.public_url)


COMMANDS = {
    "add": cmd_add, "ls": cmd_ls, "cancel": cmd_cancel, "retry": cmd_retry, "pause": cmd_pause,
    "resume": cmd_resume, "logs": cmd_logs, "check": cmd_check, "results": cmd_results,
    "prune": cmd_prune, "handoff": cmd_handoff, "worker": cmd_worker, "serve": cmd_serve,
    **cli_insights.COMMANDS,
}


def _open_tui(workspace: str | None) -> int:
    if importlib.util.find_spec("dialsum_tui.app") is None:
        print("the TUI is not available yet (dialsum_tui.app is missing); use the subcommands, see --help",
              file=sys.stderr)
        return 2
    ws = find_workspace(workspace)
    return int(importlib.import_module("dialsum_tui.app").run_app(ws) or 0)


def _without_store(ws: Workspace, args: argparse.Namespace) -> int:
    """``repair`` and ``worker stop``: they need the lock file and the run directories, not the store."""
    from dialsum_tui.manager.store.integrity import stop_worker
    from dialsum_tui.manager.store.rebuild import repair

    if args.command == "worker":
        if stop_worker(ws):
            print("worker stopped; running stages keep running and are re-adopted when a worker starts again")
        else:
            print("no worker was running")
        return 0
    done = repair(ws)
    print(done.note if done.backup or done.runs else f"{ws.db_path} opens and passes SQLite's quick_check; nothing to repair")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = build_parser().parse_args(argv)
    ws: Workspace | None = None
    try:
        if args.command is None:
            return _open_tui(args.workspace)
        if args.command == "init":
            return cmd_init(args)
        if args.command == "demo":
            return cmd_demo(args)
        ws = find_workspace(args.workspace)
        if args.command == "repair" or (args.command == "worker" and args.op == "stop"):
            return _without_store(ws, args)  # must work when the store does not
        manager = Manager.open(ws)
        _say_rebuilt(manager)
        return COMMANDS[args.command](manager, args)
    except sqlite3.Error as err:  # found after opening (a malformed page): same advice as at open
        from dialsum_tui.manager.store.integrity import broken_message

        db = ws.db_path if ws is not None else Path(".dialsum/state.db")
        print(f"dialsum-tui: {broken_message(db, err)}", file=sys.stderr)
        return 2
    except (ConfigError, WorkspaceError, RunNotFound, IllegalTransition, ValueError) as err:
        print(f"dialsum-tui: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"dialsum-tui: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
