"""The front end's one door: board and run snapshots from a real store, real run files and a
scripted GPU; unchanged state gives no snapshot; a 1 GB log costs one window."""

from __future__ import annotations

import os

from dialsum_tui.manager.guards.gpu import GpuDevice, GpuProcess, ScriptedGpuSource
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.snapshot import SnapshotSource, run_progress
from engine.artifacts import EventWriter
from engine.contract import Eval, Progress, RunFiles

from support import write_config

GIB = 2**30


def _source(manager: Manager) -> SnapshotSource:
    device = GpuDevice(0, "NVIDIA H100 80GB HBM3", 15 * GIB, 80 * GIB, 87, 61, (GpuProcess(4711, 0, 14 * GIB),))
    return SnapshotSource(manager, ScriptedGpuSource([[device]], label="test"))


def test_board_carries_runs_gpu_worker_and_projection_and_repeats_nothing(workspace) -> None:
    manager = Manager.open(workspace)
    manager.pause()
    queued = manager.add(str(write_config(workspace, "koBART-summarization")))
    source = _source(manager)
    board = source.board()
    assert board is not None and [r.id for r in board.runs] == [queued.id] and board.paused
    assert board.worker_pid is None and board.gpus[0].name.startswith("NVIDIA") and "scripted GPU (test)" in board.gpu_note
    assert board.projected_bytes > 0 and board.projected_bytes == source.footprint(queued)
    assert board.unfinished == 1 and board.run(queued.id).nickname == "koBART-summarization"
    assert source.board() is None  # nothing changed: nothing to post
    manager.resume()
    assert source.board().paused is False


def test_run_snapshot_types_what_the_engine_writes(workspace) -> None:
    manager = Manager.open(workspace)
    manager.pause()
    run = manager.add(str(write_config(workspace, "koBART-summarization")))
    files = RunFiles(workspace.run_dir(run.id))
    with EventWriter(files.events, command="train") as events:
        events.emit("started", pid=1)
        for step in (10, 20, 30):
            events.emit("train_log", step=step, epoch=step / 30, loss=3.0 / step, lr=2e-5, grad_norm=1.0)
        events.emit("eval", step=30, epoch=1.0, rouge1=0.41, rouge2=0.22, rougeL=0.39, final=34.0, sum=102.0,
                    tokenizer="mecab", scorer="competition", n=24, split="dev")
        events.emit("eval", step=30, epoch=1.0, loss=1.2)  # a loss-only eval has no scores to show
    files.log.write_text("loading\nstep 10\n 50%|█  | 1/2\r100%|██| 2/2", encoding="utf-8")
    manager.store.transition(run.id, RunState.WAITING, reason="GPU busy")  # to test the record it carries
    manager.store.update(run.id, progress={"step": 30, "total": 60, "epoch": 1.0, "eta_s": 12.0, "stage": "train"})
    source = _source(manager)
    source.board()
    snap = source.run(run.id)
    assert snap.run.state is RunState.WAITING and snap.run.reason == "GPU busy"
    assert snap.progress == Progress(snap.progress.event, step=30, total=60, epoch=1.0, eta_s=12.0)
    assert snap.loss == ((10.0, 0.3), (20.0, 0.15), (30.0, 0.1))
    assert len(snap.evals) == 1 and isinstance(snap.evals[0], Eval)
    assert (snap.evals[0].rouge1, snap.evals[0].final, snap.evals[0].tokenizer) == (0.41, 34.0, "mecab")
    assert snap.log_lines == ("loading", "step 10") and snap.log_live == "100%|██| 2/2"
    assert snap.log_total == 2 and snap.log_generation == 1
    assert snap.footprint == source.footprint(snap.run) > 0
    assert source.run(run.id) is None  # nothing new
    with open(files.log, "a", encoding="utf-8") as fh:
        fh.write("\nsaved\n")
    later = source.run(run.id)
    assert later.log_lines[-2:] == ("100%|██| 2/2", "saved") and later.log_total == 4 and later.log_generation == 1
    files.log.write_text("again\n", encoding="utf-8")  # truncated: the view must start over
    again = source.run(run.id)
    assert again.log_lines == ("again",) and again.log_generation == 2 and again.log_total == 1
    manager.store.update(run.id, reason="disk nearly full")  # a store change alone is a new snapshot
    source.board()
    assert source.run(run.id).run.reason == "disk nearly full"


def test_switching_runs_reads_the_new_one_from_scratch(workspace) -> None:
    manager = Manager.open(workspace)
    manager.pause()
    first, second = (manager.add(str(write_config(workspace, n))) for n in ("a-model", "b-model"))
    RunFiles(workspace.run_dir(first.id)).log.write_text("first\n", encoding="utf-8")
    RunFiles(workspace.run_dir(second.id)).log.write_text("second\n", encoding="utf-8")
    source = _source(manager)
    source.board()
    assert source.run(first.id).log_lines == ("first",)
    assert source.run(second.id).log_lines == ("second",)
    assert source.run(first.id).log_lines == ("first",)  # back again: a fresh read, not None
    assert source.run(None) is None


def test_a_1gb_log_costs_one_window(workspace) -> None:
    manager = Manager.open(workspace)
    manager.pause()
    run = manager.add(str(write_config(workspace, "big-log")))
    log = RunFiles(workspace.run_dir(run.id)).log
    with open(log, "wb") as fh:
        fh.truncate(10**9)  # sparse: a gigabyte of NULs without writing one
        fh.seek(0, os.SEEK_END)
        fh.write(b"\nthe last line\n")
    source = _source(manager)
    source.board()
    snap = source.run(run.id)
    assert snap.log_lines[-1] == "the last line" and len(snap.log_lines) == 1


def test_run_progress_is_none_before_the_first_report(workspace) -> None:
    manager = Manager.open(workspace)
    manager.pause()
    run = manager.add(str(write_config(workspace, "fresh")))
    assert run_progress(run) is None


def test_a_running_run_shows_no_progress_of_the_stage_it_left(workspace) -> None:
    manager = Manager.open(workspace)
    manager.pause()
    run = manager.add(str(write_config(workspace, "between")))
    train_done = {"step": 400, "total": 400, "epoch": 16.0, "stage": "train", "ts": 1.0}
    run = manager.store.transition(run.id, RunState.RUNNING, stage="train", progress=train_done)
    assert run_progress(run).step == 400  # train's own report, while train runs
    # Train ended; infer is loading and has not reported: "infer 400/400, 100%" would be train's numbers.
    between = manager.store.update(run.id, stage="infer")
    assert run_progress(between) is None
    ended = manager.store.transition(run.id, RunState.SUCCEEDED)
    assert run_progress(ended).step == 400  # a final run keeps the last report it had
