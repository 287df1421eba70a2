"""A stage is launched at most once, whatever happens to the worker between spawn and record.

The worker records a launch intent (stage, token, events offset) before it spawns; these tests stop
the worker right there — after the process exists, before its pid is on record — and start a new
worker, as a SIGSTOP or kill -9 followed by a restart would.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dialsum_tui.manager.guards.gpu import NoGpuSource
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.worker import loop
from dialsum_tui.manager.worker.loop import Worker
from dialsum_tui.manager.workspace.layout import Workspace

from support import drive, final, wait_until

REAL_START = loop.start_stage


class WorkerDied(BaseException):
    """The worker vanished (kill -9) right after spawning a stage."""


def _die_after_spawn(monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    real = REAL_START

    def spawn_then_die(ws, run, which, *args, **kwargs):
        handle = real(ws, run, which, *args, **kwargs)
        if which == stage:
            raise WorkerDied(which)
        return handle

    monkeypatch.setattr(loop, "start_stage", spawn_then_die)


def _worker_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "start_stage", REAL_START)


def _tick_until_it_dies(worker: Worker, timeout: float = 120.0) -> None:
    """Tick like the worker's loop until the spawn it dies at (a loaded machine takes its time)."""
    deadline = time.monotonic() + timeout
    with pytest.raises(WorkerDied):
        while time.monotonic() < deadline:
            worker.tick()
            time.sleep(0.02)


def _started(manager: Manager, run_id: int, stage: str) -> int:
    return sum(1 for e in manager.events(run_id) if e.event == "started" and e.command == stage)


def test_a_stage_spawned_but_not_recorded_is_readopted_not_launched_again(
        workspace: Workspace, make_config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    monkeypatch.setenv("FAKE_GATE", str(gate))  # train waits at its end until we have looked
    manager = Manager.open(workspace)
    run = manager.add(str(make_config("m")))
    _die_after_spawn(monkeypatch, "train")
    _tick_until_it_dies(Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource()))
    left = manager.get(run.id)
    assert left.state is RunState.RUNNING and left.pid is None and left.launch["stage"] == "train"
    _worker_back(monkeypatch)

    second = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    second.reconcile()
    adopted = manager.get(run.id)
    assert adopted.pid is not None and run.id in second.active  # found by its launch token
    wait_until(lambda: _started(manager, run.id, "train") == 1, what="train's started event")
    gate.touch()
    done = drive(second, manager, run.id, final)
    assert done.state is RunState.SUCCEEDED, done.failure_message
    assert _started(manager, run.id, "train") == 1  # launched once


def test_a_stage_that_ran_while_no_worker_watched_is_judged_from_all_its_events(
        workspace: Workspace, make_config, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = Manager.open(workspace)
    run = manager.add(str(make_config("m")))  # train and infer as usual; the worker dies at evaluate
    _die_after_spawn(monkeypatch, "evaluate")
    _tick_until_it_dies(Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource()))
    # The stage finishes on its own: every event it writes lands while no worker is there.
    wait_until(lambda: any(e.event in ("finished", "failed") and e.command == "evaluate"
                           for e in manager.events(run.id)), what="the evaluate stage to end")
    _worker_back(monkeypatch)
    restarted = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    restarted.reconcile()
    done = drive(restarted, manager, run.id, final)
    finished = any(e.event == "finished" and e.command == "evaluate" for e in manager.events(run.id))
    assert done.state is (RunState.SUCCEEDED if finished else RunState.FAILED)
    assert done.failure_kind != "unknown", done.failure_message
    assert _started(manager, run.id, "evaluate") == 1


def test_a_stage_whose_worker_died_before_the_spawn_starts_once(
        workspace: Workspace, make_config, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = Manager.open(workspace)
    run = manager.add(str(make_config("m")), action="train")

    def die_before_spawn(*_args, **_kwargs):
        raise WorkerDied("train")

    monkeypatch.setattr(loop, "start_stage", die_before_spawn)
    _tick_until_it_dies(Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource()))
    assert manager.get(run.id).launch["stage"] == "train"
    _worker_back(monkeypatch)
    restarted = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    restarted.reconcile()
    done = drive(restarted, manager, run.id, final)
    assert done.state is RunState.SUCCEEDED and _started(manager, run.id, "train") == 1
