"""Provides the GPU-guard benchmark against real NVML: how long after a run's memory is really free
the guard admits the next run, and that a leaked forked child keeps the next run out with the
holder named.

    python benchmarks/guard_release.py [--gib 10] [--poll 0.1,0.5]

Scenarios, each with a real CUDA process (torch) allocating ``--gib``:
  exit     the process frees and exits normally
  sigkill  the process is SIGKILLed (as the host OOM killer would)
  leak     the process forks a child that does not exec (a DataLoader-style worker), then the parent is
           SIGKILLed: NVML keeps listing the dead parent's pid while the child pins the memory
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dialsum_tui.manager.gpu import open_gpu_source  # noqa: E402
from dialsum_tui.manager.guards import GpuGuard  # noqa: E402
from dialsum_tui.manager.workspace import Settings  # noqa: E402

HOLDER = """
import os, sys, time, torch
x = torch.empty(int({gib} * 2**30), dtype=torch.uint8, device="cuda"); x.fill_(1); torch.cuda.synchronize()
if {fork}:
    if os.fork() == 0:          # a forked, never-exec'd child: inherits the parent's device mappings
        time.sleep({child_s}); os._exit(0)
print("ready", flush=True)
time.sleep({hold_s})
del x
"""


def start_holder(gib: float, fork: bool, hold_s: float, child_s: float = 8.0) -> subprocess.Popen:
    code = HOLDER.format(gib=gib, fork=fork, hold_s=hold_s, child_s=child_s)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def used_bytes(source) -> int:
    return source.devices()[0].used_bytes


def run_scenario(name: str, gib: float, poll: float, settings: Settings) -> dict:
    source = open_gpu_source()
    guard = GpuGuard(source, settings)
    for _ in range(3):  # learn the idle baseline
        guard.check([0], {})
        time.sleep(0.05)
    baseline = guard.baselines.get(0, used_bytes(source))
    proc = start_holder(gib, fork=name == "leak", hold_s=2.0 if name == "exit" else 60.0)
    owners = {proc.pid: (1, "bench-run")}
    blocked = guard.check([0], owners)
    t_end = time.monotonic()
    if name != "exit":
        os.kill(proc.pid, signal.SIGKILL)
        t_end = time.monotonic()
    else:
        proc.wait()
        t_end = time.monotonic()
    proc.wait()
    threshold = baseline + settings.gpu_idle_margin_mib * 2**20
    t_free = t_admit = None
    reasons: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and t_admit is None:
        now = time.monotonic()
        if t_free is None and used_bytes(source) <= threshold:
            t_free = now
        verdict = guard.check([0], owners)
        if verdict.ok:
            t_admit = now
        elif verdict.reason and verdict.reason not in reasons:
            reasons.append(verdict.reason)
        time.sleep(poll)
    return {
        "scenario": name, "poll_s": poll, "samples": settings.gpu_samples, "gib": gib,
        "blocked_while_running": blocked.reason,
        "free_after_end_s": round(t_free - t_end, 3) if t_free else None,
        "admitted_after_free_s": round(t_admit - t_free, 3) if t_admit and t_free else None,
        "admitted_after_end_s": round(t_admit - t_end, 3) if t_admit else None,
        "reasons_while_blocked": reasons[:4],
        "baseline_mib": baseline // 2**20,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=10.0)
    parser.add_argument("--poll", default="0.1,0.5", help="guard sampling intervals to try (the worker polls at 0.5 s)")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    settings = Settings(gpu_samples=args.samples, gpu_grace_s=0.0)
    rows = []
    for poll in [float(p) for p in args.poll.split(",")]:
        for name in ("exit", "sigkill", "leak"):
            row = run_scenario(name, args.gib, poll, settings)
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
