"""Provides the ``dialsum-tui`` command line: queue, inspect and steer runs through the Manager;
with no subcommand it opens the TUI.

It reaches the manager only through its facade (:mod:`dialsum_tui.manager.service`) and the read
types (runs, snapshots): an import-linter contract holds it to that. Every verb but ``demo`` and
``serve`` takes ``--json`` (docs/cli.md lists the keys). Exit codes are
:class:`engine.contract.ExitCode`, mapped from the error in one place (:func:`main`): 0 ok, 1 an
operation failed — or, for ``check`` and ``worker status``, something needs attention (the worker is
down, failing or stalled, the disk is unmeasured or over quota, a guard holds a run) — 2 bad input
(the message says what to change), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from dialsum_tui import cli_insights
from dialsum_tui import serve as serve_mod
from dialsum_tui.cli_check import cmd_check, say_store_problem
from dialsum_tui.cli_output import emit, ls_table, run_json, say
from dialsum_tui.cli_parser import build_parser
from dialsum_tui.manager.errors import DialsumError, OperationFailed, exit_code_of
from dialsum_tui.manager.runs.models import Run, RunState, headline
from dialsum_tui.manager.service import Manager, WorkspaceOps
from engine.artifacts import atomic_write_text
from engine.contract import ExitCode
from engine.units import format_bytes

WORKER_STOPPED = "worker stopped; running stages keep running and are re-adopted when a worker starts again"
NO_WORKER = "no worker was running"


def _start_worker(manager: Manager, args: argparse.Namespace) -> int:
    pid = manager.ensure_worker()
    say(args, f"worker running (pid {pid}); log: {manager.workspace.worker_log}")
    return pid


def _say_rebuilt(manager: Manager) -> None:
    if manager.rebuilt is not None:  # never silent: the user must know the queue came back from disk
        print(f"dialsum-tui: {manager.rebuilt.note} (see {manager.workspace.worker_log})", file=sys.stderr)


# --- commands that make the workspace -----------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> ExitCode:
    if args.demo:
        from dialsum_tui.manager.demo import init_demo_workspace

        ops = WorkspaceOps(init_demo_workspace(args.dir, report=lambda line: say(args, line)))
    else:
        ops = WorkspaceOps.create(args.dir)
    share = None
    if args.share_group or args.private:
        share = ops.share(args.share_group)  # before the database exists, so it is made shared
        say(args, share)
    quota = ops.choose_quota_path(args.quota_path)
    say(args, quota)
    manager = ops.open()  # creates the state database now (or rebuilds it from runs/), not on first add
    _say_rebuilt(manager)
    found = [str(path) for path in ops.model_folders()]
    if found:
        say(args, f"found {len(found)} model folder(s) on disk: {', '.join(found[:8])}"
                  f"{' …' if len(found) > 8 else ''}; `dialsum-tui results` shows one row each")
    say(args, f"workspace ready: {ops.workspace.root}")
    emit(args, {"workspace": str(ops.workspace.root), "demo": bool(args.demo), "share": share, "quota": quota,
                "model_folders": found, "rebuilt": manager.rebuilt.note if manager.rebuilt is not None else None})
    return ExitCode.OK


def cmd_demo(args: argparse.Namespace) -> int:
    from dialsum_tui.manager.demo import init_demo_workspace, queue_demo_runs

    ops = WorkspaceOps(init_demo_workspace(args.dir))
    manager = ops.open()
    _say_rebuilt(manager)
    queue_demo_runs(manager)
    _start_worker(manager, args)
    if args.no_tui:
        print(f"watch it with `dialsum-tui --workspace {ops.workspace.root}` (or `ls`, `logs -f ID`, `results`)")
        return ExitCode.OK
    return _open_tui(str(ops.workspace.root))


# --- the queue ------------------------------------------------------------------------------------


def cmd_add(manager: Manager, args: argparse.Namespace) -> ExitCode:
    if args.sweep or args.seeds is not None or args.sweep_file:
        return _add_sweep(manager, args)
    run = manager.add(args.config, action=args.action, gpus=args.gpu, after=args.after, priority=args.priority,
                      overrides=args.set)
    say(args, f"queued run {run.id}: {run.nickname} ({run.action.value})"
              + (f", {args.priority} priority" if args.priority != "normal" else ""))
    pid = _start_worker(manager, args)
    emit(args, {"run": run_json(run), "worker_pid": pid})
    return ExitCode.OK


def _add_sweep(manager: Manager, args: argparse.Namespace) -> ExitCode:
    sweep, runs = manager.add_sweep(args.config, axes=args.sweep, seeds=args.seeds, sweep_file=args.sweep_file,
                                    overrides=args.set, action=args.action, gpus=args.gpu, after=args.after,
                                    priority=args.priority)
    status = manager.sweep(sweep.id)
    say(args, f"queued sweep {sweep.id}: {len(runs)} runs of {sweep.nickname} ({status.keys_text}), "
              f"runs {runs[0].id}-{runs[-1].id}")
    for run in runs:
        say(args, f"  run {run.id}: {run.nickname}  {sweep.label(run.nickname)}")
    pid = _start_worker(manager, args)
    emit(args, {"run": run_json(runs[0]), "runs": [run_json(run) for run in runs], "sweep": status.to_json(),
                "worker_pid": pid})
    return ExitCode.OK


def cmd_ls(manager: Manager, args: argparse.Namespace) -> ExitCode:
    runs = manager.runs()
    if args.json:
        emit(args, [run_json(r) for r in runs])
        return ExitCode.OK
    sweeps = manager.sweeps()
    print(ls_table(runs, sweeps=sweeps, collapse=args.collapse) if runs
          else "no runs yet; queue one with `dialsum-tui add CONFIG`")
    say_store_problem(manager)
    if manager.is_paused():
        print("queue paused: `dialsum-tui resume` to continue")
    for pause in manager.failure_pauses():
        print(pause.message)
    return ExitCode.OK


def cmd_move(manager: Manager, args: argparse.Namespace) -> ExitCode:
    order = [run.id for run in manager.move_to(args.id, position=1 if args.top else args.to, before=args.before,
                                               last=args.bottom)]
    position = order.index(args.id) + 1 if args.id in order else None  # None: it started meanwhile
    text = (f"run {args.id} is now {position} of {len(order)} pending: {' '.join(map(str, order))}"
            if position else f"run {args.id} started meanwhile; pending: {' '.join(map(str, order)) or 'none'}")
    emit(args, {"id": args.id, "position": position, "pending": order}, text)
    return ExitCode.OK


def _one_of(args: argparse.Namespace, verb: str) -> None:
    if (args.id is None) == (args.sweep is None):
        raise DialsumError(f"{verb} takes a run id or --sweep ID (not both): `dialsum-tui {verb} 3`, "
                           f"`dialsum-tui {verb} --sweep s1`")


def cmd_cancel(manager: Manager, args: argparse.Namespace) -> ExitCode:
    _one_of(args, "cancel")
    if args.sweep is not None:
        return _cancel_sweep(manager, args)
    run = manager.cancel(args.id)
    if run.state.is_final:
        text = f"run {run.id} is {run.state.value}" + (f": {run.reason}" if run.reason else "")
    else:
        _running, pid = manager.worker_status()
        text = f"run {run.id}: stop requested; the worker (pid {pid}) sends SIGINT (then SIGTERM, SIGKILL) to its stage"
    emit(args, {"run": run_json(run), "stop_requested": not run.state.is_final}, text)
    return ExitCode.OK


def _cancel_sweep(manager: Manager, args: argparse.Namespace) -> ExitCode:
    runs = manager.cancel_sweep(args.sweep)
    status = manager.sweep(args.sweep)
    stopping = [run.id for run in runs if not run.state.is_final]
    text = f"sweep {status.id}: {status.progress_text}" + (
        f"; stop requested for run(s) {', '.join(map(str, stopping))} (SIGINT, then SIGTERM, SIGKILL)" if stopping else "")
    emit(args, {"sweep": status.to_json(), "runs": [run_json(run) for run in runs], "stop_requested": stopping}, text)
    return ExitCode.OK


def _retry_sweep(manager: Manager, args: argparse.Namespace) -> ExitCode:
    if not args.failed:
        raise DialsumError(f"retry --sweep {args.sweep}: add --failed (its failed and interrupted variants are queued "
                           "again, same config)")
    if args.resume or args.set or args.config or args.action:
        raise DialsumError("retry --sweep --failed queues each failed variant again as it was; --resume, --set, "
                           "--config and --action take one run id")
    before = {run.nickname: run.id for run in manager.sweep(args.sweep).runs}
    runs = manager.retry_sweep(args.sweep)
    for run in runs:
        say(args, f"queued run {run.id}: {run.nickname}, retry of run {before.get(run.nickname)}")
    status = manager.sweep(args.sweep)
    pid = _start_worker(manager, args)
    emit(args, {"sweep": status.to_json(), "runs": [run_json(run) for run in runs],
                "retry_of": [before.get(run.nickname) for run in runs], "worker_pid": pid})
    return ExitCode.OK


def cmd_retry(manager: Manager, args: argparse.Namespace) -> ExitCode:
    _one_of(args, "retry")
    if args.sweep is not None:
        return _retry_sweep(manager, args)
    plan = None
    if args.resume or args.set or args.config:
        plan = manager.plan_retry(args.id, resume=args.resume, overrides=args.set, config_file=args.config,
                                  action=args.action)
        say(args, plan.text())
    run = manager.retry(args.id, args.action, plan=plan)
    how = f", resuming from {plan.resume.where}" if plan is not None and plan.resume is not None else ""
    say(args, f"queued run {run.id}: {run.nickname} ({run.action.value}), retry of run {args.id}{how}")
    pid = _start_worker(manager, args)
    emit(args, {"run": run_json(run), "retry_of": args.id, "plan": plan.to_json() if plan is not None else None,
                "worker_pid": pid})
    return ExitCode.OK


def cmd_pause(manager: Manager, args: argparse.Namespace) -> ExitCode:
    manager.pause()
    emit(args, {"paused": True}, f"queue paused: {Manager.PAUSE_MEANING}")
    return ExitCode.OK


def cmd_resume(manager: Manager, args: argparse.Namespace) -> ExitCode:
    lifted = manager.failure_pauses()
    manager.resume()
    say(args, "queue resumed")
    for pause in lifted:
        say(args, f"lifted: the pause for {pause.where} ({pause.kind}, runs {', '.join(map(str, pause.runs))})")
    emit(args, {"paused": False, "lifted": [pause.to_json() for pause in lifted],
                "worker_pid": _start_worker(manager, args)})
    return ExitCode.OK


# --- a run's log ----------------------------------------------------------------------------------


def _failure_json(run: Run) -> dict[str, Any] | None:
    if run.state is not RunState.FAILED:
        return None
    return {"kind": run.failure_kind, "stage": run.failed_stage or run.stage, "headline": headline(run.failure_message),
            "message": run.failure_message, "hint": run.failure_hint}


def failure_text(run: Run) -> str:
    """A failed run's failure, its cause first: the line to read, then the whole message and the hint."""
    stage = run.failed_stage or run.stage
    where = f" in {stage}" if stage else ""
    lines = [f"run {run.id} ({run.nickname}) failed{where} ({run.failure_kind or 'unknown'}): "
             f"{headline(run.failure_message) or 'no message'}"]
    message = (run.failure_message or "").strip()
    if "\n" in message:  # the cause was one of several lines: the rest is context
        lines.append(message)
    if run.failure_hint:
        lines.append(f"hint: {run.failure_hint}")
    return "\n".join(lines)


def _read_log(manager: Manager, run_id: int) -> tuple[list[str], str | None]:
    tail = manager.log_tail(run_id)
    lines: list[str] = []
    live = None
    while (chunk := tail.read_new()) is not None:
        lines.extend(chunk.lines)
        live = chunk.live
    return lines, live


def cmd_logs(manager: Manager, args: argparse.Namespace) -> ExitCode:
    if args.json and args.follow:
        raise DialsumError("logs --json prints the log once; drop --follow (or --json)")
    run = manager.get(args.id)  # a clear error for an unknown id
    path = manager.log_path(args.id)
    if args.json:
        lines, live = _read_log(manager, args.id)
        emit(args, {"id": run.id, "state": run.state.value, "path": str(path), "exists": path.exists(),
                    "lines": lines, "live": live, "failure": _failure_json(run)})
        return ExitCode.OK
    tail = manager.log_tail(args.id)  # the whole file, a chunk at a time; tqdm redraws collapsed
    printed, live = False, None
    while True:
        # Read the state before draining: lines written just before the run ended are still printed.
        run = manager.get(args.id)
        final = not args.follow or run.state.is_final
        while (chunk := tail.read_new()) is not None:
            if chunk.lines:
                sys.stdout.write("".join(line + "\n" for line in chunk.lines))
                sys.stdout.flush()
                printed = True
            live = chunk.live
        if final:
            if live:  # an unfinished last line (a tqdm bar) is printed once, at the end
                print(live)
            if run.state is RunState.FAILED:
                # No log (it failed at the preflight, before its stage began): the failure is what there
                # is to read. After a log: the cause last, where the terminal shows it, off the log's stdout.
                print(failure_text(run), file=sys.stdout if not (printed or live) else sys.stderr)
            elif not printed and not live and not args.follow:
                print(f"run {args.id} has no log yet ({path})", file=sys.stderr)
            return ExitCode.OK
        time.sleep(0.3)


# --- results, disk, hand-off ------------------------------------------------------------------------


def cmd_estimate(manager: Manager, args: argparse.Namespace) -> ExitCode:
    """The predicted GPU memory per stage and its parts; whether it fits (exit 0 either way)."""
    found = manager.estimate(args.config, args.gpu)
    emit(args, found.to_json(), found.text)
    return ExitCode.OK


def cmd_results(manager: Manager, args: argparse.Namespace) -> ExitCode:
    print(manager.results_text("json" if args.json else args.format))
    return ExitCode.OK


def cmd_prune(manager: Manager, args: argparse.Namespace) -> ExitCode:
    items = manager.prune_plan(include_shared=args.include_shared_cache)
    shared = [] if args.include_shared_cache else manager.shared_caches()
    for cache in shared:  # say what was left alone, and why
        say(args, f"not touched: {cache} is a shared HF cache (outside this workspace; other workspaces or "
                  "users may need its models); `--include-shared-cache` lists them too")
    total = sum(item.bytes for item in items)
    usage = manager.disk()
    kept = manager.prune_kept()
    data: dict[str, Any] = {"items": [item.to_json() for item in items], "total_bytes": total,
                            "deleted": False, "freed_bytes": None, "not_touched": [str(c) for c in shared],
                            "kept": [item.to_json() for item in kept],
                            "used_bytes": usage.used_bytes if usage else None,
                            "limit_bytes": usage.limit_bytes if usage else None}
    for item in kept:  # never dropped from the list without a word
        say(args, item.line())
    if not items:
        emit(args, data, "nothing to prune")
        return ExitCode.OK
    for item in items:
        say(args, item.line())
    if args.yes:
        data["deleted"], data["freed_bytes"] = True, manager.prune(items)
        emit(args, data, f"freed {format_bytes(data['freed_bytes'])}")
        return ExitCode.OK
    emit(args, data, f"{manager.prune_effect(total)}; run `dialsum-tui prune --yes` to delete")
    return ExitCode.OK


def cmd_handoff(manager: Manager, args: argparse.Namespace) -> ExitCode:
    out = Path(args.out).expanduser() if args.out else None
    if out is not None and not out.parent.is_dir():
        if not args.mkdir:
            raise DialsumError(f"--out {args.out}: directory {out.parent} does not exist; "
                               "create it, pick another path, or add --mkdir")
        out.parent.mkdir(parents=True, exist_ok=True)
    text = manager.handoff()
    if out is not None:
        try:
            atomic_write_text(out, text, mode=0o600)
        except OSError as err:
            raise DialsumError(f"--out {args.out}: cannot write ({err.strerror or err}); pick another path") from None
    emit(args, {"markdown": text, "out": str(out) if out is not None else None},
         f"hand-off written to {args.out}" if out is not None else text)
    return ExitCode.OK


# --- the worker -----------------------------------------------------------------------------------


def cmd_worker(manager: Manager, args: argparse.Namespace) -> ExitCode:
    if args.op == "start":
        emit(args, {"op": "start", "running": True, "pid": _start_worker(manager, args)})
        return ExitCode.OK
    running, pid = manager.worker_status()
    problems = [line for line in manager.attention() if line.startswith("worker ")] if running else []
    text = [f"worker running (pid {pid})" if running else "worker not running (`dialsum-tui worker start`)"]
    text += [f"needs attention: {line}" for line in problems]
    emit(args, {"op": "status", "running": running, "pid": pid, "heartbeat_age_s": manager.worker_heartbeat_age(),
                "attention": problems}, "\n".join(text))
    return ExitCode.OK if running and not problems else ExitCode.ERROR


def cmd_serve(manager: Manager, args: argparse.Namespace) -> int:
    warning = serve_mod.check_host(args.host, args.allow_public)
    if warning:
        print(warning, file=sys.stderr)
    return serve_mod.serve(manager.workspace, host=args.host, port=args.port, public_url=args.public_url)


def _without_store(ops: WorkspaceOps, args: argparse.Namespace) -> ExitCode:
    """``repair`` and ``worker stop``: they need the lock file and the run directories, not the store."""
    if args.command == "worker":
        pid = ops.worker_pid()
        stopped = ops.stop_worker()
        if pid is not None and not stopped:
            raise OperationFailed(f"the worker (pid {pid}) did not let go of the workspace in time; see "
                                  f"{ops.workspace.worker_log}, then `dialsum-tui worker stop` again")
        emit(args, {"op": "stop", "stopped": stopped, "pid": pid}, WORKER_STOPPED if stopped else NO_WORKER)
        return ExitCode.OK
    done = ops.repair()
    repaired = bool(done.backup or done.runs)
    note = done.note if repaired else \
        f"{ops.workspace.db_path} opens and passes SQLite's quick_check; nothing to repair"
    emit(args, {"repaired": repaired, "backup": str(done.backup) if done.backup else None, "runs": len(done.runs),
                "note": note}, note)
    return ExitCode.OK


COMMANDS = {
    "add": cmd_add, "ls": cmd_ls, "move": cmd_move, "cancel": cmd_cancel, "retry": cmd_retry, "pause": cmd_pause,
    "resume": cmd_resume, "logs": cmd_logs, "check": cmd_check, "estimate": cmd_estimate, "results": cmd_results,
    "prune": cmd_prune, "handoff": cmd_handoff, "worker": cmd_worker, "serve": cmd_serve,
    **cli_insights.COMMANDS,
}


def _open_tui(workspace: str | None) -> int:
    if importlib.util.find_spec("dialsum_tui.app") is None:
        print("the TUI is not available yet (dialsum_tui.app is missing); use the subcommands, see --help",
              file=sys.stderr)
        return ExitCode.BAD_INPUT
    ws = WorkspaceOps.find(workspace).workspace
    return int(importlib.import_module("dialsum_tui.app").run_app(ws) or ExitCode.OK)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command is None:
        return _open_tui(args.workspace)
    if args.command == "init":
        return cmd_init(args)
    if args.command == "demo":
        return cmd_demo(args)
    ops = WorkspaceOps.find(args.workspace)
    if args.command == "repair" or (args.command == "worker" and args.op == "stop"):
        return _without_store(ops, args)  # must work when the store does not
    manager = ops.open()
    _say_rebuilt(manager)
    return COMMANDS[args.command](manager, args)


def exit_code(err: BaseException) -> ExitCode:
    """The exit code of an error that reached :func:`main` (:func:`~dialsum_tui.manager.errors.exit_code_of`).

    A bare ``ValueError`` is bad input here, as it always was for the CLI (a value the user gave that a
    library refused: pydantic's validation, a number that is not one).
    """
    if isinstance(err, ValueError) and not isinstance(err, DialsumError):
        return ExitCode.BAD_INPUT
    return exit_code_of(err)


def _store_of(args: argparse.Namespace) -> WorkspaceOps:
    """The workspace whose ``state.db`` SQLite refused: the one being made, or the one found."""
    if args.command in ("init", "demo"):
        return WorkspaceOps.at(args.dir)
    try:
        return WorkspaceOps.find(args.workspace)
    except DialsumError:
        return WorkspaceOps.at(".")


def _failed(args: argparse.Namespace, err: BaseException) -> ExitCode:
    code = exit_code(err)
    if isinstance(err, KeyboardInterrupt):
        return code
    # Found after opening (a malformed page): the same advice as at open.
    message = _store_of(args).broken_store_message(err) if isinstance(err, sqlite3.Error) else str(err)
    print(f"dialsum-tui: {message}", file=sys.stderr)
    if getattr(args, "json", False):  # a script reading stdout learns it failed, and why
        print(json.dumps({"error": message, "exit_code": int(code)}, ensure_ascii=False))
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(_dispatch(args))
    except (DialsumError, ValueError, RuntimeError, sqlite3.Error, KeyboardInterrupt) as err:
        return int(_failed(args, err))
