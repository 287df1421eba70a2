"""Provides the health of a workspace's ``state.db`` as every process sees it: the file's identity
(device, inode), which the worker watches so that it stops admitting once the file is removed or
replaced; the one message a broken store gets (naming ``dialsum-tui repair``); the store check that
``repair`` uses; and ``worker stop``, which needs only the lock file, never the store.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from dialsum_tui.manager import process
from dialsum_tui.manager.store.database import Store
from dialsum_tui.manager.workspace import sharing
from dialsum_tui.manager.workspace.layout import Workspace, WorkspaceError
from dialsum_tui.manager.workspace.lock import read_lock_holder
from dialsum_tui.manager.workspace.space import filesystem_problems
from engine.artifacts import atomic_write_text

log = logging.getLogger("dialsum.worker")


class StoreBroken(WorkspaceError):
    """``state.db`` cannot be used (not a database, malformed, read-only); the message says what to do."""


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the database file, None when it is missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def replaced_problem(path: Path, opened: tuple[int, int] | None) -> str | None:
    """Why the file at ``path`` is no longer the database opened as ``opened`` (None: it still is)."""
    now = file_identity(path)
    if now == opened:
        return None
    what = "was removed" if now is None else "was replaced by another file"
    return (f"{path} {what} while this worker had it open; it admits nothing new (running stages are still "
            "followed). Restart it to use the current store: `dialsum-tui worker stop && dialsum-tui worker start`")


# Written by a worker whose database file was removed or replaced; `check` and `ls` show it.
STORE_PROBLEM_FILE = "worker-store-problem.txt"


class StoreWatch:
    """The worker's check that ``state.db`` is still the file it opened (device and inode)."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.opened = file_identity(ws.db_path)
        self.problem: str | None = None
        (ws.state_dir / STORE_PROBLEM_FILE).unlink(missing_ok=True)

    def ok(self) -> bool:
        """False (and said once, in worker.log and for the CLI) once the file is gone or another one."""
        if self.problem is not None:
            return False
        self.problem = replaced_problem(self.ws.db_path, self.opened)
        if self.problem is None:
            return True
        log.error("%s", self.problem)
        try:
            atomic_write_text(self.ws.state_dir / STORE_PROBLEM_FILE, f"{os.getpid()} {self.problem}\n",
                              mode=sharing.file_mode())
        except OSError:
            pass
        return False


def worker_store_problem(ws: Workspace) -> str | None:
    """What the running worker said about its database (None when it has nothing to say, or is not running)."""
    held, ident = read_lock_holder(ws.lock_path)
    try:
        pid, _, text = (ws.state_dir / STORE_PROBLEM_FILE).read_text(encoding="utf-8").strip().partition(" ")
    except OSError:
        return None
    return text if held and ident is not None and pid == str(ident.pid) else None


def broken_message(path: Path, err: BaseException) -> str:
    """What to do about a store SQLite refused: a full or read-only filesystem is fixed there (repair
    would fail the same way); a read-only file by its mode; anything else by ``repair``."""
    text = str(err)
    [fs] = filesystem_problems([path.parent], floor_bytes=1024 * 1024) or [None]
    if fs is not None:
        return f"{path} cannot be written ({text}): {fs.message}; {fs.hint}"
    if "readonly" in text or "read-only" in text:
        why = f"{path} is read-only ({text}); make it writable (`chmod u+w {path}`) or"
    else:
        why = f"{path} is not a usable database ({text});"
    return (f"{why} run `dialsum-tui repair`: it keeps the file as state.db.broken-<time> and rebuilds the "
            "store from runs/ (ids, states, metrics and failures restored)")


def healthy(path: Path) -> bool:
    """Whether ``path`` opens as our store, is writable and passes SQLite's quick_check."""
    if not path.exists():
        return False
    try:
        store = Store(path)
    except sqlite3.Error:
        return False
    try:
        with store._lock:
            return store._conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    except sqlite3.Error:
        return False
    finally:
        store.close()


def stop_worker(ws: Workspace, timeout_s: float = 10.0) -> bool:
    """SIGTERM the workspace's worker (lock file: pid + start time) and wait for it to let go of the lock.

    Needs no store, so it works when the database is gone or broken. Running stages keep running.
    """
    held, ident = read_lock_holder(ws.lock_path)
    if not held or ident is None:
        return False
    process.signal_pid(ident, 15)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not read_lock_holder(ws.lock_path)[0]:
            return True
        time.sleep(0.05)
    return False
