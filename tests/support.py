"""Provides what the test tiers share: the engine CLI run as a subprocess, run configs and event
files read strictly, a workspace wired to the stand-in engine, and clean-up of detached workers.

Imported by name (pytest puts tests/ on sys.path); conftest modules are not imported by tests, since
several share that module name."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import yaml

from dialsum_tui.manager.workspace.layout import Workspace, init_workspace

REPO = Path(__file__).resolve().parents[1]
# Set by conftest for each pytest process and inherited by every process a test starts: how the suite
# finds what a test left running (tests/conftest.py). An environment built from scratch passes it on.
SESSION_ENV = "DIALSUM_TEST_SESSION"
FAKE_ENGINE = Path(__file__).resolve().parent / "fake_engine.py"
GOOD_DATA = Path(__file__).resolve().parent / "fixtures" / "data" / "good"


def wait_until(cond: Callable[[], object], timeout: float = 30.0, what: str = "", every: float = 0.05) -> object:
    """Poll ``cond`` until it returns something truthy (returned) or fail the test after ``timeout`` s.

    The one polling helper of the suite: tests wait for a state, never for a fixed time, and a
    negative assertion ("X never happens") waits for the event that would have caused X instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or getattr(cond, '__name__', 'condition')}")
        time.sleep(every)


CLI = [sys.executable, "-m", "dialsum_tui"]


def drive(worker, manager, run_id: int, until: Callable[[object], bool], timeout: float = 30.0,
          seen: list | None = None, every: float = 0.05):
    """Tick ``worker`` until ``until(run)`` holds and return that run; every state of the run it saw
    is appended to ``seen``. A run that never gets there fails the test with its last state."""
    history = seen if seen is not None else []

    def step():
        worker.tick()
        history.append(manager.get(run_id))
        return history[-1] if until(history[-1]) else None

    try:
        return wait_until(step, timeout, f"run {run_id}", every=every)
    except pytest.fail.Exception:
        pytest.fail(f"run {run_id} stuck in {history[-1].state} ({history[-1].reason})")


def final(run) -> bool:
    return run.state.is_final


def cancel_with_worker_up(worker, manager, run_id: int, timeout: float = 30.0, every: float = 0.05):
    """Cancel ``run_id`` while ``worker`` holds the lock (a worker is up, as ``serve`` would hold it),
    so the cancel is the worker's to carry out; tick it until the run has ended and return the run."""
    assert worker.lock.acquire()
    try:
        manager.cancel(run_id)
        return drive(worker, manager, run_id, final, timeout, every=every)
    finally:
        worker.lock.release()


def run_cli(ws: Workspace, *args: str, expect: int | None = 0, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``dialsum-tui --workspace WS ARGS`` in the workspace, as a user would; ``expect`` is the exit
    status to assert (None: any)."""
    done = subprocess.run([*CLI, "--workspace", str(ws.root), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ws.root)
    if expect is not None:
        assert done.returncode == expect, (done.stdout, done.stderr)
    return done


def script_env(**extra: str) -> dict[str, str]:
    """The environment a benchmark or engine script gets in a test: this checkout's packages, no hub,
    one thread per process (the xdist workers already share the cores), and no scripted GPU or
    workspace leaking in from the caller's shell."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", **extra}
    return {k: v for k, v in env.items() if k not in ("DIALSUM_FAKE_GPU", "DIALSUM_WORKSPACE")}


def engine_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m engine ARGS`` in a subprocess (the way the manager runs it) and return the result."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def write_run_config(workspace: Path, tree: dict) -> Path:
    """Write ``tree`` as ``workspace/config.yaml`` (paths in it are relative to the workspace, the CWD)."""
    import yaml

    workspace.mkdir(parents=True, exist_ok=True)
    path = workspace / "config.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def read_event_lines(path: Path) -> list[dict]:
    """Parse every line of an ``events.jsonl`` strictly: a torn or invalid line fails the test."""
    import json

    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, f"{path} is empty"
    events = [json.loads(line) for line in lines]
    for event in events:
        assert event["v"] == 1 and isinstance(event["ts"], float | int) and event["event"]
    return events


def with_good_data(ws: Workspace) -> Workspace:
    """Put valid competition files in the workspace's data/: the preflight at ``add`` checks them."""
    for csv in GOOD_DATA.glob("*.csv"):
        shutil.copyfile(csv, ws.data_dir / csv.name)
    return ws


def fake_engine_workspace(root: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A new workspace whose stages run the fake engine quickly, with fast GPU/disk settings."""
    ws = with_good_data(init_workspace(root))
    ws.settings_path.write_text("gpu_grace_s: 0\ngpu_samples: 1\ndisk_refresh_s: 1\n", encoding="utf-8")
    monkeypatch.setenv("DIALSUM_ENGINE", shlex.join([sys.executable, str(FAKE_ENGINE)]))
    monkeypatch.setenv("DIALSUM_WORKER_POLL_S", "0.1")
    monkeypatch.setenv("DIALSUM_STOP_GRACE", "1,1")
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    for name in ("DIALSUM_WORKSPACE", "DIALSUM_FAKE_GPU", "FAKE_FAIL"):
        monkeypatch.delenv(name, raising=False)
    return ws


def write_config(ws: Workspace, nickname: str, **sections: dict) -> Path:
    """Write a valid run config for ``nickname`` into the workspace's configs/ and return its path."""
    tree = {"model": {"name_or_path": "models/tiny", "nickname": nickname, "kind": "seq2seq"}, "train": {"device": "cpu"}}
    tree.update(sections)
    path = ws.configs_dir / f"{nickname}.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def stop_workers_of(root: Path) -> None:
    """Stop every detached worker serving ``root``: racing CLIs in a test may have started several."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "dialsum_tui.manager.worker" in cmdline and str(root) in cmdline:
            try:
                proc.terminate()
                proc.wait(timeout=5)
            except psutil.Error:
                pass


# What a test must never leave behind: the worker, the CLI, the app, a stage of the real or the fake engine.
_OUR_PROGRAMS = ("dialsum_tui", "fake_engine", "rank_engine", "accelerate.commands.launch")


def _our_command(proc: psutil.Process) -> str | None:
    """The command line of one of our programs, None for anything else (a sleeper, a shell, a zombie)."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        argv = proc.cmdline()
    except psutil.Error:
        return None
    engine = any(flag == "-m" and module == "engine" for flag, module in zip(argv, argv[1:]))
    return " ".join(argv) if engine or any(mark in arg for arg in argv for mark in _OUR_PROGRAMS) else None


def leftover_processes() -> dict[int, str]:
    """pid → command line of our programs still running that this pytest process started, directly
    or not: they carry its :data:`SESSION_ENV` mark in their environment whoever their parent became."""
    from dialsum_tui.manager.procfs import pids_with_environ

    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = {}
    for pid in pids_with_environ(SESSION_ENV, os.environ.get(SESSION_ENV, "")):
        if pid in mine:
            continue
        try:
            command = _our_command(psutil.Process(pid))
        except psutil.Error:
            continue
        if command:
            found[pid] = command
    return found
