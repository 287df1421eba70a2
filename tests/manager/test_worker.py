"""The worker loop with real stage processes (the fake engine), a scripted GPU and a real disk cache."""

from __future__ import annotations

import os

import pytest

from dialsum_tui.manager.guards import disk
from dialsum_tui.manager.guards.gpu import (
    MIB,
    GpuDevice,
    GpuProcess,
    NoGpuSource,
    ScriptedGpuSource,
)
from dialsum_tui.manager.runs.identity import run_key
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.worker.loop import Worker
from dialsum_tui.manager.workspace.layout import Workspace
from engine import artifacts

from support import cancel_with_worker_up, drive, final


@pytest.fixture
def manager(workspace: Workspace) -> Manager:
    return Manager.open(workspace)


def test_pipeline_runs_three_stage_processes_and_records_metrics(workspace: Workspace, make_config, manager: Manager) -> None:
    run = manager.add(str(make_config("koBART-summarization")))
    worker = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    done = drive(worker, manager, run.id, final)
    assert done.state is RunState.SUCCEEDED, done.failure_message
    assert done.stage == "evaluate" and done.exit_code == 0
    events = manager.events(run.id)
    starts = [e for e in events if e.event == "started"]
    assert [e.command for e in starts] == ["train", "infer", "evaluate"]
    assert len({e.pid for e in starts}) == 3  # each stage its own process
    evaluation = [e for e in events if e.event == "eval"][-1]
    assert done.metrics["final"] == evaluation.final and done.metrics["tokenizer"] == "mecab"
    assert artifacts.is_complete_model(artifacts.final_model_dir(workspace.checkpoints_dir, run_key(done)))
    assert oct(workspace.run_dir(run.id).stat().st_mode & 0o777) == oct(0o700)


def test_infer_failure_after_training_is_classified(workspace: Workspace, make_config, manager: Manager,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "Llama-3.2-Korean-3B-bf16/infer:dtype")
    run = manager.add(str(make_config("Llama-3.2-Korean-3B-bf16")))
    done = drive(Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource()), manager, run.id, final)
    assert done.state is RunState.FAILED
    assert (done.failure_kind, done.failed_stage) == ("dtype", "infer")
    assert "BFloat16" in done.failure_message and done.failure_hint
    assert artifacts.is_complete_model(artifacts.final_model_dir(workspace.checkpoints_dir, run_key(done)))


def test_killed_without_a_word_or_oom_evidence_is_killed(workspace: Workspace, make_config, manager: Manager,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "train:hostoom")  # the stage SIGKILLs itself: no event, no log line
    run = manager.add(str(make_config("m")), action="train")
    done = drive(Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource()), manager, run.id, final)
    assert done.state is RunState.FAILED and done.failure_kind == "killed" and done.exit_code == -9


def test_cancel_sends_sigint_and_records_cancelled(workspace: Workspace, make_config, manager: Manager,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_STEPS", "400")
    run = manager.add(str(make_config("m")))
    worker = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource(), stop_grace=(5, 5))
    running = drive(worker, manager, run.id, lambda r: bool(r.progress))
    done = cancel_with_worker_up(worker, manager, run.id)
    assert done.state is RunState.CANCELLED and done.exit_code == 130
    assert not os.path.exists(f"/proc/{running.pid}") or open(f"/proc/{running.pid}/stat").read().split()[2] == "Z"


def test_gpu_guard_waits_for_a_holder_then_admits(workspace: Workspace, make_config, manager: Manager) -> None:
    busy = GpuDevice(0, "Scripted H100", 15000 * MIB, 81559 * MIB, 0, 30,
                     (GpuProcess(pid=999_999, gpu_index=0, used_bytes=14500 * MIB),))
    idle = GpuDevice(0, "Scripted H100", 480 * MIB, 81559 * MIB, 0, 30)
    source = ScriptedGpuSource([[idle], [busy], [busy], [busy], [idle]])
    source.devices()  # the idle baseline, as NVML saw it before the holder arrived
    manager._gpu = ScriptedGpuSource([[idle]])  # what `add` sees: GPU 0 exists (its preflight)
    run = manager.add(str(make_config("m")), action="train", gpus="0")
    worker = Worker(workspace, poll_s=0.05, gpu_source=source)
    waiting = drive(worker, manager, run.id, lambda r: r.state is RunState.WAITING)
    assert "pid 999999" in waiting.reason and "GPU 0" in waiting.reason
    done = drive(worker, manager, run.id, final)
    assert done.state is RunState.SUCCEEDED


def test_disk_guard_holds_a_run_that_would_cross_the_quota(workspace: Workspace, make_config, manager: Manager) -> None:
    workspace.settings_path.write_text("quota_gb: 0.2\nmargin_gb: 0.01\ngpu_grace_s: 0\ngpu_samples: 1\n", encoding="utf-8")
    disk.write_cache(workspace, disk.measure(workspace))
    run = manager.add(str(make_config("m")), action="train")
    worker = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    waiting = drive(worker, manager, run.id, lambda r: r.state is RunState.WAITING)
    assert "needs ~" in waiting.reason and "used" in waiting.reason and "prune" in waiting.reason
    workspace.settings_path.write_text("gpu_grace_s: 0\ngpu_samples: 1\n", encoding="utf-8")
    disk.write_cache(workspace, disk.measure(workspace))
    assert drive(worker, manager, run.id, final).state is RunState.SUCCEEDED


def test_disk_watch_stops_a_running_stage_and_pauses(workspace: Workspace, make_config, manager: Manager,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_STEPS", "400")
    run = manager.add(str(make_config("m")), action="train")
    worker = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource(), stop_grace=(5, 5))
    drive(worker, manager, run.id, lambda r: bool(r.progress))
    # The quota shrinks under the run (another tenant filled the disk, say): usage is within the margin.
    workspace.settings_path.write_text("quota_gb: 0.001\nmargin_gb: 0.001\n", encoding="utf-8")
    disk.write_cache(workspace, disk.measure(workspace))
    done = drive(worker, manager, run.id, final)
    assert done.state is RunState.FAILED and done.failure_kind == "disk" and "disk quota guard" in done.failure_message
    assert manager.is_paused()


def test_restart_re_adopts_a_live_stage(workspace: Workspace, make_config, manager: Manager, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_STEPS", "20")
    run = manager.add(str(make_config("m")), action="train")
    first = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    launched = drive(first, manager, run.id, lambda r: r.pid is not None)
    del first  # the worker dies; its stage keeps running
    second = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    second.reconcile()
    assert run.id in second.active and second.active[run.id].popen is None
    done = drive(second, manager, run.id, final)
    assert done.state is RunState.SUCCEEDED and done.pid == launched.pid
    assert done.progress["step"] == done.progress["total"]


def test_restart_never_adopts_a_reused_pid(workspace: Workspace, make_config, manager: Manager) -> None:
    run = manager.add(str(make_config("m")), action="train")
    # Our own pid is alive, but with another start time it is "someone else's" process.
    manager.store.transition(run.id, RunState.RUNNING, stage="train", pid=os.getpid(), pid_start_time=1.0)
    worker = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    worker.reconcile()
    done = manager.get(run.id)
    assert run.id not in worker.active
    assert done.state is RunState.INTERRUPTED and "vanished" in done.reason


def test_restart_finishes_a_stage_that_ended_while_no_worker_watched(workspace: Workspace, make_config, manager: Manager) -> None:
    run = manager.add(str(make_config("m")))
    dead = 2**22 + 4321  # above pid_max: no such process
    manager.store.transition(run.id, RunState.RUNNING, stage="train", pid=dead, pid_start_time=1.0)
    with artifacts.EventWriter(workspace.run_dir(run.id) / artifacts.EVENTS_FILE, command="train") as ev:
        ev.emit("started", pid=dead)
        ev.emit("finished", seconds=1.0)
    from dialsum_tui.manager.runs.identity import run_key

    model = artifacts.final_model_dir(workspace.checkpoints_dir, run_key(run))  # what the finished train left
    model.mkdir(parents=True)
    artifacts.write_final_model_meta(model, {})
    worker = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    worker.reconcile()
    moved_on = manager.get(run.id)
    assert moved_on.state is RunState.RUNNING and moved_on.stage == "infer" and moved_on.pid is None
    assert drive(worker, manager, run.id, final).state is RunState.SUCCEEDED


def test_handoff_four_models_reproduced(workspace: Workspace, make_config, manager: Manager,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from dialsum_tui.manager.insights.results import (
        STATUS_DONE,
        STATUS_OOM,
        STATUS_TRAINED_INFER_FAILED,
    )

    monkeypatch.setenv("FAKE_FAIL", "Llama-3.2-Korean-3B-bf16/infer:dtype,Llama-3.2-Korean-3B-fp16/train:oom")
    ids = [manager.add(str(make_config(n))).id for n in
           ("koBART-summarization", "Llama-3.2-Korean-3B-bf16", "Llama-3.2-Korean-3B-fp16")]
    worker = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    for rid in ids:
        drive(worker, manager, rid, final)
    # Qwen: its stage vanished at 758/780 while no worker watched, without a verdict.
    qwen = manager.add(str(make_config("Qwen3-4B-Instruct")), action="train")
    manager.store.transition(qwen.id, RunState.RUNNING, stage="train", pid=2**22 + 99, pid_start_time=1.0,
                             progress={"step": 758, "total": 780})
    worker.reconcile()
    rows = {row.nickname: row for row in manager.results()}
    assert rows["koBART-summarization"].status == STATUS_DONE
    assert rows["Llama-3.2-Korean-3B-bf16"].status == STATUS_TRAINED_INFER_FAILED
    assert rows["Llama-3.2-Korean-3B-fp16"].status == STATUS_OOM
    assert manager.get(qwen.id).state is RunState.INTERRUPTED
    assert rows["Qwen3-4B-Instruct"].status.startswith(("❓", "❌")) and rows["Qwen3-4B-Instruct"].evidence
    note = manager.handoff()
    assert all(nick in note for nick in rows)
