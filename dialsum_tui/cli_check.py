"""Provides ``dialsum-tui check``: GPU, leftovers, disk, worker, queue, backend, the runs a guard
holds and the queued runs predicted not to fit their GPU, in one look, with exit 1 when something
needs attention."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

from dialsum_tui.cli_output import run_note
from dialsum_tui.manager.errors import DialsumError
from dialsum_tui.manager.service import Manager
from engine import units
from engine.contract import ExitCode


def _check_data(manager: Manager) -> dict[str, Any]:
    source = manager.gpu_source()
    try:
        devices = source.devices()
    except Exception as err:  # report, do not crash the check
        devices, error = [], str(err)
    else:
        error = None
    attention = manager.attention()
    try:
        leftovers = manager.leftovers() if devices else []
    except DialsumError:  # settings.yaml is wrong: attention names it; the rest still reports
        leftovers = []
    usage = manager.disk()
    running, pid = manager.worker_status()
    age = manager.worker_heartbeat_age()
    try:
        outlook = manager.memory_outlook()
    except DialsumError:  # settings.yaml is wrong: attention names it
        outlook = []
    return {
        "attention": attention,
        "gpu": {"source": source.describe(), "error": error, "devices": [dataclasses.asdict(d) for d in devices]},
        "leftovers": [{"pid": p.pid, "gpu": p.gpu_index, "used_bytes": p.used_bytes, "run": rid, "nickname": nick}
                      for p, rid, nick in leftovers],
        "disk": {**dataclasses.asdict(usage), "age_s": round(time.time() - usage.measured_at, 1)} if usage else None,
        "worker": {"running": running, "pid": pid, "heartbeat_age_s": round(age, 1) if age is not None else None,
                   "stalled": manager.worker_stalled() is not None},
        "paused": manager.is_paused(),
        "backend": dataclasses.asdict(manager.backend_check()),
        "held": [{"id": run.id, "nickname": run.nickname, "reason": run_note(run)} for run in manager.held_by_guards()],
        "failure_pauses": [pause.to_json() for pause in manager.failure_pauses()],
        "memory": [{"id": run.id, "nickname": run.nickname, "fits": found.fits, "problem": found.problem(),
                    "estimate": found.to_json()} for run, found in outlook],
    }


def cmd_check(manager: Manager, args: argparse.Namespace) -> ExitCode:
    data = _check_data(manager)
    backend = data["backend"]
    # A Slurm workspace whose cluster does not answer cannot run anything; a run a guard holds waits on
    # something a person may have to free.
    code = ExitCode.ERROR if data["attention"] or data["held"] or not backend["ok"] else ExitCode.OK
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
        return code
    print(f"backend: {backend['name']}" + ("" if backend["ok"] else " — NOT usable, fix this first:"))
    print("\n".join(f"  {line}" for line in backend["detail"].splitlines()))
    print(f"GPU: {data['gpu']['source']}" + (f" (query failed: {data['gpu']['error']})" if data["gpu"]["error"] else ""))
    for d in data["gpu"]["devices"]:
        print(f"  GPU {d['index']} {d['name']}: {units.format_gib(d['used_bytes'])} of {units.format_gib(d['total_bytes'])}, "
              f"{len(d['processes'])} process(es)")
    for item in data["leftovers"]:
        print(f"  leftover: pid {item['pid']} (run {item['run']}, {item['nickname']}) holds "
              f"{units.format_gib(item['used_bytes'])} on GPU {item['gpu']}")
    usage = manager.disk()
    print(f"disk: {usage.summary()}" if usage else "disk: not measured yet (the worker measures in the background)")
    w = data["worker"]
    print(f"worker: running (pid {w['pid']})" if w["running"] else "worker: not running (`dialsum-tui worker start`)")
    print(f"queue: {'paused' if data['paused'] else 'running'}")
    for line in data["attention"]:
        print(f"needs attention: {line}")
    for held in data["held"]:
        print(f"held by a guard: run {held['id']} ({held['nickname']}): {held['reason']}")
    for item in data["memory"]:
        if item["fits"] is False:  # the worker will refuse it at admission, naming the same fix
            print(f"predicted not to fit: run {item['id']} ({item['nickname']}): {item['problem']}")
    say_store_problem(manager)
    return code


def say_store_problem(manager: Manager) -> None:
    """A worker whose state.db was removed or replaced admits nothing: say so on stderr."""
    problem = manager.store_problem()
    if problem:
        print(f"worker: {problem}", file=sys.stderr)
