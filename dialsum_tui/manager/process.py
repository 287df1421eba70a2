"""Provides the only code that starts or signals processes: stage launch in its own session, process
identity (pid + start time), group stop with SIGINT → SIGTERM → SIGKILL escalation, the ranks a
launcher started, short commands (Slurm's client, notify hooks). Read-only /proc look-ups (who holds
a GPU, whose process it is) are in :mod:`dialsum_tui.manager.procfs`.

Every signal goes through :func:`_verified_group`, which refuses a pid whose start time differs from
the one recorded at launch: after a reboot or a long pause that pid may belong to someone else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from dialsum_tui.manager.procfs import ALIVE, pid_state, process_group

Popen = subprocess.Popen  # the handle of a child we started (launchers reap it through this)


# psutil derives create_time from boot time + clock ticks: equal for the same process, but allow
# for float rounding when the value went through SQLite and JSON.
START_TIME_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class Identity:
    """A process as launched: pid plus start time, so a reused pid is never mistaken for it."""

    pid: int
    start_time: float


def start_time(pid: int) -> float | None:
    """Return the process's start time (epoch seconds), or None if there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def session_of(pid: int) -> int | None:
    """The session id of ``pid`` (a stage leads its own session), None if it is gone."""
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def seconds_since_boot(epoch: float) -> float:
    """An epoch time as seconds since boot (the kernel log's clock)."""
    return epoch - psutil.boot_time()


def is_alive(pid: int | None, started: float | None) -> bool:
    """Whether ``pid`` is running, is not a zombie, and started at ``started`` (pid-reuse safe)."""
    if not pid or started is None:
        return False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) > START_TIME_TOLERANCE_S:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def group_alive(pgid: int) -> bool:
    """Whether any process is left in process group ``pgid`` (zombies included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists but not ours: never treat it as our group
        return False
    return True


def group_leaders_below(pid: int) -> list[Identity]:
    """Descendants of ``pid`` that lead their own process group (the ranks torchrun started).

    torchrun puts each rank in a new session (to kill a rank with its DataLoader workers), so a
    signal to the launcher's group reaches the launcher only; the caller tracks these by identity
    so none survives the launcher unnoticed.
    """
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    members = []
    for child in children:
        try:
            if os.getpgid(child.pid) == child.pid:
                members.append(Identity(child.pid, child.create_time()))
        except (OSError, psutil.Error):
            continue  # exited while we looked
    return members


def _popen_logged(
    argv: Sequence[str], cwd: Path, log_path: Path, env: Mapping[str, str] | None, new_session: bool
) -> subprocess.Popen[bytes]:
    """Start ``argv`` without a shell, stdin closed, stdout+stderr appended to ``log_path`` (0600)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
            close_fds=True,
        )
    finally:
        os.close(fd)


def launch(
    argv: Sequence[str],
    *,
    cwd: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], Identity]:
    """Start ``argv`` (no shell) in a new session and process group, stdout+stderr appended to ``log_path``.

    Args:
        argv: the command; values are passed as separate arguments, never through a shell.
        cwd: working directory.
        log_path: created 0600 if missing, appended to otherwise (all stages of a run share it).
        env: the full environment for the child.

    Returns:
        The Popen (so the launcher can reap it) and its identity.
    """
    # Own session: survives the terminal; its process group is ours to signal.
    proc = _popen_logged(argv, cwd, log_path, env, new_session=True)
    started = start_time(proc.pid)
    if started is None:  # exited already; keep a value that can never match a later process
        started = time.time()
    return proc, Identity(proc.pid, started)


def _verified_group(ident: Identity) -> int | None:
    """The process group to signal for ``ident``, or None when it must not be signalled.

    The leader is checked by start time. If the leader is gone but its group still has members
    (forked DataLoader workers holding GPU memory), the group is still ours: the kernel never hands
    out a pid equal to a live group's id.
    """
    try:
        proc = psutil.Process(ident.pid)
        if abs(proc.create_time() - ident.start_time) > START_TIME_TOLERANCE_S:
            return None  # pid reused by another process: never signal it
        pgid = os.getpgid(ident.pid)
        # We launched it as a session leader; a different group means it is not the process we started.
        return pgid if pgid == ident.pid else None
    except (psutil.NoSuchProcess, ProcessLookupError):
        return ident.pid if group_alive(ident.pid) else None
    except psutil.AccessDenied:
        return None


def signal_group(ident: Identity, sig: int) -> bool:
    """Send ``sig`` to the process group of ``ident`` if it is verifiably ours. Returns True if sent."""
    pgid = _verified_group(ident)
    if pgid is None:
        return False
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def signal_pid(ident: Identity, sig: int) -> bool:
    """Send ``sig`` to one process (not its group) if its start time matches. Returns True if sent."""
    if not is_alive(ident.pid, ident.start_time):
        return False
    try:
        os.kill(ident.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_running(ident: Identity) -> bool:
    """Whether the leader or any member of its group is still there (zombie leader excluded)."""
    if is_alive(ident.pid, ident.start_time):
        return True
    if start_time(ident.pid) is not None and not _same_start(ident):
        return False  # pid reused: the kernel would not have reused it while our group lived
    # Members other than a zombie leader; the kernel keeps the group id reserved while they live.
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["pid"] != ident.pid and os.getpgid(proc.info["pid"]) == ident.pid:
                if proc.info["status"] != psutil.STATUS_ZOMBIE:
                    return True
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return False


def _same_start(ident: Identity) -> bool:
    started = start_time(ident.pid)
    return started is not None and abs(started - ident.start_time) <= START_TIME_TOLERANCE_S


# Default escalation: the engine saves and writes its verdict on SIGINT (the Trainer's clean stop);
# SIGTERM for a process that ignored it; SIGKILL last.
DEFAULT_GRACE_S = (30.0, 10.0)


@dataclass
class GroupStop:
    """Non-blocking escalation for one process group: call :meth:`advance` from a poll loop.

    SIGINT first, SIGTERM after ``grace[0]`` seconds, SIGKILL after a further ``grace[1]``.
    """

    ident: Identity
    grace: tuple[float, float] = DEFAULT_GRACE_S
    sent: list[tuple[int, float]] = field(default_factory=list)  # (signal, when)

    def advance(self, now: float | None = None) -> bool:
        """Send the next signal when due. Returns True once the whole group is gone."""
        now = time.monotonic() if now is None else now
        if not group_running(self.ident):
            return True
        if not self.sent:
            self._send(signal.SIGINT, now)
        elif len(self.sent) == 1 and now - self.sent[0][1] >= self.grace[0]:
            self._send(signal.SIGTERM, now)
        elif len(self.sent) == 2 and now - self.sent[1][1] >= self.grace[1]:
            self._send(signal.SIGKILL, now)
        return False

    def _send(self, sig: int, now: float) -> None:
        signal_group(self.ident, sig)
        self.sent.append((int(sig), now))


def stop_group(
    ident: Identity,
    grace: tuple[float, float] = DEFAULT_GRACE_S,
    poll_s: float = 0.05,
    reap: subprocess.Popen[bytes] | None = None,
) -> list[int]:
    """Stop a process group, blocking until it is gone; returns the signals that were sent.

    Args:
        ident: the group leader as launched.
        grace: seconds to wait after SIGINT and after SIGTERM before escalating.
        poll_s: how often to look.
        reap: the Popen if we are the parent, so the leader does not linger as a zombie.
    """
    stopper = GroupStop(ident, grace)
    while True:
        if reap is not None:
            reap.poll()
        if stopper.advance():
            return [sig for sig, _ in stopper.sent]
        time.sleep(poll_s)


def spawn_detached(argv: Sequence[str], *, cwd: Path, log_path: Path) -> Identity:
    """Start a long-lived helper (the worker) detached from our terminal: new session, no stdin,
    stdout+stderr appended to ``log_path`` (0600). It survives SIGHUP of the launching shell.
    """
    proc, ident = launch(argv, cwd=cwd, log_path=log_path, env=os.environ)
    # Reap it the moment it exits, however it dies (kill -9 included), so it never lingers as a
    # zombie of a long-lived parent such as the TUI; after we exit, init adopts and reaps it.
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return ident


def run_to_completion(
    argv: Sequence[str],
    cwd: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run a short foreground helper (the demo build's engine steps) and wait for it.

    Unlike :func:`launch`, the child stays in our process group, so Ctrl-C in the terminal stops it
    as well; stdout+stderr are appended to ``log_path`` (0600) for the error message to point at.

    Args:
        argv: the command, passed without a shell.
        cwd: working directory.
        log_path: created if missing, appended to otherwise.
        env: the full environment for the child (default: ours).

    Returns:
        The exit status (negative: killed by that signal).
    """
    proc = _popen_logged(argv, cwd, log_path, env, new_session=False)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # The child got the same SIGINT from the terminal; reap it before giving up.
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def find_stage(run_dir: Path) -> Identity | None:
    """The live stage process (a session leader) started with ``--run-dir run_dir``, if any.

    Used when the store is rebuilt from run directories: the events of a train or infer stage do not
    carry its pid, but its command line names its run directory.
    """
    want = str(run_dir)
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        cmdline = proc.info.get("cmdline") or []
        pairs = zip(cmdline, cmdline[1:])
        if any(a == "--run-dir" and b == want for a, b in pairs) and process_group(proc.info["pid"]) == proc.info["pid"]:
            if pid_state(proc.info["pid"]) == ALIVE:
                return Identity(proc.info["pid"], proc.info["create_time"])
    return None


# What run_command's callers catch and read, so they need not import subprocess themselves.
CommandTimeout = subprocess.TimeoutExpired
Completed = subprocess.CompletedProcess
REAP_AFTER_KILL_S = 2.0


def run_command(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 30.0,
                stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short command (argv, no shell) to completion and capture its text output.

    For asking or telling other programs (the Slurm client, a user's notify hook) rather than
    starting a stage. The command gets a session of its own, so a timeout kills everything it
    started (``curl`` under ``sh -c`` too), not only the direct child.

    Raises:
        subprocess.TimeoutExpired (``CommandTimeout``): it did not finish within ``timeout`` s; its
            whole group was killed.
        OSError: it could not be started.
    """
    proc = subprocess.Popen(list(argv), env=dict(env) if env is not None else None, start_new_session=True,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the session created above, nobody else's
        except ProcessLookupError:
            pass
        try:
            proc.communicate(timeout=REAP_AFTER_KILL_S)
        except subprocess.TimeoutExpired:  # something escaped the group and holds the pipes
            pass
        raise
    decode = lambda b: (b or b"").decode("utf-8", errors="replace")  # noqa: E731
    return subprocess.CompletedProcess(list(argv), proc.returncode, decode(out), decode(err))
