"""The benchmarks that read NVML run their code paths on the CPU, so they cannot rot between device
sessions: guard_release.py with real holder processes (exit, SIGKILL, a forked child outliving its
killed parent) against a /proc stand-in for the device, and the pipeline's utilisation sampler
(util_sampler.py) through a stand-in for the pynvml module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from support import REPO, script_env

BENCH = REPO / "benchmarks"
BASE_USED = 480 * 2**20


def test_guard_release_blocks_on_the_holder_and_on_its_forked_child(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(BENCH / "guard_release.py"), "--device", "cpu", "--poll", "0.05",
                           "--child-s", "0.3", "--out", str(out)], capture_output=True, text=True, env=script_env(),
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = {r["scenario"]: r for r in json.loads(out.read_text())}
    assert list(rows) == ["exit", "sigkill", "leak"]
    for name, r in rows.items():
        holder = r["holder_pid"]
        # While the holder ran, the guard named it as our run.
        assert r["blocked_while_running"].startswith(f"pid {holder} (run 1, bench-run) holds "), r
        # Every scenario ends admitted, after the memory was seen free (the same poll's reading).
        assert r["free_after_end_s"] is not None and r["admitted_after_end_s"] is not None, r
        assert r["admitted_after_free_s"] >= 0 and r["admitted_after_end_s"] >= r["free_after_end_s"], r
        assert r["baseline_mib"] == 480 and r["device"] == "cpu", r
        if name != "leak":
            assert r["child_pid"] is None and r["child_alive_at_admission"] is None, r
            assert not any("forked child" in reason for reason in r["reasons_while_blocked"]), r
    leak = rows["leak"]
    holder, child = leak["holder_pid"], leak["child_pid"]
    assert child not in (None, holder)
    # The parent was SIGKILLed and reaped; its child kept the memory, and the guard said so, naming
    # the dead holder's run (the /dev/nvidia scan that also names the child finds nothing on a CPU).
    assert leak["held_samples_after_end"] >= 1, leak
    assert leak["reasons_while_blocked"][0].startswith(f"pid {holder} (run 1, bench-run) holds "), leak
    assert f"pid {holder} is gone, so a forked child still holds it" in leak["reasons_while_blocked"][0], leak
    assert leak["child_alive_at_admission"] is False, leak
    assert proc.stdout.count('"scenario"') == 3  # one printed row per scenario


def test_guard_release_without_a_gpu_says_to_use_the_cpu_path() -> None:
    from dialsum_tui.manager.guards.gpu import open_gpu_source

    if open_gpu_source().devices():
        pytest.skip("this machine has a GPU: the default path would run the real benchmark")
    proc = subprocess.run([sys.executable, str(BENCH / "guard_release.py")], capture_output=True, text=True,
                          env=script_env(), timeout=120)
    assert proc.returncode == 2 and "--device cpu runs its code path" in proc.stderr, proc.stderr[-2000:]


class FakeNvml:
    """The pynvml functions the sampler calls, answering for ``gpus`` scripted devices.

    Utilisation cycles through ``utils`` and used memory grows a MiB per sample, so each line the
    sampler writes shows which reads it came from. The ``term_after``-th sample sends this process
    SIGTERM, as benchmarks/pipeline.py stops its sampler. No device: nvmlInit fails, as without a driver.
    """

    class NVMLError(Exception):
        """pynvml's base error."""

    def __init__(self, utils: list[int], term_after: int = 0, gpus: int = 1):
        self.utils = utils
        self.term_after = term_after
        self.gpus = gpus
        self.reads = 0

    def nvmlInit(self) -> None:
        if not self.gpus:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"handle {index}"

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return b"NVIDIA H100 80GB HBM3"  # bytes, as older pynvml releases return it

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> SimpleNamespace:
        self.reads += 1
        if self.reads == self.term_after:
            os.kill(os.getpid(), signal.SIGTERM)
        return SimpleNamespace(gpu=self.utils[(self.reads - 1) % len(self.utils)], memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> SimpleNamespace:
        used = BASE_USED + self.reads * 2**20
        return SimpleNamespace(used=used, total=80 * 2**30, free=80 * 2**30 - used)


@pytest.fixture
def sampler_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """util_sampler's functions; the SIGTERM handler that sample_forever installs is undone after."""
    monkeypatch.syspath_prepend(str(BENCH))  # the benchmarks import each other by file name
    from util_sampler import gpu_window, read_samples, sample_forever

    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield SimpleNamespace(sample_forever=sample_forever, read_samples=read_samples, gpu_window=gpu_window)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_util_sampler_writes_every_nvml_sample_until_sigterm(tmp_path: Path, sampler_module) -> None:
    u = sampler_module
    out = tmp_path / "samples.txt"
    nvml = FakeNvml(utils=[0, 40, 100, 60], term_after=6)
    # max_s is only the safety net: the SIGTERM sent by the sixth sample ends it (the last line says so).
    assert u.sample_forever(out, max_s=120, interval=0.01, nvml=nvml) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# device: NVIDIA H100 80GB HBM3" and lines[-1] == "# stopped: SIGTERM"
    device, samples = u.read_samples(out)
    assert device == "NVIDIA H100 80GB HBM3"
    # One line per utilisation read, each with the memory read that followed it, none lost.
    assert len(samples) == nvml.reads >= 6
    assert [(util, used) for _, util, used in samples] == [
        (nvml.utils[i % 4], BASE_USED + (i + 1) * 2**20) for i in range(len(samples))]
    times = [t for t, _, _ in samples]
    assert times == sorted(times)
    window = u.gpu_window(samples, times[0], times[-1])
    mean = sum(util for _, util, _ in samples) / len(samples)
    assert window == {"util_mean": round(mean, 1), "idle_share": round(1 - mean / 100, 3),
                      "peak_gib": round(samples[-1][2] / 2**30, 2), "samples": len(samples)}
    # A window that holds no sample (a stage before the sampler started) says so instead of inventing figures.
    assert u.gpu_window(samples, times[0] - 10, times[0] - 5)["util_mean"] == "n/a"


def test_util_sampler_without_a_gpu_writes_only_that(tmp_path: Path, sampler_module) -> None:
    u = sampler_module
    out = tmp_path / "samples.txt"
    assert u.sample_forever(out, max_s=120, nvml=FakeNvml(utils=[0], gpus=0)) == 0
    device, samples = u.read_samples(out)
    assert device == "no GPU (NVML found none)" and samples == []
    assert u.gpu_window(samples, 0, 1e12) == {"util_mean": "n/a", "idle_share": "n/a", "peak_gib": "n/a", "samples": 0}
