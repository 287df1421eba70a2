"""Provides the GPU-utilisation sampler of benchmarks/pipeline.py: a process of its own that
appends one "time util% used_bytes" line per NVML sample of GPU 0 (so it outlives the device call
that started it), and the readers that turn those lines into a stage's utilisation and idle share.
tests/benchmarks/test_nvml_benchmarks.py drives the sampling through a stand-in for pynvml.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from engine.units import GIB

from common import NvmlPeak


class UtilSampler(NvmlPeak):
    """NvmlPeak's NVML handle and thread, also reading utilisation: one "time util% used_bytes" line
    per sample of GPU 0, appended to ``out`` so a later call of this script can read it."""

    def __init__(self, out: Path, interval: float = 0.1, nvml: Any = None):
        super().__init__(index=0, interval=interval, nvml=nvml)
        self.out = out

    def _run(self) -> None:
        with self.out.open("a", encoding="utf-8") as f:
            while not self._stop.is_set():
                handle = self.handles[0]
                util = self.nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                used = self.nvml.nvmlDeviceGetMemoryInfo(handle).used
                f.write(f"{time.time():.3f} {util} {used}\n")
                f.flush()
                time.sleep(self.interval)


def sample_forever(out: Path, max_s: float, interval: float = 0.1, nvml: Any = None) -> int:
    """The ``--sample`` mode: sample until SIGTERM (or ``max_s``, so it never outlives its purpose).
    The last line says which ended it: a sampler that ran out its ``max_s`` missed the stages after."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sampler = UtilSampler(out, interval, nvml)
    if not sampler.handles:
        out.write_text("# device: no GPU (NVML found none)\n", encoding="utf-8")
        return 0
    name = sampler.nvml.nvmlDeviceGetName(sampler.handles[0])
    out.write_text(f"# device: {name.decode() if isinstance(name, bytes) else name}\n", encoding="utf-8")
    with sampler:
        stopped = stop.wait(max_s)
    with out.open("a", encoding="utf-8") as f:
        f.write("# stopped: SIGTERM\n" if stopped else f"# stopped: ran out its {max_s:.0f} s\n")
    return 0


def read_samples(path: Path) -> tuple[str, list[tuple[float, int, int]]]:
    """The sampled device's name and its (time, util %, used bytes) samples."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    device = next((line.partition("# device: ")[2] for line in lines if line.startswith("# device: ")), "unknown")
    rows = [line.split() for line in lines if not line.startswith("#")]
    return device, [(float(t), int(u), int(m)) for t, u, m in (r for r in rows if len(r) == 3)]


def gpu_window(samples: list[tuple[float, int, int]], start: float, end: float) -> dict:
    """Utilisation over [start, end]: NVML's util is the share of its sample period with a kernel
    running, so the idle share is 1 - mean util. "n/a" without samples (a CPU run)."""
    inside = [(u, m) for t, u, m in samples if start <= t <= end]
    if not inside:
        return {"util_mean": "n/a", "idle_share": "n/a", "peak_gib": "n/a", "samples": 0}
    mean = sum(u for u, _ in inside) / len(inside)
    return {"util_mean": round(mean, 1), "idle_share": round(1 - mean / 100, 3),
            "peak_gib": round(max(m for _, m in inside) / GIB, 2), "samples": len(inside)}
