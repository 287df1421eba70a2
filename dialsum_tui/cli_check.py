"""Provides ``dialsum-tui check``: GPU, leftovers, disk, worker, queue and backend in one look, with
exit 1 when something needs attention."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

from dialsum_tui.manager.backends import slurm
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace.layout import WorkspaceError
from engine import units


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
    except WorkspaceError:  # settings.yaml is wrong: attention names it; the rest still reports
        leftovers = []
    usage = manager.disk()
    running, pid = manager.worker_status()
    return {
        "attention": attention,
        "gpu": {"source": source.describe(), "error": error, "devices": [dataclasses.asdict(d) for d in devices]},
        "leftovers": [{"pid": p.pid, "gpu": p.gpu_index, "used_bytes": p.used_bytes, "run": rid, "nickname": nick}
                      for p, rid, nick in leftovers],
        "disk": {**dataclasses.asdict(usage), "age_s": round(time.time() - usage.measured_at, 1)} if usage else None,
        "worker": {"running": running, "pid": pid},
        "paused": manager.is_paused(),
        "backend": _backend_check(manager),
    }


def _backend_check(manager: Manager) -> dict[str, Any]:
    """Who runs the stages; on Slurm, whether sbatch/squeue/sacct answer and accept the settings."""
    try:
        settings = manager.workspace.settings()
    except WorkspaceError as err:  # attention already names the broken key; the backend is unknown meanwhile
        return {"name": "unknown", "ok": False, "detail": f"settings.yaml is invalid: {err}"}
    if settings.backend != "slurm":
        return {"name": settings.backend, "ok": True, "detail": "stages run as processes on this host"}
    ok, detail = slurm.available(settings.slurm)
    return {"name": settings.backend, "ok": ok, "detail": detail}


def cmd_check(manager: Manager, args: argparse.Namespace) -> int:
    data = _check_data(manager)
    backend = data["backend"]
    failed = 0 if backend["ok"] else 1  # a Slurm workspace whose cluster does not answer cannot run anything
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
        return 1 if data["attention"] or failed else 0
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
    say_store_problem(manager)
    return 1 if data["attention"] or failed else 0


def say_store_problem(manager: Manager) -> None:
    """A worker whose state.db was removed or replaced admits nothing: say so on stderr."""
    from dialsum_tui.manager.store.integrity import worker_store_problem

    problem = worker_store_problem(manager.workspace)
    if problem:
        print(f"worker: {problem}", file=sys.stderr)
