"""Per-GPU scheduling and multi-process launch through the real worker: two single-GPU runs side by
side on a scripted 2-GPU host, guards per device, `accelerate launch` argv for N GPUs, and 2 CPU
ranks (a torch-free stand-in engine) for a crash in one rank, a cancel, and rank ownership."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from dialsum_tui.manager import process
from dialsum_tui.manager.guards.gpu import MIB, GpuDevice, GpuProcess, ScriptedGpuSource
from dialsum_tui.manager.runs.models import Run, RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.worker.following import run_owners
from dialsum_tui.manager.worker.launching import run_config, stage_command
from dialsum_tui.manager.worker.loop import Worker
from dialsum_tui.manager.workspace.layout import Workspace
from dialsum_tui.widgets.gpu_panel import render_gpus

from support import wait_until

RANK_ENGINE = Path(__file__).resolve().parent / "rank_engine.py"
GIB = 1024 * MIB


def device(index: int, *procs: GpuProcess) -> GpuDevice:
    used = 480 * MIB + sum(p.used_bytes for p in procs)
    return GpuDevice(index, "H200", used, 140 * GIB, 0, 30, procs)


def tick_until(worker: Worker, manager: Manager, until: Callable[[list[Run]], bool], timeout: float = 30.0) -> list[Run]:
    """Tick the worker until ``until(runs)`` holds."""
    seen: list[Run] = []

    def step() -> tuple[list[Run]] | None:  # a tuple: an empty queue that satisfies ``until`` is still an answer
        worker.tick()
        seen[:] = manager.runs()
        return (list(seen),) if until(seen) else None

    try:
        return wait_until(step, timeout, "the queue")[0]
    except pytest.fail.Exception:
        pytest.fail(str([(r.id, r.state.value, r.reason) for r in seen]))


def by_id(runs: list[Run]) -> dict[int, Run]:
    return {r.id: r for r in runs}


@pytest.fixture
def manager(workspace: Workspace) -> Manager:
    # `add` checks --gpu against the host's devices: this one has GPU 0 and 1 (its own script).
    return Manager(workspace, Manager.open(workspace).store, ScriptedGpuSource([[device(0), device(1)]]))


def test_two_single_gpu_runs_share_the_host_side_by_side(workspace: Workspace, make_config, manager: Manager,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_STEPS", "30")
    a = manager.add(str(make_config("a")), action="train", gpus="0")
    b = manager.add(str(make_config("b")), action="train", gpus="1")
    c = manager.add(str(make_config("c")), action="train", gpus="0")
    worker = Worker(workspace, poll_s=0.05, gpu_source=ScriptedGpuSource([[device(0), device(1)]]))
    runs = tick_until(worker, manager, lambda rs: all(by_id(rs)[i].pid for i in (a.id, b.id)))
    both = by_id(runs)
    assert both[a.id].state is both[b.id].state is RunState.RUNNING
    # Each stage sees only its own device.
    assert psutil.Process(both[a.id].pid).environ()["CUDA_VISIBLE_DEVICES"] == "0"
    assert psutil.Process(both[b.id].pid).environ()["CUDA_VISIBLE_DEVICES"] == "1"
    waiting = by_id(tick_until(worker, manager, lambda rs: by_id(rs)[c.id].state is not RunState.QUEUED))[c.id]
    assert waiting.state is RunState.WAITING and "same device" in waiting.reason
    done = tick_until(worker, manager, lambda rs: all(r.state.is_final for r in rs), timeout=60)
    assert {r.state for r in done} == {RunState.SUCCEEDED}
    assert by_id(done)[c.id].started_at >= by_id(done)[a.id].finished_at  # c waited for a's GPU


def test_guards_are_per_device(workspace: Workspace, make_config, manager: Manager) -> None:
    foreign = GpuProcess(999999, 1, 20 * GIB, "python", "someone")
    source = ScriptedGpuSource([[device(0), device(1)], [device(0), device(1, foreign)]])
    source.devices()  # idle baselines of both devices, as NVML saw them before the holder came
    on_busy = manager.add(str(make_config("busy")), action="train", gpus="1")
    on_free = manager.add(str(make_config("free")), action="train", gpus="0")
    worker = Worker(workspace, poll_s=0.05, gpu_source=source)
    runs = by_id(tick_until(worker, manager, lambda rs: by_id(rs)[on_free.id].state is not RunState.QUEUED))
    assert runs[on_busy.id].state is RunState.WAITING
    assert "GPU 1" in runs[on_busy.id].reason and "999999" in runs[on_busy.id].reason
    assert runs[on_free.id].state is RunState.RUNNING  # GPU 0's run is not held up by GPU 1's holder


def test_n_gpu_train_goes_through_accelerate_and_infer_stays_single(workspace: Workspace, make_config,
                                                                     manager: Manager) -> None:
    run = manager.add(str(make_config("pair")), gpus="0,1")
    cfg = run_config(run)
    argv, env = stage_command(workspace, run, "train", cfg)
    assert argv[1:3] == ["-m", "accelerate.commands.launch"]
    assert argv[argv.index("--num_processes") + 1] == "2" and "--multi_gpu" in argv
    assert argv[argv.index("--main_process_port") + 1] == "0"  # accelerate picks a free port
    assert argv[argv.index("train") - 1] == shlex.split(os.environ["DIALSUM_ENGINE"])[1]  # the engine script
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1"}
    infer, infer_env = stage_command(workspace, run, "infer", cfg)
    assert "accelerate.commands.launch" not in infer and infer_env == {"CUDA_VISIBLE_DEVICES": "0"}


def test_bad_cpu_process_count_fails_naming_the_variable(workspace: Workspace, make_config, manager: Manager,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIALSUM_CPU_PROCS", "two")
    run = manager.add(str(make_config("cpu")), action="train")
    worker = Worker(workspace, poll_s=0.05, gpu_source=ScriptedGpuSource([[]]))
    done = by_id(tick_until(worker, manager, lambda rs: rs[0].state.is_final))[run.id]
    assert done.state is RunState.FAILED and done.failure_kind == "config"
    assert "DIALSUM_CPU_PROCS" in done.failure_message and "'two'" in done.failure_message


@pytest.fixture
def two_cpu_ranks(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Stages run as 2 CPU ranks of the rank stand-in; returns the file where ranks note their pids."""
    monkeypatch.setenv("DIALSUM_ENGINE", shlex.join([sys.executable, str(RANK_ENGINE)]))
    monkeypatch.setenv("DIALSUM_CPU_PROCS", "2")
    pid_file = tmp_path / "ranks.txt"
    monkeypatch.setenv("RANK_PID_FILE", str(pid_file))
    return pid_file


def rank_pids(pid_file: Path) -> dict[int, int]:
    lines = pid_file.read_text().split("\n") if pid_file.exists() else []
    return {int(r): int(p) for r, p in (ln.split() for ln in lines if ln)}


def test_crash_in_one_rank_fails_the_run_with_that_ranks_error(workspace: Workspace, make_config, manager: Manager,
                                                               two_cpu_ranks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK_FAIL", "1")
    run = manager.add(str(make_config("ranks")), action="train")
    worker = Worker(workspace, poll_s=0.05, gpu_source=ScriptedGpuSource([[]]))
    done = by_id(tick_until(worker, manager, lambda rs: rs[0].state.is_final, timeout=60))[run.id]
    assert done.state is RunState.FAILED and done.failure_kind == "oom", done.failure_message
    assert done.failure_message.startswith("rank 1: ") and "on rank 1 at step 3" in done.failure_message
    events = manager.events(run.id)
    assert [e.event for e in events].count("started") == 1  # rank 0 only
    log = (workspace.run_dir(run.id) / "run.log").read_text()
    assert "[rank1] RuntimeError: torch.OutOfMemoryError" in log  # the rank's traceback says which rank
    assert not any(psutil.pid_exists(pid) for pid in rank_pids(two_cpu_ranks).values())


def test_cancel_stops_every_rank_and_ranks_count_as_the_runs(workspace: Workspace, make_config, manager: Manager,
                                                             two_cpu_ranks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK_STEPS", "100000")
    run = manager.add(str(make_config("ranks")), action="train")
    worker = Worker(workspace, poll_s=0.05, gpu_source=ScriptedGpuSource([[]]), stop_grace=(5.0, 2.0))
    tick_until(worker, manager, lambda rs: len(rank_pids(two_cpu_ranks)) == 2 and bool(worker.active
               and worker.active[run.id].members), timeout=60)
    ranks = rank_pids(two_cpu_ranks)
    owners = run_owners(manager.runs())
    assert {owners[pid] for pid in ranks.values()} == {(run.id, "ranks")}
    # The GPU panel marks each rank's device as this run's.
    panel = render_gpus([device(i, GpuProcess(pid, i, 3 * GIB)) for i, pid in sorted(ranks.items())], "", owners).plain
    assert panel.count(f"run {run.id} ranks") == 2 and "not ours" not in panel

    leader = manager.get(run.id)
    assert worker.lock.acquire()  # the worker is up: the cancel (and the ranks' stop) is its to carry out
    try:
        manager.cancel(run.id)
        done = by_id(tick_until(worker, manager, lambda rs: rs[0].state.is_final, timeout=60))[run.id]
    finally:
        worker.lock.release()
    assert done.state is RunState.CANCELLED
    assert not process.is_alive(leader.pid, leader.pid_start_time)
    for pid in ranks.values():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"rank {pid} survived"
