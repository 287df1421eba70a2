"""The SQLite store: state machine, queue order, cancel, pause, and concurrent writers."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dialsum_tui.manager.models import Action, RunState
from dialsum_tui.manager.store import IllegalTransition, RunNotFound, Store


def _add(store: Store, nick: str = "m", **kw) -> int:
    return store.add(nickname=nick, config_path=f"{nick}.yaml", config_yaml="model: {}\n", action="pipeline", **kw).id


def test_add_get_list_in_queue_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    ids = [_add(store, n) for n in ("a", "b", "c")]
    runs = store.list()
    assert [r.id for r in runs] == ids
    assert all(r.state is RunState.QUEUED and r.action is Action.PIPELINE for r in runs)
    assert store.get(ids[1]).nickname == "b"
    assert stat.S_IMODE((tmp_path / "state.db").stat().st_mode) == 0o600
    with pytest.raises(RunNotFound, match="no run 999"):
        store.get(999)
    with pytest.raises(RunNotFound):
        _add(store, "d", after=999)


def test_state_machine_refuses_illegal_transitions(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    rid = _add(store)
    run = store.transition(rid, RunState.RUNNING, stage="train", pid=123, pid_start_time=1.5)
    assert run.started_at is not None and run.pid == 123 and run.stage == "train"
    run = store.transition(rid, RunState.FAILED, failure_kind="oom", exit_code=1)
    assert run.finished_at is not None and run.failure_kind == "oom"
    with pytest.raises(IllegalTransition, match="cannot go from failed to running"):
        store.transition(rid, RunState.RUNNING)
    with pytest.raises(ValueError, match="no updatable field"):
        store.update(rid, colour="red")


def test_progress_and_metrics_round_trip_as_json(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    rid = _add(store, "한국어-모델")
    store.update(rid, progress={"step": 3, "total": 10}, metrics={"final": 41.5, "tokenizer": "mecab"})
    reopened = Store(tmp_path / "s.db").get(rid)
    assert reopened.progress == {"step": 3, "total": 10}
    assert reopened.metrics["tokenizer"] == "mecab"
    assert reopened.nickname == "한국어-모델"


def test_move_reorders_only_pending_runs(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    a, b, c = (_add(store, n) for n in "abc")
    store.transition(a, RunState.RUNNING)
    store.move(c, -5)
    assert [r.id for r in store.list() if r.state is RunState.QUEUED] == [c, b]
    with pytest.raises(ValueError, match="only queued or waiting"):
        store.move(a, 1)


def test_cancel_pending_is_immediate_running_is_flagged(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    pending, running = _add(store), _add(store)
    store.transition(running, RunState.RUNNING)
    assert store.request_cancel(pending).state is RunState.CANCELLED
    flagged = store.request_cancel(running)
    assert flagged.state is RunState.RUNNING and flagged.cancel_requested


def test_paused_flag_persists(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    assert not store.paused()
    store.set_paused(True)
    assert Store(tmp_path / "s.db").paused()
    store.set_paused(False)
    assert not store.paused()


_ADDER = """
import sys
from dialsum_tui.manager.store import Store
store = Store(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.add(nickname=f"{sys.argv[2]}-{i}", config_path="c.yaml", config_yaml="x", action="train")
"""


def test_two_processes_adding_at_once_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    Store(db)  # create the schema first, as `init` does
    n = 25
    procs = [subprocess.Popen([sys.executable, "-c", _ADDER, str(db), who, str(n)]) for who in ("p", "q")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    runs = Store(db).list()
    assert len(runs) == 2 * n
    assert len({r.id for r in runs}) == 2 * n
    assert len({r.position for r in runs}) == 2 * n  # BEGIN IMMEDIATE: no two got the same place
    assert {r.nickname for r in runs} == {f"{w}-{i}" for w in "pq" for i in range(n)}
