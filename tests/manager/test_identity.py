"""Artifacts keyed by run: Korean nicknames, namesakes, unusable nicknames, and infer/evaluate-only
runs that read the run they came from. Real stage processes (the fake engine), real SQLite."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dialsum_tui.manager.guards.gpu import NoGpuSource
from dialsum_tui.manager.runs.identity import model_key, predictions_key, run_key
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.store.database import Store
from dialsum_tui.manager.worker.loop import Worker
from dialsum_tui.manager.workspace.layout import Workspace
from engine.artifacts import (
    NICKNAME_MAX_CHARS,
    dev_predictions_path,
    final_model_dir,
    is_complete_model,
    read_final_model_meta,
    submission_path,
)

from support import drive, final

CLI = [sys.executable, "-m", "dialsum_tui"]
STATE_V1 = Path(__file__).resolve().parents[1] / "fixtures" / "state" / "state-v1.db"


@pytest.fixture
def manager(workspace: Workspace) -> Manager:
    return Manager.open(workspace)


def _files(ws: Workspace, key: str) -> tuple[Path, Path, Path]:
    return (final_model_dir(ws.checkpoints_dir, key), submission_path(ws.submissions_dir, key),
            dev_predictions_path(ws.submissions_dir, key))


def test_korean_nicknames_never_share_a_checkpoint_or_a_submission(workspace: Workspace, make_config,
                                                                  manager: Manager) -> None:
    worker = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    runs = [manager.add(str(make_config(nick))) for nick in ("코바트", "라마")]
    done = [drive(worker, manager, r.id, final) for r in runs]
    assert [r.state for r in done] == [RunState.SUCCEEDED, RunState.SUCCEEDED]
    keys = [run_key(r) for r in done]
    assert keys == [f"코바트-r{runs[0].id}", f"라마-r{runs[1].id}"]  # Hangul kept, the run id appended
    for run, key in zip(done, keys, strict=True):
        model, submission, dev = _files(workspace, key)
        assert is_complete_model(model) and submission.is_file() and dev.is_file()
        assert read_final_model_meta(model)["nickname"] == run.nickname
    assert not (workspace.checkpoints_dir / "run").exists()
    rows = {row.nickname: row for row in manager.results()}
    assert rows["코바트"].run_id == runs[0].id and rows["라마"].run_id == runs[1].id
    assert rows["코바트"].final != rows["라마"].final  # each its own evaluation (the fake scores per nickname)


def test_two_runs_of_one_nickname_keep_their_own_files(workspace: Workspace, make_config, manager: Manager) -> None:
    worker = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    first = drive(worker, manager, manager.add(str(make_config("koBART"))).id, final)
    model, submission, _dev = _files(workspace, run_key(first))
    written = (read_final_model_meta(model)["written_at"], submission.stat().st_mtime_ns)
    second = drive(worker, manager, manager.retry(first.id).id, final)
    assert second.state is RunState.SUCCEEDED and run_key(second) != run_key(first)
    assert is_complete_model(_files(workspace, run_key(second))[0])
    assert (read_final_model_meta(model)["written_at"], submission.stat().st_mtime_ns) == written  # untouched


def test_infer_and_evaluate_only_retries_read_the_run_they_came_from(workspace: Workspace, make_config,
                                                                     manager: Manager,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NEED_MODEL", "1")  # the fake's infer fails unless its --model-key model is complete
    worker = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    trained = drive(worker, manager, manager.add(str(make_config("라마")), action="train").id, final)
    inferred = manager.retry(trained.id, action="infer")
    assert (inferred.source_run, inferred.model_key) == (trained.id, run_key(trained))
    inferred = drive(worker, manager, inferred.id, final)
    assert inferred.state is RunState.SUCCEEDED, inferred.failure_message
    _model, submission, dev = _files(workspace, run_key(inferred))  # it writes its own files
    assert submission.is_file() and dev.is_file()
    scored = manager.retry(inferred.id, action="evaluate")
    assert scored.predictions_key == run_key(inferred) and scored.model_key == run_key(trained)
    scored = drive(worker, manager, scored.id, final)
    assert scored.state is RunState.SUCCEEDED
    log = manager.log_path(scored.id).read_text(encoding="utf-8")
    assert str(dev) in log  # evaluate was handed the source run's dev predictions
    # `add --action infer` with no source loads the nickname's newest complete model.
    added = manager.add(str(make_config("라마")), action="infer")
    assert added.source_run is not None and model_key(added) == run_key(trained)


@pytest.mark.parametrize(("nickname", "says"), [
    ("", "empty"),
    ("가" * 300, f"at most {NICKNAME_MAX_CHARS}"),
    ("team/llama", "path separator"),
    ("llama\tbf16", "control character"),
    ("///", "path separator"),
    ("...", "no letter or digit"),
])
def test_an_unusable_nickname_is_refused_at_add_with_exit_2(workspace: Workspace, nickname: str, says: str) -> None:
    path = workspace.configs_dir / "bad-nick.yaml"
    tree = {"model": {"name_or_path": "models/tiny", "nickname": nickname, "kind": "seq2seq"}, "train": {"device": "cpu"}}
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    done = subprocess.run([*CLI, "--workspace", str(workspace.root), "add", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and says in done.stderr and "model.nickname" in done.stderr
    assert "Traceback" not in done.stderr
    assert Manager.open(workspace).runs() == []


def test_a_long_korean_nickname_at_the_limit_trains(workspace: Workspace, manager: Manager) -> None:
    nick = "요약" * (NICKNAME_MAX_CHARS // 2)  # 64 Hangul = 192 bytes; with -r<id>_dev_predictions.csv < 255
    queued = manager.add(str(_config(workspace, nick)))
    run = drive(Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource()), manager, queued.id, final)
    assert run.state is RunState.SUCCEEDED, run.failure_message
    assert all(p.exists() for p in _files(workspace, run_key(run)))


def _config(ws: Workspace, nickname: str) -> Path:
    path = ws.configs_dir / "long.yaml"
    tree = {"model": {"name_or_path": "models/tiny", "nickname": nickname, "kind": "seq2seq"}, "train": {"device": "cpu"}}
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def test_runs_of_an_old_store_keep_reading_the_old_layout(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    shutil.copyfile(STATE_V1, db)
    with sqlite3.connect(db) as conn:
        before = {row[0]: (row[1], row[2]) for row in conn.execute("SELECT id, nickname, state FROM runs")}
    store = Store(db)
    for run in store.list():
        nick, state = before[run.id]
        if state in ("queued", "waiting"):  # not started yet: it will write its own <slug>-r<id> files
            assert run.model_key is None and model_key(run) == run_key(run)
        else:  # written before run keys: checkpoints/<nickname>/ as the old release cleaned it
            assert model_key(run) == predictions_key(run) and "-r" not in model_key(run)
    store.close()
