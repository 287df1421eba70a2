"""SIGHUP of the TUI (the SSH connection dropped): the TUI goes, the detached worker and its runs stay."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading

import pytest

from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace.layout import Workspace

from support import stop_workers_of, wait_until, write_config


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass
    except OSError:  # the TUI closed its side
        pass
    finally:
        os.close(fd)


def test_sighup_of_the_tui_leaves_the_worker_and_the_run_going(workspace: Workspace,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_STEPS", "60")
    mgr = Manager.open(workspace)
    run = mgr.add(str(write_config(workspace, "m")), action="train")
    leader, follower = pty.openpty()  # the TUI needs a terminal, as over SSH
    tui = subprocess.Popen([sys.executable, "-m", "dialsum_tui", "--workspace", str(workspace.root)],
                           stdin=follower, stdout=follower, stderr=follower, start_new_session=True,
                           env={**os.environ, "TERM": "xterm-256color"})
    os.close(follower)
    # Read the screen as a terminal would, so the TUI never blocks on a full pty buffer.
    threading.Thread(target=_drain, args=(leader,), daemon=True).start()
    try:
        wait_until(lambda: mgr.worker_status()[0] and mgr.get(run.id).state is RunState.RUNNING, 60,
                   "the TUI to start the worker and the run to start")
        _, worker_pid = mgr.worker_status()
        os.killpg(tui.pid, signal.SIGHUP)  # the terminal hangs up: its whole session gets SIGHUP
        tui.wait(timeout=30)  # the TUI is gone (how it exits is Textual's business) ...
        # ... and the worker was not: it takes the run to its end.
        done = wait_until(lambda: (r := mgr.get(run.id)).state.is_final and r, 60, "the run to finish")
        assert done.state is RunState.SUCCEEDED
        assert mgr.worker_status() == (True, worker_pid)  # the same worker, never hung up
    finally:
        if tui.poll() is None:
            tui.kill()
            tui.wait()
        stop_workers_of(workspace.root)


def test_a_terminal_that_vanished_without_sighup_ends_the_tui(workspace: Workspace) -> None:
    # The TUI in a session of its own has no controlling terminal: when the pty's far side closes, no
    # SIGHUP comes, reads give EOF and Textual's input thread spun on them at 18% CPU forever (issue
    # 24). The app sees its tty hung up (isatty fails) and exits.
    import psutil

    leader, follower = pty.openpty()
    tui = subprocess.Popen([sys.executable, "-m", "dialsum_tui", "--workspace", str(workspace.root)],
                           stdin=follower, stdout=follower, stderr=follower, start_new_session=True,
                           env={**os.environ, "TERM": "xterm-256color"})
    os.close(follower)
    stop = threading.Event()
    reader = threading.Thread(target=_drain_until, args=(leader, stop), daemon=True)
    reader.start()
    try:
        mgr = Manager.open(workspace)
        wait_until(lambda: mgr.worker_status()[0], 60, "the TUI to open the workspace and start the worker")
        stop.set()
        reader.join(5)
        os.close(leader)  # the terminal goes away (no read in flight holds it open); nobody sends a signal
        tui.wait(timeout=20)  # gone by itself, within a few of its 1 s checks
        assert not psutil.pid_exists(tui.pid)
    finally:
        if tui.poll() is None:
            tui.kill()
            tui.wait()
        stop_workers_of(workspace.root)


def _drain_until(fd: int, stop: threading.Event) -> None:
    """Read the screen like a terminal (so the TUI never blocks on a full buffer) until ``stop``."""
    import select

    while not stop.is_set():
        if select.select([fd], [], [], 0.1)[0]:
            try:
                os.read(fd, 65536)
            except OSError:
                return
