"""The GPU panel on servers with many devices: every GPU stays visible, with who holds it."""

from __future__ import annotations

from dialsum_tui.manager.guards.gpu import GpuDevice, GpuProcess
from dialsum_tui.widgets.gpu_panel import render_gpus
from engine.units import GIB


def _device(index: int, *procs: GpuProcess) -> GpuDevice:
    used = int(0.5 * GIB) + sum(p.used_bytes for p in procs)
    return GpuDevice(index, "NVIDIA H100 80GB HBM3", used, 80 * GIB, 50, 40, procs)


def test_four_gpus_get_one_line_each_naming_our_run_and_a_foreign_user() -> None:
    gpus = [_device(0, GpuProcess(101, 0, 20 * GIB)), _device(1, GpuProcess(102, 1, 20 * GIB)),
            _device(2, GpuProcess(4711, 2, 14 * GIB, user="kim")), _device(3)]
    owners = {101: (5, "라마-3B"), 102: (5, "라마-3B")}
    lines = render_gpus(gpus, "", owners).plain.splitlines()
    # A 4×H100 host showed only GPU0 and GPU1 when each device took three lines or more.
    assert [line.split()[0] for line in lines] == ["GPU0", "GPU1", "GPU2", "GPU3"]
    assert "run 5 라마-3B" in lines[0] and "run 5 라마-3B" in lines[1]
    assert "kim (not ours)" in lines[2] and "14.5/80G" in lines[2]
    assert "run" not in lines[3] and "not ours" not in lines[3]


def test_two_gpus_keep_the_detailed_block_with_pids() -> None:
    text = render_gpus([_device(0, GpuProcess(101, 0, 3 * GIB)), _device(1)], "", {101: (2, "bart")}).plain
    assert "util 50%" in text and "run 2 bart · pid 101" in text
