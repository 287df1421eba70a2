"""The CLI when something is wrong: a run that failed at the preflight (``logs`` prints its failure,
``ls`` leads with the cause), a resume of a training that finished (refused with the reason), ``check``
while a guard holds a run or the worker is stalled (exit 1), and ``repair``/``worker stop`` on a
broken store. Real SQLite, the detached worker or a real in-process one, the CLI's ``main``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from dialsum_tui.cli import main
from dialsum_tui.manager.demo import broken_dev_csv
from dialsum_tui.manager.guards import disk
from dialsum_tui.manager.guards.gpu import NoGpuSource
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.worker import Worker
from dialsum_tui.manager.worker.health import health_path
from dialsum_tui.manager.workspace.layout import Workspace
from dialsum_tui.manager.workspace.lock import WorkerLock
from engine.contract import ExitCode

from support import drive, wait_until


@pytest.fixture
def cli(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> Iterator:
    """``cli(*args)`` → (exit code, stdout, stderr) of ``dialsum-tui --workspace WS ARGS``."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--workspace", str(workspace.root), *args])
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    Manager.open(workspace).stop_worker()


def test_a_run_that_failed_at_the_preflight_shows_its_cause_in_logs_and_ls(workspace: Workspace, make_config,
                                                                           cli) -> None:
    mgr = Manager.open(workspace)
    run = mgr.add(str(make_config("broken")), action="train")
    text, line, _fname = broken_dev_csv(workspace.data_dir / "dev.csv", row=1)  # a hand edit while it waits
    (workspace.data_dir / "dev.csv").write_text(text, encoding="utf-8")
    mgr.ensure_worker()
    failed = wait_until(lambda: (r := mgr.get(run.id)).state.is_final and r, what="the preflight's verdict")
    assert failed.state is RunState.FAILED and failed.failure_message.startswith("preflight before train:")
    assert not mgr.log_path(run.id).exists()  # its stage never began: no run.log

    code, out, err = cli("logs", str(run.id))
    assert code == ExitCode.OK and "no log yet" not in out + err
    first = out.splitlines()[0]
    assert first.startswith(f"run {run.id} (broken) failed in train (data): ") and f"line {line}" in first
    assert "preflight before train:" not in first and "hint: the data files" in out

    body = json.loads(cli("logs", str(run.id), "--json")[1])
    assert body["exists"] is False and body["lines"] == [] and body["failure"]["kind"] == "data"
    assert body["failure"]["headline"] == first.split("(data): ", 1)[1]

    _code, listed, _err = cli("ls")
    row = next(r for r in listed.splitlines() if r.startswith(str(run.id)))
    shown = row.split("failed(data)", 1)[1].strip().removesuffix("…")
    assert len(shown) > 10 and body["failure"]["headline"].startswith(shown)  # the cause, cut to fit
    assert "preflight before" not in listed
    assert json.loads(cli("ls", "--json")[1])[0]["note"] == body["failure"]["headline"]


def test_resume_of_a_training_that_finished_is_refused(workspace: Workspace, make_config, cli,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SAVE_STEPS", "5")  # the runs leave complete checkpoints a resume could take
    monkeypatch.setenv("FAKE_FAIL", "late/infer:crash")
    mgr = Manager.open(workspace)
    done = mgr.add(str(make_config("done")), action="train")
    late = mgr.add(str(make_config("late")))
    mgr.ensure_worker()
    wait_until(lambda: mgr.get(done.id).state.is_final and mgr.get(late.id).state.is_final, what="both verdicts")
    assert mgr.get(done.id).state is RunState.SUCCEEDED and mgr.get(late.id).failed_stage == "infer"

    code, out, err = cli("retry", str(done.id), "--resume")
    assert code == ExitCode.BAD_INPUT and "resuming from" not in out
    assert f"run {done.id} succeeded, its training finished; there is nothing to resume" in err
    assert f"`dialsum-tui retry {done.id}` trains again" in err
    code, out, err = cli("retry", str(late.id), "--resume", "--json")
    assert code == ExitCode.BAD_INPUT and json.loads(out)["exit_code"] == 2
    assert "stopped in infer" in err and f"`dialsum-tui retry {late.id} --action infer`" in err
    assert [r.id for r in mgr.runs()] == [done.id, late.id]  # nothing was queued


def test_check_exits_1_while_a_guard_holds_a_run(workspace: Workspace, make_config, cli) -> None:
    mgr = Manager.open(workspace)
    worker = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    assert worker.lock.acquire()  # a worker is up (this process): `check` has nothing else to say
    try:
        disk.write_cache(workspace, disk.measure(workspace))
        code, out, _err = cli("check")
        assert code == ExitCode.OK, out
        workspace.settings_path.write_text("quota_gb: 0.2\nmargin_gb: 0.01\ngpu_grace_s: 0\ngpu_samples: 1\n",
                                           encoding="utf-8")
        disk.write_cache(workspace, disk.measure(workspace))
        run = mgr.add(str(make_config("m")), action="train")
        held = drive(worker, mgr, run.id, lambda r: r.state is RunState.WAITING)
        code, out, _err = cli("check")
        assert code == ExitCode.ERROR and f"held by a guard: run {run.id} (m): needs ~" in out
        code, out, _err = cli("check", "--json")
        body = json.loads(out)
        assert code == ExitCode.ERROR and body["attention"] == []
        assert body["held"] == [{"id": run.id, "nickname": "m", "reason": held.reason}]
        mgr.pause()  # waiting on the pause is not a guard's hold
        drive(worker, mgr, run.id, lambda r: r.reason and "paused" in r.reason)
        assert cli("check")[0] == ExitCode.OK
    finally:
        worker.lock.release()


def test_check_and_worker_status_exit_1_when_the_worker_is_stalled(workspace: Workspace, cli) -> None:
    lock = WorkerLock(workspace.lock_path)
    assert lock.acquire()  # the lock is held (by this process) but nothing beats
    try:
        disk.write_cache(workspace, disk.measure(workspace))
        health = health_path(workspace)
        health.write_text(json.dumps({"pid": os.getpid(), "beat": time.time(), "ailments": []}), encoding="utf-8")
        assert cli("check")[0] == ExitCode.OK  # a fresh heartbeat
        health.write_text(json.dumps({"pid": os.getpid(), "beat": time.time() - 3600, "ailments": []}),
                          encoding="utf-8")
        code, out, _err = cli("check", "--json")
        body = json.loads(out)
        assert code == ExitCode.ERROR and body["worker"]["stalled"] is True
        assert body["worker"]["heartbeat_age_s"] >= 3600
        assert any(line.startswith("worker stalled: ") for line in body["attention"])
        code, out, _err = cli("worker", "status")
        assert code == ExitCode.ERROR and "needs attention: worker stalled" in out
    finally:
        lock.release()


def test_repair_and_worker_stop_need_no_store(workspace: Workspace, make_config, cli) -> None:
    mgr = Manager.open(workspace)
    mgr.pause()
    mgr.add(str(make_config("m")), action="train")
    mgr.store.close()
    workspace.db_path.write_bytes(b"not a database at all" * 100)
    for name in ("-wal", "-shm"):
        workspace.db_path.with_name(workspace.db_path.name + name).unlink(missing_ok=True)
    code, _out, err = cli("ls")
    assert code == ExitCode.BAD_INPUT and "dialsum-tui repair" in err
    code, out, _err = cli("worker", "stop", "--json")
    assert code == ExitCode.OK and json.loads(out) == {"op": "stop", "stopped": False, "pid": None}
    code, out, _err = cli("repair", "--json")
    body = json.loads(out)
    assert code == ExitCode.OK and body["repaired"] is True and body["runs"] == 1
    assert body["backup"] and os.path.exists(body["backup"])
    assert [r["nickname"] for r in json.loads(cli("ls", "--json")[1])] == ["m"]
