"""Provides the single-worker lock: one worker per workspace holds an exclusive flock on
``.dialsum/worker.lock`` and writes ``"<pid> <start time>"`` into it; front ends probe it to tell
whether a worker serves the workspace and which process that is.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from dialsum_tui.manager.process import Identity, start_time
from dialsum_tui.manager.workspace import sharing
from dialsum_tui.manager.workspace.layout import WorkspaceError, access_problem


class WorkerLock:
    """The exclusive lock of one workspace's worker (closing the file drops it)."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait_s: float = 2.0) -> bool:
        """Take the lock and write ``"<pid> <start time>"`` into it; False if another worker holds it.

        Retries briefly: a CLI probing the lock holds it shared for an instant.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, sharing.file_mode())
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {start_time(os.getpid())}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def read_lock_holder(lock_path: Path) -> tuple[bool, Identity | None]:
    """Whether a worker holds ``lock_path``, and its identity as it wrote it.

    Probes with a shared non-blocking flock: it succeeds only when no worker holds the lock.

    Raises:
        WorkspaceError: this user may not read the lock file (whose workspace it is, who can fix it).
    """
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return False, None
    except PermissionError:  # never "no worker is running": one may well be, and it is not ours to see
        raise WorkspaceError(access_problem(lock_path.parent.parent, lock_path)) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held = True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            held = False
        text = os.read(fd, 200).decode(errors="replace").split()
    finally:
        os.close(fd)
    ident = None
    if len(text) >= 2:
        try:
            ident = Identity(int(text[0]), float(text[1]))
        except ValueError:
            ident = None
    return held, ident
