"""Process launch and stop with real subprocesses and signals: groups, escalation, pid reuse."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from dialsum_tui.manager import process
from engine import artifacts
from engine.contract import Event, FailureKind, RunFiles

from support import wait_until

FAKE = Path(__file__).resolve().parents[1] / "fake_engine.py"


def _launch_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {nickname: m}\n", encoding="utf-8")
    full = {**os.environ, "FAKE_STEPS": "200", "FAKE_STEP_S": "0.05", **env}
    return process.launch([sys.executable, str(FAKE), "train", "--config", str(cfg), "--run-dir", str(tmp_path)],
                          cwd=tmp_path, log_path=tmp_path / "run.log", env=full)


def _events(tmp_path: Path, event: Event) -> list[dict]:
    return [e for e in artifacts.read_events(RunFiles(tmp_path).events) if e["event"] == event]


def _started(tmp_path: Path) -> bool:
    return bool(_events(tmp_path, Event.STARTED))


def test_launch_own_session_identity_and_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc, ident = _launch_fake(tmp_path, monkeypatch, FAKE_STEPS="2")
    assert os.getpgid(ident.pid) == ident.pid and os.getsid(ident.pid) == ident.pid
    assert process.is_alive(ident.pid, ident.start_time)
    assert not process.is_alive(ident.pid, ident.start_time + 5)  # another start time = another process
    assert proc.wait(timeout=20) == 0
    assert not process.is_alive(ident.pid, ident.start_time)
    assert "finished" in (tmp_path / "run.log").read_text(encoding="utf-8")
    assert oct((tmp_path / "run.log").stat().st_mode & 0o777) == oct(0o600)


def test_sigint_gives_clean_stop_exit_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc, ident = _launch_fake(tmp_path, monkeypatch)
    wait_until(lambda: _started(tmp_path))
    sent = process.stop_group(ident, grace=(5, 5), reap=proc)
    assert sent == [signal.SIGINT]
    assert proc.returncode == 130
    failed = _events(tmp_path, Event.FAILED)
    assert failed[-1]["kind"] == FailureKind.INTERRUPTED


def test_escalates_to_sigterm_and_kills_forked_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc, ident = _launch_fake(tmp_path, monkeypatch, FAKE_IGNORE_SIGINT="1", FAKE_CHILD="1")
    wait_until(lambda: _started(tmp_path) and len(psutil.Process(ident.pid).children()) == 1)
    child = psutil.Process(ident.pid).children()[0]
    sent = process.stop_group(ident, grace=(0.3, 2), reap=proc)
    assert sent[:2] == [signal.SIGINT, signal.SIGTERM]
    assert proc.returncode == -signal.SIGTERM
    wait_until(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE)
    assert not process.group_running(ident)


def test_never_signals_a_reused_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc, ident = _launch_fake(tmp_path, monkeypatch)
    wait_until(lambda: _started(tmp_path))
    # Same pid, other start time: what a reused pid looks like to us.
    impostor = process.Identity(ident.pid, ident.start_time - 100)
    assert process.signal_group(impostor, signal.SIGKILL) is False
    assert process.signal_pid(impostor, signal.SIGKILL) is False
    assert not process.group_running(impostor)
    # Had a SIGKILL gone out, the fake would write nothing more: wait for its next step instead.
    steps = len(_events(tmp_path, Event.PROGRESS))
    wait_until(lambda: len(_events(tmp_path, Event.PROGRESS)) > steps, 10, "a step after the refused signals")
    assert proc.poll() is None  # untouched
    process.stop_group(ident, grace=(5, 5), reap=proc)


def test_start_time_of_missing_pid_is_none() -> None:
    assert process.start_time(2**22 + 12345) is None
    assert not process.is_alive(None, None)
