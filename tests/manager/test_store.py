"""The SQLite store: state machine, queue order, cancel, pause, and concurrent writers."""

from __future__ import annotations

import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dialsum_tui.manager.runs.models import Action, RunState
from dialsum_tui.manager.store import database as store_module
from dialsum_tui.manager.store.database import SCHEMA_VERSION, IllegalTransition, RunNotFound, Store, StoreTooNew


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
from dialsum_tui.manager.store.database import Store
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


# --- schema versions ------------------------------------------------------------------------------

STATE_V1 = Path(__file__).resolve().parents[1] / "fixtures" / "state" / "state-v1.db"


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def test_a_store_from_before_versions_migrates_with_every_run_intact(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    shutil.copyfile(STATE_V1, db)
    assert _user_version(db) == 0  # written by the schema before user_version existed
    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION
    runs = {run.id: run for run in store.list()}
    assert [run.id for run in store.list()] == [1, 2, 3, 8, 4, 6, 7, 5]  # queue order kept (8 was moved first)
    assert {rid: run.state for rid, run in runs.items()} == {
        1: RunState.SUCCEEDED, 2: RunState.FAILED, 3: RunState.RUNNING, 4: RunState.WAITING, 5: RunState.QUEUED,
        6: RunState.CANCELLED, 7: RunState.INTERRUPTED, 8: RunState.QUEUED}
    done = runs[1]
    assert done.nickname == "koBART-summarization" and done.action is Action.PIPELINE and done.exit_code == 0
    assert done.metrics["final"] == 46.85 and done.metrics["tokenizer"] == "mecab"
    assert done.progress["step"] == 780 and done.started_at and done.finished_at >= done.started_at
    assert "nickname: koBART-summarization" in done.config_yaml
    oom = runs[2]
    assert (oom.failure_kind, oom.failed_stage, oom.gpus) == ("oom", "train", "0")
    assert "CUDA out of memory" in oom.failure_message and oom.failure_hint
    running = runs[3]
    assert (running.pid, running.pid_start_time, running.gpus) == (4900, 1764000200.0, "0,1")
    assert running.progress == {"step": 60, "total": 780, "epoch": 0.23, "eta_s": 3725.0, "tokens_per_s": 5123.0}
    assert runs[4].nickname == "요약-모델-kobart" and "GPU 0" in runs[4].reason
    assert (runs[5].action, runs[5].after) == (Action.INFER, 1)
    assert runs[6].cancel_requested and runs[6].finished_at
    assert store.paused()
    # The migrated store goes on working: a new run gets the next id, the queue still moves.
    rid = _add(store, "after-migration")
    assert rid == 9 and store.get(rid).position > max(run.position for run in runs.values())
    store.close()
    assert _user_version(db) == SCHEMA_VERSION
    assert [run.id for run in Store(db).list()][-1] == 9  # reopening a current store changes nothing


def test_a_new_store_starts_at_the_current_version(tmp_path: Path) -> None:
    Store(tmp_path / "state.db").close()
    assert _user_version(tmp_path / "state.db") == SCHEMA_VERSION


def test_a_store_from_a_newer_release_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    shutil.copyfile(STATE_V1, db)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreTooNew, match=r"newer than this dialsum-tui knows .*Upgrade dialsum-tui"):
        Store(db)
    assert _user_version(db) == SCHEMA_VERSION + 1
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 8
    conn.close()


def test_migrations_run_in_order_and_a_failed_step_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "state.db"
    shutil.copyfile(STATE_V1, db)
    real = len(store_module.MIGRATIONS)
    probe = ("ALTER TABLE runs ADD COLUMN probe TEXT", "UPDATE runs SET probe = 'kim'")
    broken = ("ALTER TABLE runs ADD COLUMN team TEXT", "UPDATE runs SET no_such_column = 1")
    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, probe, broken))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(store_module.MIGRATIONS))
    with pytest.raises(sqlite3.OperationalError, match="no_such_column"):
        Store(db)
    assert _user_version(db) == 0  # one transaction: every step was rolled back with the broken last one
    conn = sqlite3.connect(db)
    assert "probe" not in [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    conn.close()
    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS[:real + 1],))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", real + 1)
    store = Store(db)
    assert store.schema_version() == real + 1
    with store._lock:
        users = {row[0] for row in store._conn.execute("SELECT probe FROM runs")}
    assert users == {"kim"}


def test_old_runs_have_no_user_and_new_runs_record_who_queued_them(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    shutil.copyfile(STATE_V1, db)
    store = Store(db)
    assert all(run.user is None for run in store.list())  # queued before users were recorded
    rid = store.add(nickname="요약", config_path="c.yaml", config_yaml="{}", action="pipeline", user="kim").id
    assert store.get(rid).user == "kim"
    store.close()
