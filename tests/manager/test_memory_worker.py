"""GPU memory through the real worker and the fake engine on the CPU (issue 27): each stage's peak is
recorded from the GPU source's process list (every rank, several GPUs, a container that attributes
nothing), a config that cannot fit is failed at admission with the fix, and ``gpu_sharing`` starts a
second run beside ours when the memory allows, waits when it does not, and puts a config that ran out
of memory beside another run back to running alone. The GPU is scripted: its processes are the
worker's own stage pids, holding what each test says."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dialsum_tui.manager.guards.gpu import MIB, GpuDevice, GpuProcess, ScriptedGpuSource
from dialsum_tui.manager.guards.memory import SAME_DEVICE_REASON, snapshot_key
from dialsum_tui.manager.runs.models import Run, RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.worker.loop import Worker
from dialsum_tui.manager.worker.peaks import EXCLUSIVE_FILE, MemoryWatch, read_exclusive
from dialsum_tui.manager.workspace.layout import Workspace
from engine.units import GIB

from support import drive, final, wait_until

REPO = Path(__file__).resolve().parents[2]
KOBART = REPO / "tests" / "fixtures" / "model_configs" / "kobart"
IDLE = 480 * MIB


class LiveGpu:
    """One scripted GPU whose compute processes are the worker's running train and infer stages (evaluate
    scores on the CPU): each stage's pid holds ``held[run id]`` GiB (1 GiB unless told), as NVML lists them."""

    def __init__(self, total_gib: float, held: dict[int, float] | None = None) -> None:
        self.total = int(total_gib * GIB)
        self.held = held or {}
        self.worker: Worker | None = None

    def devices(self) -> list[GpuDevice]:
        stages = [st for st in self.worker.active.values()
                  if st.ident is not None and st.stage != "evaluate"] if self.worker else []
        procs = tuple(GpuProcess(st.ident.pid, 0, int(self.held.get(st.run_id, 1.0) * GIB), "python", "me")
                      for st in stages)
        return [GpuDevice(0, "Scripted H100", IDLE + sum(p.used_bytes for p in procs), self.total, 0, 30, procs)]

    def describe(self) -> str:
        return "live scripted GPU"


def kobart_config(ws: Workspace, nickname: str, **dotted: Any) -> Path:
    """configs/kobart.yaml on the fixture's config.json (predicted: train 17.07, infer 14.62 GiB)."""
    tree = yaml.safe_load((REPO / "configs" / "kobart.yaml").read_text(encoding="utf-8"))
    tree["model"].update(name_or_path=str(KOBART), nickname=nickname)
    tree["data"] = {"dir": "data"}
    for key, value in dotted.items():
        section, name = key.split(".")
        tree.setdefault(section, {})[name] = value
    path = ws.configs_dir / f"{nickname}.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def sharing(ws: Workspace, on: bool = True, margin: float = 2.0) -> None:
    ws.settings_path.write_text(f"gpu_grace_s: 0\ngpu_samples: 1\ndisk_refresh_s: 1\ngpu_sharing: {str(on).lower()}\n"
                                f"gpu_share_margin_gib: {margin}\n", encoding="utf-8")


def live_worker(ws: Workspace, source: LiveGpu) -> Worker:
    worker = Worker(ws, poll_s=0.05, gpu_source=source)
    source.worker = worker
    return worker


def tick_until(worker: Worker, manager: Manager, until: Callable[[dict[int, Run]], bool], what: str,
               timeout: float = 30.0) -> dict[int, Run]:
    seen: dict[int, Run] = {}

    def step() -> tuple[dict[int, Run]] | None:
        worker.tick()
        seen.clear()
        seen.update({r.id: r for r in manager.runs()})
        return (dict(seen),) if until(seen) else None

    try:
        return wait_until(step, timeout, what)[0]
    except pytest.fail.Exception:
        pytest.fail(f"{what}: {[(r.id, r.state.value, r.reason) for r in seen.values()]}")


@pytest.fixture
def manager(workspace: Workspace) -> Manager:
    m = Manager.open(workspace)
    m._gpu = ScriptedGpuSource([[GpuDevice(0, "Scripted H100", IDLE, int(80 * GIB), 0, 30)]])  # what add sees
    return m


# --- peaks --------------------------------------------------------------------------------------------


def test_each_stage_s_peak_is_recorded_from_its_processes(workspace: Workspace, manager: Manager,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_STEPS", "20")
    run = manager.add(str(kobart_config(workspace, "peak")), gpus="0")
    source = LiveGpu(80.0, {run.id: 6.5})
    done = drive(live_worker(workspace, source), manager, run.id, final)
    assert done.state is RunState.SUCCEEDED, done.failure_message
    assert done.gpu_peaks == {"train": 6.5, "infer": 6.5}  # evaluate held no GPU memory: nothing recorded
    assert done.gpu_predicted == {"train": 17.07, "infer": 14.62, "evaluate": 0.0}
    # A sweep variant (another learning rate: the same memory key) is now judged by what was measured.
    variant = manager.add(str(kobart_config(workspace, "peak-lr", **{"train.learning_rate": 3e-5})), gpus="0")
    watch = MemoryWatch(workspace, source, manager.store)
    measured = watch.measured(variant, manager.runs())
    assert {s: (n.gib, n.source, n.run_id) for s, n in measured.items()} == {
        "train": (6.5, "measured", run.id), "infer": (6.5, "measured", run.id)}
    assert manager.estimate(str(kobart_config(workspace, "peak-lr2", **{"train.learning_rate": 3e-5}))
                            ).to_json()["stages"]["train"]["measured_gib"] == 6.5


@dataclass
class FakeStage:
    run_id: int
    stage: str
    ident: Any


@dataclass
class Ident:
    pid: int


def test_peaks_sum_every_rank_per_gpu_and_keep_the_largest_gpu(workspace: Workspace, manager: Manager) -> None:
    run = manager.add(str(kobart_config(workspace, "ddp")), gpus="0,1", check=False)  # add sees one GPU
    launcher, rank0, rank1 = 5001, 5002, 5003
    frames = [
        [GpuDevice(0, "H100", IDLE + 9 * GIB, 80 * GIB, 0, 30, (GpuProcess(rank0, 0, 9 * GIB),)),
         GpuDevice(1, "H100", IDLE + 8 * GIB, 80 * GIB, 0, 30, (GpuProcess(rank1, 1, 8 * GIB),))],
        # Later, rank 1 peaks higher; a second process of rank 0 (a forked worker with a context) adds to GPU 0.
        [GpuDevice(0, "H100", IDLE + 10 * GIB, 80 * GIB, 0, 30, (GpuProcess(rank0, 0, 9 * GIB), GpuProcess(5004, 0, GIB))),
         GpuDevice(1, "H100", IDLE + 12 * GIB, 80 * GIB, 0, 30, (GpuProcess(rank1, 1, 12 * GIB),))],
        [GpuDevice(0, "H100", IDLE + 2 * GIB, 80 * GIB, 0, 30, (GpuProcess(rank0, 0, 2 * GIB),)),
         GpuDevice(1, "H100", IDLE, 80 * GIB, 0, 30, ())],
    ]
    watch = MemoryWatch(workspace, ScriptedGpuSource(frames), manager.store)
    active: Mapping[int, Any] = {run.id: FakeStage(run.id, "train", Ident(launcher))}
    seen = {pid: (run.id, "ddp") for pid in (launcher, rank0, rank1, 5004)}
    for _ in frames:
        watch.sample(active, seen, {0: IDLE, 1: IDLE})
    assert manager.get(run.id).gpu_peaks == {"train": 12.0}
    # Slurm stages (no local process) are not sampled; nothing is written for them.
    watch.sample({run.id: FakeStage(run.id, "infer", None)}, seen, {})
    assert manager.get(run.id).gpu_peaks == {"train": 12.0}


def test_a_gpu_whose_processes_carry_no_memory_is_read_as_a_whole_for_the_one_stage_on_it(
        workspace: Workspace, manager: Manager) -> None:
    run = manager.add(str(kobart_config(workspace, "boxed")), gpus="0")
    # Some containers list no process (or none with memory): the device's use above its idle baseline is ours.
    frame = [GpuDevice(0, "H100", IDLE + 7 * GIB, 80 * GIB, 0, 30, ())]
    watch = MemoryWatch(workspace, ScriptedGpuSource([frame]), manager.store)
    watch.sample({run.id: FakeStage(run.id, "train", Ident(6001))}, {}, {0: IDLE})
    assert manager.get(run.id).gpu_peaks == {"train": 7.0}


# --- at admission -----------------------------------------------------------------------------------


def test_a_run_that_cannot_fit_fails_at_admission_with_the_fix(workspace: Workspace, manager: Manager) -> None:
    small = [GpuDevice(0, "RTX 3090", IDLE, 24 * GIB, 0, 30)]
    run = manager.add(str(kobart_config(workspace, "huge", **{"train.batch_size": 400})), gpus="0", check=False)
    done = drive(Worker(workspace, poll_s=0.05, gpu_source=ScriptedGpuSource([small])), manager, run.id, final)
    assert done.state is RunState.FAILED and done.failure_kind == "config" and done.failed_stage == "train"
    assert "GPU memory: train needs" in done.failure_message and "GPU 0 (RTX 3090, 24.0 GiB)" in done.failure_message
    assert "cheapest fix: train.gradient_checkpointing false → true, train.batch_size 400 → 200" in done.failure_message
    assert "--set train.batch_size=200 --set train.grad_accum=2" in done.failure_message


# --- sharing ------------------------------------------------------------------------------------------


def test_sharing_starts_a_second_run_beside_ours_when_the_memory_allows(workspace: Workspace, manager: Manager,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    monkeypatch.setenv("FAKE_GATE", str(gate))
    sharing(workspace)
    a = manager.add(str(kobart_config(workspace, "a")), action="train", gpus="0")
    b = manager.add(str(kobart_config(workspace, "b")), action="train", gpus="0")
    worker = live_worker(workspace, LiveGpu(80.0, {a.id: 5.0, b.id: 5.0}))
    both = tick_until(worker, manager, lambda rs: all(rs[i].pid for i in (a.id, b.id)), "both runs on GPU 0")
    assert both[a.id].state is both[b.id].state is RunState.RUNNING
    gate.touch()
    done = tick_until(worker, manager, lambda rs: all(r.state.is_final for r in rs.values()), "both to finish")
    assert {r.state for r in done.values()} == {RunState.SUCCEEDED}
    assert done[a.id].gpu_peaks == {"train": 5.0} and done[b.id].gpu_peaks == {"train": 5.0}


def test_sharing_waits_without_room_and_off_it_never_shares(workspace: Workspace, manager: Manager,
                                                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    monkeypatch.setenv("FAKE_GATE", str(gate))
    sharing(workspace)
    a = manager.add(str(kobart_config(workspace, "a")), action="train", gpus="0")
    b = manager.add(str(kobart_config(workspace, "b")), action="train", gpus="0")
    # 30 GiB: a (17.1 predicted) + the idle baseline + a 2 GiB margin leave 10.5 GiB, b needs 17.1.
    worker = live_worker(workspace, LiveGpu(30.0, {a.id: 4.0}))
    runs = tick_until(worker, manager, lambda rs: rs[a.id].pid is not None and rs[b.id].state is RunState.WAITING,
                      "b to wait for room")
    assert runs[b.id].reason.startswith(SAME_DEVICE_REASON) and "10.5 GiB left beside run" in runs[b.id].reason
    assert "17.1 GiB predicted" in runs[b.id].reason
    assert manager.held_by_guards() == []  # queueing for our own run: not a guard holding it (check exits 0)
    gate.touch()
    done = tick_until(worker, manager, lambda rs: all(r.state.is_final for r in rs.values()), "both to finish")
    assert done[b.id].started_at >= done[a.id].finished_at

    sharing(workspace, on=False)
    gate.unlink()
    c = manager.add(str(kobart_config(workspace, "c")), action="train", gpus="0")
    d = manager.add(str(kobart_config(workspace, "d")), action="train", gpus="0")
    worker = live_worker(workspace, LiveGpu(80.0))
    runs = tick_until(worker, manager, lambda rs: rs[c.id].pid is not None and rs[d.id].state is RunState.WAITING,
                      "d to wait while sharing is off")
    assert runs[d.id].reason == SAME_DEVICE_REASON
    gate.touch()
    tick_until(worker, manager, lambda rs: all(r.state.is_final for r in rs.values()), "all to finish")


def test_an_oom_while_sharing_is_said_and_the_config_then_runs_alone(workspace: Workspace, manager: Manager,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    monkeypatch.setenv("FAKE_GATE", str(gate))
    monkeypatch.setenv("FAKE_FAIL", "b/train:oom")
    sharing(workspace)
    a = manager.add(str(kobart_config(workspace, "a")), action="train", gpus="0")
    b = manager.add(str(kobart_config(workspace, "b")), action="train", gpus="0")
    worker = live_worker(workspace, LiveGpu(80.0, {a.id: 5.0}))
    runs = tick_until(worker, manager, lambda rs: rs[b.id].state.is_final, "b to fail beside a")
    failed = runs[b.id]
    assert failed.state is RunState.FAILED and failed.failure_kind == "oom"
    assert failed.failure_message.startswith(f"out of memory while sharing GPU 0 with run {a.id} (a)")
    assert "CUDA out of memory" in failed.failure_message and "runs alone" in failed.failure_hint
    assert runs[a.id].state is RunState.RUNNING  # its neighbour goes on
    recorded = read_exclusive(workspace)
    assert list(recorded) == [snapshot_key(failed)] and recorded[snapshot_key(failed)]["beside"] == [a.id]
    assert (workspace.state_dir / EXCLUSIVE_FILE).is_file()

    monkeypatch.delenv("FAKE_FAIL")
    again = manager.retry(b.id)  # the same config: it now waits for the GPU to be ours alone
    runs = tick_until(worker, manager, lambda rs: rs[again.id].state is RunState.WAITING, "the retry to wait")
    assert runs[again.id].reason == SAME_DEVICE_REASON
    gate.touch()
    done = tick_until(worker, manager, lambda rs: rs[again.id].state.is_final and rs[a.id].state.is_final,
                      "the retry to run alone")
    assert done[again.id].state is RunState.SUCCEEDED and done[again.id].started_at >= done[a.id].finished_at
    # A restarted worker keeps the fallback: it is on disk.
    assert not Worker(workspace, gpu_source=LiveGpu(80.0)).memory.shares(done[again.id])
    assert json.loads((workspace.state_dir / EXCLUSIVE_FILE).read_text(encoding="utf-8"))
