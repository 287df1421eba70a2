"""Faults and the answers they get (docs/faults.md): a settings typo, an unmeasurable disk, a stale
measurement, a worker gone while a run is cancelled, kill -9 of a stage and of the worker's parent's
child, a full disk mid-checkpoint, bad paths on the command line. Real processes, real SQLite."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from dialsum_tui.manager.guards import disk
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace.layout import Workspace
from engine import artifacts
from engine.artifacts import atomic_write_text
from engine.contract import FailureKind, RunFiles

from support import CLI, run_cli, stop_workers_of, wait_until

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(workspace: Workspace) -> Iterator[Cli]:
    """Run ``dialsum-tui --workspace WS ARGS`` (exit status checked only when asked); stops workers after."""

    def run(*args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        return run_cli(workspace, *args, expect=expect, timeout=90)

    yield run
    stop_workers_of(workspace.root)


def _worker_log(ws: Workspace) -> str:
    return ws.worker_log.read_text(encoding="utf-8")


def _queue_then_edit_settings(ws: Workspace, make_config, cli: Cli, line: str) -> tuple[Manager, int, str]:
    """A run queued behind a pause, ``line`` appended to settings.yaml, the queue resumed; returns the
    manager, the worker's pid and the settings text as it was before the edit."""
    mgr = Manager.open(ws)
    cli("pause")
    cli("add", str(make_config("m")), "--action", "train")
    _, pid = mgr.worker_status()
    good = ws.settings_path.read_text(encoding="utf-8")
    ws.settings_path.write_text(good + line, encoding="utf-8")
    cli("resume")
    return mgr, pid, good


def test_a_settings_typo_holds_the_queue_says_why_and_fixing_it_recovers_without_a_restart(
        workspace: Workspace, make_config, cli: Cli) -> None:
    mgr, pid, good = _queue_then_edit_settings(workspace, make_config, cli, "quota_gbb: 10\n")
    waiting = wait_until(lambda: (r := mgr.get(1)).state is RunState.WAITING and "quota is unknown" in (r.reason or "")
                         and r, what="the run held by the unknown quota")
    assert "quota_gbb" in waiting.reason and "settings.yaml" in waiting.reason
    check = cli("check", expect=1)
    assert "needs attention: worker settings:" in check.stdout and "quota_gbb" in check.stdout
    status = cli("worker", "status", expect=1)
    assert f"worker running (pid {pid})" in status.stdout and "quota_gbb" in status.stdout
    assert "health: settings:" in _worker_log(workspace)
    # A worker (re)started on the broken file starts all the same, and says why it admits nothing.
    cli("worker", "stop")
    cli("worker", "start")
    _, pid = mgr.worker_status()
    assert "quota_gbb" in cli("worker", "status", expect=1).stdout
    # fixed, saved the way editors save (write aside, rename): a reader never sees a half-written file
    atomic_write_text(workspace.settings_path, good + "quota_gb: 10\n")
    done = wait_until(lambda: (r := mgr.get(1)).state.is_final and r, what="the run after the fix")
    assert done.state is RunState.SUCCEEDED and mgr.worker_status() == (True, pid)  # the same worker
    # measured against the fixed quota (the meter re-measures on the change and every disk_refresh_s)
    wait_until(lambda: disk.read_cached(workspace).limit_bytes == 10 * 10**9, what="a measurement against quota_gb: 10")
    cli("check")  # all well again: exit 0
    assert "health: settings recovered" in _worker_log(workspace)


def test_an_unmeasurable_disk_admits_nothing_and_the_disk_thread_lives_on(workspace: Workspace, make_config,
                                                                         cli: Cli) -> None:
    # A quota tree that is not there (an unmounted volume): du cannot measure it.
    mgr, pid, good = _queue_then_edit_settings(workspace, make_config, cli, "quota_path: /nonexistent-volume\n")
    waiting = wait_until(lambda: (r := mgr.get(1)).state is RunState.WAITING and "cannot be measured" in (r.reason or "")
                         and r, what="the run held by the unmeasurable disk")
    assert "nothing new starts" in waiting.reason
    assert "needs attention: worker disk: " in cli("check", expect=1).stdout
    workspace.settings_path.write_text(good, encoding="utf-8")
    assert wait_until(lambda: (r := mgr.get(1)).state.is_final and r).state is RunState.SUCCEEDED
    assert mgr.worker_status() == (True, pid)
    assert "disk measurement failed" in _worker_log(workspace) and "health: disk recovered" in _worker_log(workspace)


def test_check_shows_the_measurements_age_and_exits_1_when_stale_down_or_over_quota(workspace: Workspace,
                                                                                   cli: Cli) -> None:
    usage = disk.measure(workspace)
    usage.measured_at = time.time() - 600  # ten minutes old, and no worker to refresh it
    disk.write_cache(workspace, usage)
    asked = time.time()
    out = cli("check", expect=1).stdout
    age = int(re.search(r"measured (\d+)s ago", out).group(1))
    assert 600 <= age <= 601 + (time.time() - asked)  # the age when check ran, however slow the machine
    assert "needs attention: worker not running" in out and "disk guard: the last disk measurement is" in out
    data = json.loads(cli("check", "--json", expect=1).stdout)
    assert data["disk"]["age_s"] >= 600 and len(data["attention"]) == 2
    assert "worker not running" in cli("worker", "status", expect=1).stdout

    cli("worker", "start")
    wait_until(lambda: disk.read_cached(workspace).measured_at > time.time() - 30, what="a fresh measurement")
    cli("check")  # worker up, fresh measurement, room left: exit 0
    cli("worker", "status")
    # The quota shrinks below what the tree holds: the same fresh measurement is now over quota.
    workspace.settings_path.write_text(workspace.settings_path.read_text(encoding="utf-8")
                                       + "quota_gb: 0.000001\nmargin_gb: 0\n", encoding="utf-8")
    assert "needs attention: disk over quota" in cli("check", expect=1).stdout


def test_cancel_with_the_worker_down(workspace: Workspace, make_config, cli: Cli,
                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    monkeypatch.setenv("FAKE_STEPS", "600")  # 30 s: long enough to be cancelled mid-run
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    mgr = Manager.open(workspace)
    cli("add", str(make_config("m")), "--action", "train")
    cli("add", str(make_config("later")), "--action", "train")
    running = wait_until(lambda: (r := mgr.get(1)).pid and r.progress and r, what="the stage running")
    _, worker_pid = mgr.worker_status()
    os.kill(worker_pid, signal.SIGKILL)
    wait_until(lambda: not mgr.worker_status()[0], what="the worker gone")

    queued = cli("cancel", "2").stdout  # a queued run: cancelled in the store, no signal involved
    assert "run 2 is cancelled: cancelled before it started" in queued and "SIG" not in queued
    stopped = cli("cancel", "1").stdout
    assert "no worker was running" in stopped and f"process {running.pid} was stopped here (SIGINT" in stopped
    assert not psutil.pid_exists(running.pid) or psutil.Process(running.pid).status() == psutil.STATUS_ZOMBIE
    done = mgr.get(1)
    assert done.state is RunState.CANCELLED and done.pid is None and mgr.get(2).state is RunState.CANCELLED
    # A second cancel claims nothing either.
    assert "SIG" not in cli("cancel", "1").stdout.split("is cancelled")[0]


def test_kill_minus_9_of_a_stage_is_killed_not_host_oom(workspace: Workspace, make_config, cli: Cli,
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    monkeypatch.setenv("FAKE_STEPS", "600")
    monkeypatch.setenv("FAKE_PID_FILE", str(pid_file))
    mgr = Manager.open(workspace)
    cli("add", str(make_config("m")), "--action", "train")
    wait_until(lambda: pid_file.exists() and mgr.get(1).progress, what="the stage running")
    stage_pid = int(pid_file.read_text().split()[0])
    os.kill(stage_pid, signal.SIGKILL)
    done = wait_until(lambda: (r := mgr.get(1)).state.is_final and r, what="the verdict")
    assert done.state is RunState.FAILED and done.failure_kind == FailureKind.KILLED and done.exit_code == -9
    assert "no sign of the OOM killer" in done.failure_message
    assert "killed" in cli("ls").stdout


def test_a_worker_killed_minus_9_never_stays_a_zombie_of_the_program_that_started_it(workspace: Workspace) -> None:
    # The parent is what the TUI is to the worker: a long-lived process that started it.
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom dialsum_tui.manager.service import Manager\n"
         "from dialsum_tui.manager.workspace.layout import Workspace\n"
         "print(Manager.open(Workspace(__import__('pathlib').Path(sys.argv[1]))).ensure_worker(), flush=True)\n"
         "time.sleep(60)\n", str(workspace.root)],
        stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(parent.stdout.readline())
        assert psutil.Process(worker_pid).ppid() == parent.pid
        os.kill(worker_pid, signal.SIGKILL)
        # Reaped: the pid leaves the process table altogether (a zombie would stay listed).
        wait_until(lambda: not psutil.pid_exists(worker_pid), what="the killed worker to be reaped")
        assert not [c for c in psutil.Process(parent.pid).children() if c.status() == psutil.STATUS_ZOMBIE]
    finally:
        parent.kill()
        parent.wait()


_SAVE_CHECKPOINT = """
import sys
from pathlib import Path
from types import SimpleNamespace
from engine.artifacts import atomic_directory
from engine.runtime import run_command

final, blob = Path(sys.argv[1]), sys.argv[2]

def body(args, events):
    with atomic_directory(final) as tmp:
        if blob == "/dev/full":
            (tmp / "model.safetensors").symlink_to("/dev/full")  # every write: ENOSPC
        with open(tmp / "model.safetensors", "wb") as fh:
            fh.write(b"\\0" * (4 << 20))
            fh.flush()

sys.exit(run_command("train", SimpleNamespace(run_dir=sys.argv[3]), body))
"""


def _full_disk(tmp_path: Path) -> tuple[Path, str]:
    """A 1 MB tmpfs where it can be mounted (root), else the /dev/full device: either way ENOSPC."""
    mount = tmp_path / "full"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                              timeout=10)
    except OSError:
        done = None
    if done is not None and done.returncode == 0:
        return mount, "tmpfs"
    return mount, "/dev/full"


def test_disk_full_during_a_checkpoint_leaves_no_partial_model_and_fails_as_disk(tmp_path: Path) -> None:
    from dialsum_tui.manager.worker.verdict import classify

    where, how = _full_disk(tmp_path)
    try:
        final = where / "checkpoints" / "m" / "final_model"
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        done = subprocess.run([sys.executable, "-c", _SAVE_CHECKPOINT, str(final), how, str(run_dir)],
                              capture_output=True, text=True, timeout=60)
        events = list(artifacts.EventTail(RunFiles(run_dir).events).drain())
        verdict = classify(done.returncode, events, done.stderr)
        assert done.returncode == 1 and verdict is not None and verdict.kind == FailureKind.DISK, done.stderr
        assert "No space left on device" in verdict.message and "prune" in verdict.hint
        # The rename never happened: no final_model, complete or half, and no temporary left behind.
        assert not final.exists() and list(final.parent.iterdir()) == []
    finally:
        if how == "tmpfs":
            subprocess.run(["umount", str(where)], timeout=10)


def test_init_where_nothing_can_be_created_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run([*CLI, "init", "/proc/foo"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "/proc/foo: cannot create a workspace there" in done.stderr


def test_handoff_into_a_missing_directory_is_refused_unless_mkdir(workspace: Workspace, cli: Cli,
                                                                  tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "dir" / "x.md"
    refused = cli("handoff", "--out", str(target), expect=2)
    assert "does not exist" in refused.stderr and "--mkdir" in refused.stderr
    assert not (tmp_path / "nonexistent").exists()
    cli("handoff", "--out", str(target), "--mkdir")
    assert target.read_text(encoding="utf-8").startswith("#")


class _BrokenNvml:
    """A GPU source whose every query fails, as NVML does when the driver is being reloaded."""

    def devices(self):
        raise RuntimeError("NVML_ERROR_DRIVER_NOT_LOADED")

    def describe(self) -> str:
        return "NVML (broken)"


def test_a_failing_worker_pass_is_reported_and_clears_and_an_unreadable_gpu_holds_the_run(
        workspace: Workspace, make_config) -> None:
    from dialsum_tui.manager.guards.gpu import GpuDevice, ScriptedGpuSource
    from dialsum_tui.manager.worker.health import read_ailments
    from dialsum_tui.manager.worker.loop import Worker

    one_gpu = ScriptedGpuSource([[GpuDevice(0, "H100", 0, 80 * 2**30, 0, 30)]])
    mgr = Manager(workspace, Manager.open(workspace).store, one_gpu)
    run = mgr.add(str(make_config("m")), action="train", gpus="0")
    worker = Worker(workspace, poll_s=0.05, gpu_source=_BrokenNvml())
    real_tick, failures = worker.tick, [3]

    def flaky_tick() -> None:  # the first passes fail as a locked store would
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("database is locked")
        real_tick()

    worker.tick = flaky_tick  # type: ignore[method-assign]
    serving = threading.Thread(target=worker.serve, daemon=True)
    serving.start()
    try:
        wait_until(lambda: any(a.part == "loop" and "database is locked" in a.message
                               for a in read_ailments(workspace, worker.health.pid)), what="the failing pass reported")
        waiting = wait_until(lambda: (r := mgr.get(run.id)).state is RunState.WAITING and r, what="the held run")
        assert "GPU cannot be read" in waiting.reason and "NVML_ERROR_DRIVER_NOT_LOADED" in waiting.reason
        wait_until(lambda: not any(a.part == "loop" for a in read_ailments(workspace, worker.health.pid)),
                   what="the report to clear once a pass succeeds")
    finally:
        worker.request_stop()
        serving.join(timeout=10)
