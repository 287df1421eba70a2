"""Sweeps, priorities, dependencies and failure pauses through the real store and worker, with the
stand-in engine: a sweep run to its end and announced once with its best; three early data failures
pausing their data dir while a run on another data dir goes on, until ``resume``; ``--after`` a run
that failed; a high priority jumping the queue and ``move`` kept within a priority; kill -9 of the
worker mid-sweep; and a lost ``state.db`` rebuilt with its sweeps and priority order.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from dialsum_tui.manager.errors import DialsumError
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.runs.streaks import HELD_PREFIX
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.worker.loop import Worker
from dialsum_tui.manager.worker.run_end import announce_sweep_end
from dialsum_tui.manager.workspace.layout import Workspace

from support import wait_until

# Appends one JSON line per ping (the payload on stdin) to the file argv[1].
RECORDER = ("import sys; data = sys.stdin.read(); "
            "open(sys.argv[1], 'a', encoding='utf-8').write(data.replace('\\n', ' ') + '\\n')")


def _notify_into(ws: Workspace, path: Path) -> None:
    text = ws.settings_path.read_text(encoding="utf-8")
    ws.settings_path.write_text(text + f"notify:\n  command: {json.dumps([sys.executable, '-c', RECORDER, str(path)])}\n",
                                encoding="utf-8")


def _pings(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def _tick_until(worker: Worker, cond, timeout: float = 90.0, what: str = "the queue"):
    def step():
        worker.tick()
        return cond()

    return wait_until(step, timeout, what)


def test_a_sweep_runs_to_its_end_and_is_announced_once_with_its_best(workspace: Workspace, make_config,
                                                                      tmp_path: Path) -> None:
    pings = tmp_path / "pings.jsonl"
    _notify_into(workspace, pings)
    manager = Manager.open(workspace)
    sweep, runs = manager.add_sweep(str(make_config("kobart")), axes=["lora.r=8,16,32"])
    assert sweep.id == "s1" and [r.sweep for r in runs] == ["s1"] * 3
    worker = Worker(workspace, poll_s=0.05)
    _tick_until(worker, lambda: manager.sweep("s1").ended and len(_pings(pings)) >= 1, what="the sweep to end")
    status = manager.sweep("s1")
    assert status.progress_text == "3/3 done" and status.count(RunState.SUCCEEDED) == 3
    finals = {run.nickname: run.metrics["final"] for run in status.runs}
    assert status.best is not None and status.best.nickname == max(finals, key=finals.get)  # the fake's score
    sent = _pings(pings)
    assert [p["event"] for p in sent] == ["sweep_ended"]  # no "finished" ping per variant: one for the sweep
    assert sent[0]["run_id"] == status.best.run_id and sent[0]["sweep"]["id"] == "s1"
    assert f"best {status.best.nickname} (run {status.best.run_id})" in sent[0]["text"]
    assert announce_sweep_end(manager.store, workspace.settings(), workspace.root, status.runs[-1]) is None  # once
    rows = {row.nickname: row for row in manager.results()}
    assert rows[status.best.nickname].sweep_best and {r.sweep for r in rows.values()} == {"s1"}
    assert sum(row.sweep_best for row in rows.values()) == 1
    note = manager.handoff()
    assert "## Sweeps" in note and f"sweep s1's best is {status.best.nickname}" in note
    compared = manager.compare_sweep("s1")
    assert [row.key for row in compared.config_diff] == ["lora.r"] and len(compared.runs) == 3


def test_three_early_data_failures_pause_their_data_dir_only_until_resume(workspace: Workspace, make_config,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pings = tmp_path / "pings.jsonl"
    _notify_into(workspace, pings)
    shutil.copytree(workspace.data_dir, workspace.root / "data2")
    bad = [f"bad-r{r}" for r in (8, 16, 32, 64)]
    monkeypatch.setenv("FAKE_FAIL", ",".join(f"{nick}/train:data" for nick in bad))
    manager = Manager.open(workspace)
    _sweep, runs = manager.add_sweep(str(make_config("bad")), axes=["lora.r=8,16,32,64"], action="train")
    other = manager.add(str(make_config("other", data={"dir": "data2"})), action="train")
    worker = Worker(workspace, poll_s=0.05)
    last = runs[-1].id
    _tick_until(worker, lambda: manager.get(other.id).state.is_final and manager.get(last).state is RunState.WAITING,
                what="the streak to pause run 4 and the other data dir's run to finish")
    assert [manager.get(r.id).state for r in runs[:3]] == [RunState.FAILED] * 3
    assert manager.get(other.id).state is RunState.SUCCEEDED  # another data dir: not held
    held = manager.get(last)
    assert held.reason.startswith(HELD_PREFIX) and "data dir" in held.reason and "(data)" in held.reason
    [pause] = manager.failure_pauses()
    assert pause.runs == tuple(r.id for r in runs[:3]) and pause.kind == "data"
    assert any("queue paused for data dir" in line for line in manager.attention())  # check exits 1
    assert held.id not in [r.id for r in manager.held_by_guards()]  # a pause, not a guard
    paused = wait_until(lambda: [p for p in _pings(pings) if p["event"] == "paused"], what="the paused ping")
    assert len(paused) == 1 and paused[0]["pause"]["runs"] == list(pause.runs)
    for _ in range(5):  # it stays held while nobody resumes
        worker.tick()
    assert manager.get(last).state is RunState.WAITING
    manager.resume()
    assert manager.failure_pauses() == []
    _tick_until(worker, lambda: manager.get(last).state.is_final, what="run 4 after resume")
    assert manager.get(last).state is RunState.FAILED and manager.failure_pauses() == []  # one failure since


def test_after_a_run_that_failed_cancels_with_the_reason_and_add_refuses_it_then(workspace: Workspace, make_config,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "dep/train:oom")
    manager = Manager.open(workspace)
    dep = manager.add(str(make_config("dep")), action="train")
    child = manager.add(str(make_config("child")), action="train", after=dep.id)
    worker = Worker(workspace, poll_s=0.05)
    _tick_until(worker, lambda: manager.get(child.id).state.is_final, what="the dependent run to end")
    done = manager.get(child.id)
    assert done.state is RunState.CANCELLED and done.started_at is None
    assert f"run {dep.id} (dep), which it was to start after, ended failed (oom)" in done.reason
    assert f"`dialsum-tui retry {dep.id}`" in done.reason
    with pytest.raises(DialsumError, match=f"--after {dep.id}: run {dep.id} \\(dep\\) ended failed \\(oom\\)"):
        manager.add(str(make_config("late")), after=dep.id)


def test_high_priority_jumps_the_waiting_queue_and_move_stays_within_a_priority(workspace: Workspace,
                                                                                 make_config) -> None:
    manager = Manager.open(workspace)
    manager.pause()
    a, b = (manager.add(str(make_config(n)), action="train") for n in ("a", "b"))
    low = manager.add(str(make_config("low")), action="train", priority="low")
    high = manager.add(str(make_config("high")), action="train", priority="high")
    _sweep, swept = manager.add_sweep(str(make_config("s")), seeds=2, action="train", priority="high")
    order = [r.id for r in manager.pending()]
    assert order == [high.id, *[r.id for r in swept], a.id, b.id, low.id]
    assert [r.id for r in manager.runs()] == order  # ls and the worker read the same order
    assert [r.id for r in manager.move_to(b.id, position=1)] == [high.id, *[r.id for r in swept], b.id, a.id, low.id]
    with pytest.raises(DialsumError, match="has normal priority: it moves among positions 4-5"):
        manager.move_to(a.id, before=high.id)
    manager.move(low.id, -10)  # the TUI's one step at a time: stops at the edge of its priority
    assert [r.id for r in manager.pending()][-1] == low.id
    manager.resume()
    worker = Worker(workspace, poll_s=0.05)
    _tick_until(worker, lambda: manager.get(high.id).started_at is not None, what="the high-priority run to start")
    assert manager.get(a.id).started_at is None


def test_a_sweep_survives_kill_minus_9_of_its_worker(workspace: Workspace, make_config, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pings, pids = tmp_path / "pings.jsonl", tmp_path / "pids"
    _notify_into(workspace, pings)
    monkeypatch.setenv("FAKE_STEPS", "40")  # 2 s a stage: time to kill the worker mid-run
    monkeypatch.setenv("FAKE_PID_FILE", str(pids))
    manager = Manager.open(workspace)
    sweep, runs = manager.add_sweep(str(make_config("k9")), seeds=3, action="train")
    manager.ensure_worker()
    wait_until(lambda: manager.get(runs[0].id).pid, what="the first variant running")
    _running, worker_pid = manager.worker_status()
    os.kill(worker_pid, signal.SIGKILL)
    wait_until(lambda: not manager.worker_status()[0], what="the worker gone")
    manager.ensure_worker()  # re-adopts the running stage, then goes on with the sweep
    try:
        wait_until(lambda: manager.sweep(sweep.id).ended and _pings(pings), timeout=120, what="the sweep to end")
    finally:
        manager.stop_worker()
    assert [manager.get(r.id).state for r in runs] == [RunState.SUCCEEDED] * 3
    launched = pids.read_text(encoding="utf-8").split("\n")
    assert sorted(line.split()[1] for line in launched if line) == ["train"] * 3  # each stage started once
    assert [p["event"] for p in _pings(pings)] == ["sweep_ended"]


def test_a_rebuilt_store_recovers_the_sweep_and_the_priority_order(workspace: Workspace, make_config) -> None:
    manager = Manager.open(workspace)
    manager.pause()
    sweep, runs = manager.add_sweep(str(make_config("k")), axes=["train.learning_rate=1e-4,2e-4,3e-4"],
                                    action="train", priority="low")
    plain = manager.add(str(make_config("plain")), action="train")
    high = manager.add(str(make_config("high")), action="train", priority="high")
    manager.cancel(runs[1].id)
    before = manager.sweep(sweep.id)
    manager.store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{workspace.db_path}{suffix}").unlink(missing_ok=True)
    rebuilt = Manager.open(workspace)
    assert rebuilt.rebuilt is not None and rebuilt.is_paused()  # nothing restarts unasked
    after = rebuilt.sweep(sweep.id)
    assert after.sweep.keys == before.sweep.keys and after.sweep.variants == before.sweep.variants
    assert after.sweep.config_path == before.sweep.config_path and after.members == before.members
    assert [r.state for r in after.runs] == [RunState.QUEUED, RunState.CANCELLED, RunState.QUEUED]
    assert [r.id for r in rebuilt.pending()] == [high.id, plain.id, runs[0].id, runs[2].id]
    assert {r.priority for r in after.runs} == {-1}
    nxt, _ = rebuilt.add_sweep(str(make_config("k2")), seeds=2, action="train")
    assert nxt.id == "s2"  # ids go on after the recovered ones
