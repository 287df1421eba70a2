"""Provides the GPU-guard benchmark against real NVML: how long after a run's memory is really free
the guard admits the next run, and that a leaked forked child keeps the next run out with the
holder named.

    python benchmarks/guard_release.py [--gib 10] [--poll 0.1,0.5]
    python benchmarks/guard_release.py --device cpu --poll 0.05 --child-s 0.5   # the code path on a CPU

Scenarios, each with a real process allocating ``--gib`` (CUDA memory through torch):
  exit     the process frees and exits normally
  sigkill  the process is SIGKILLed (as the host OOM killer would)
  leak     the process forks a child that does not exec (a DataLoader-style worker), then the parent is
           SIGKILLed: NVML keeps listing the dead parent's pid while the child pins the memory

``--device cpu`` runs the same processes, forks and signals with host memory, and the guard reads
:class:`HeldMemorySource` instead of NVML: device memory held while any process of the holder's
process group is alive, read from /proc. The guard really waits for those processes to die; what it
cannot show is the driver itself (when it frees, and the /dev/nvidia scan that names the child).
tests/benchmarks/test_nvml_benchmarks.py runs this path.
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

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dialsum_tui.manager.guards.checks import GpuGuard  # noqa: E402
from dialsum_tui.manager.guards.gpu import GpuDevice, GpuProcess, open_gpu_source  # noqa: E402
from dialsum_tui.manager.procfs import ALIVE, pid_state, process_group, process_identity  # noqa: E402
from dialsum_tui.manager.workspace.layout import Settings  # noqa: E402
from engine.units import GIB, MIB  # noqa: E402

ALLOCATE = {
    "cuda": 'import torch; x = torch.empty(int({gib} * 2**30), dtype=torch.uint8, device="cuda"); x.fill_(1); '
            "torch.cuda.synchronize()",
    "cpu": 'x = bytearray(b"\\x01") * int({gib} * 2**30)',
}
# The holder and its child wait for a line on stdin rather than for a fixed time, so on a slow machine
# the guard's first look still finds them holding (EOF, when the benchmark dies, ends them too).
HOLDER = """
import os, sys, time
{allocate}
child = os.fork() if {fork} else 0
if {fork} and child == 0:  # a forked, never-exec'd child: inherits the parent's device mappings
    sys.stdin.readline()   # released once the guard was seen blocked on it, after the parent died
    time.sleep({child_s}); os._exit(0)
print("ready", child, flush=True)
sys.stdin.readline()       # until the benchmark lets it exit, or kills it
del x
"""
DEFAULT_GIB = {"cuda": 10.0, "cpu": 0.01}


class HeldMemorySource:
    """The GpuSource of ``--device cpu``: NVML's view of one device, worked out from /proc.

    A holder's memory counts as used while any process of its process group is alive: the holder
    leads its own session and a forked child stays in its group, as the driver keeps a context's
    memory while any process maps it. Meanwhile the holder's pid is listed, even once dead, as NVML
    listed it in the leak scenario on the H100.
    """

    IDLE_BYTES = 480 * MIB  # what an idle H100 reserved (docs/benchmarks.md, section 4)
    CONTEXT_BYTES = 600 * MIB  # a CUDA context's own memory: NVML listed 10.6 GiB for a 10 GiB tensor
    TOTAL_BYTES = 81559 * MIB

    def __init__(self) -> None:
        self.held: dict[int, int] = {}

    def hold(self, pid: int, nbytes: int) -> None:
        """Count ``nbytes`` and a CUDA context as used while a process of ``pid``'s group lives."""
        self.held[pid] = nbytes + self.CONTEXT_BYTES

    def devices(self) -> list[GpuDevice]:
        live = {pid: n for pid, n in self.held.items() if group_alive(pid)}
        procs = tuple(GpuProcess(pid, 0, n, *process_identity(pid)) for pid, n in live.items())
        return [GpuDevice(0, "host memory (stand-in for a GPU)", self.IDLE_BYTES + sum(live.values()), self.TOTAL_BYTES,
                          None, None, procs)]

    def describe(self) -> str:
        return "host memory of the benchmark's holder processes, read from /proc (--device cpu)"


def group_alive(pgid: int) -> bool:
    """Whether a process of process group ``pgid`` is alive (a zombie has freed its memory)."""
    return any(process_group(pid) == pgid and pid_state(pid) == ALIVE for pid in psutil.pids())


def start_holder(gib: float, device: str, fork: bool, child_s: float) -> tuple[subprocess.Popen, int | None]:
    """The holder process once it holds the memory, and the pid of its forked child (None without)."""
    code = HOLDER.format(allocate=ALLOCATE[device].format(gib=gib), fork=fork, child_s=child_s)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    word, _, child = proc.stdout.readline().partition(" ")
    if word != "ready":
        proc.kill()
        raise SystemExit(f"the holder process did not allocate {gib} GiB on {device} (its error is above)")
    return proc, int(child) or None


def release(proc: subprocess.Popen) -> None:
    """Send the holder's stdin line: the holder (exit) or its forked child (leak) goes on to exit."""
    proc.stdin.write("\n")
    proc.stdin.flush()


def used_bytes(source) -> int:
    return source.devices()[0].used_bytes


def run_scenario(name: str, gib: float, poll: float, settings: Settings, device: str, child_s: float) -> dict:
    source = open_gpu_source() if device == "cuda" else HeldMemorySource()
    guard = GpuGuard(source, settings)
    for _ in range(3):  # learn the idle baseline
        guard.check([0], {})
        time.sleep(0.05)
    baseline = guard.baselines.get(0, used_bytes(source))
    proc, child = start_holder(gib, device, fork=name == "leak", child_s=child_s)
    if isinstance(source, HeldMemorySource):
        source.hold(proc.pid, int(gib * GIB))
    owners = {proc.pid: (1, "bench-run")}
    blocked = guard.check([0], owners)
    if name != "exit":
        os.kill(proc.pid, signal.SIGKILL)
        t_end = time.monotonic()
    else:
        release(proc)
        proc.wait()
        t_end = time.monotonic()
    proc.wait()
    threshold = baseline + settings.gpu_idle_margin_mib * MIB
    t_free = t_admit = None
    child_alive_at_admission = None
    held_samples = 0  # verdicts after the end that blocked while the memory was still held
    released = False
    reasons: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and t_admit is None:
        now = time.monotonic()
        if t_free is None and used_bytes(source) <= threshold:
            t_free = now
        verdict = guard.check([0], owners)
        if verdict.ok:
            t_admit = now
            child_alive_at_admission = pid_state(child) == ALIVE if child else None
        else:
            if verdict.reason and verdict.reason not in reasons:
                reasons.append(verdict.reason)
            held_samples += t_free is None
            if child and not released:  # the guard has seen the parent dead and the child holding
                release(proc)
                released = True
        time.sleep(poll)
    proc.stdin.close()
    proc.stdout.close()
    return {
        "scenario": name, "poll_s": poll, "samples": settings.gpu_samples, "gib": gib, "device": device,
        "holder_pid": proc.pid, "child_pid": child,
        "blocked_while_running": blocked.reason,
        "free_after_end_s": round(t_free - t_end, 3) if t_free else None,
        "admitted_after_free_s": round(t_admit - t_free, 3) if t_admit and t_free else None,
        "admitted_after_end_s": round(t_admit - t_end, 3) if t_admit else None,
        "held_samples_after_end": held_samples,
        "child_alive_at_admission": child_alive_at_admission,
        "reasons_while_blocked": reasons[:4],
        "baseline_mib": baseline // MIB,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: host memory, and a /proc stand-in for NVML (this script's CPU test)")
    parser.add_argument("--gib", type=float, help="memory each holder allocates (default: 10 on cuda, 0.01 on cpu)")
    parser.add_argument("--poll", default="0.1,0.5", help="guard sampling intervals to try (the worker polls at 0.5 s)")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--child-s", type=float, default=8.0,
                        help="the leak scenario's child keeps the memory this long after the guard first blocks on it")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.device == "cuda" and not open_gpu_source().devices():
        parser.error(f"this benchmark needs a GPU and found none ({open_gpu_source().describe()}); "
                     "--device cpu runs its code path on host memory")
    gib = DEFAULT_GIB[args.device] if args.gib is None else args.gib
    settings = Settings(gpu_samples=args.samples, gpu_grace_s=0.0)
    rows = []
    for poll in [float(p) for p in args.poll.split(",")]:
        for name in ("exit", "sigkill", "leak"):
            row = run_scenario(name, gib, poll, settings, args.device, args.child_s)
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
