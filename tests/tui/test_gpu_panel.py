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


def test_a_shared_gpu_lists_every_run_on_it_with_its_peak_and_prediction() -> None:
    from dialsum_tui.manager.snapshot import DeviceRun

    # Two KoBART runs share GPU 0 (gpu_sharing); NVML attributes only the first one's process
    # (the second's pid is a host pid inside a container): both are listed, by run, with their figures.
    gpus = [_device(0, GpuProcess(101, 0, 9 * GIB), GpuProcess(4711, 0, 2 * GIB, user="kim")), _device(1)]
    runs = {0: (DeviceRun(3, "koBART-요약", "train", 9 * GIB, 17.1, 9.5), DeviceRun(4, "koBART-b", "infer", 0, 15.1, None))}
    text = render_gpus(gpus, "", {101: (3, "koBART-요약")}, runs).plain
    assert "run 3 koBART-요약 · train · peak 9.5 / pred 17.1 GiB" in text
    assert "run 4 koBART-b · infer · pred 15.1 GiB" in text
    assert "pid 101" not in text and "kim (not ours)" in text  # ours by run, foreign holders still named
    compact = render_gpus(gpus * 2, "", {101: (3, "koBART-요약")}, runs).plain.splitlines()[0]
    assert "run 3 koBART-요약 · run 4 koBART-b · kim (not ours)" in compact
