"""Provides the worker's health: what is wrong inside the worker right now (a thread that failed,
settings it cannot read, a disk it cannot measure), written to ``.dialsum/health.json`` for
``dialsum-tui check``, ``worker status`` and the TUI's status line to read.

The file is rewritten when the set of problems changes and, as a heartbeat, every
:data:`HEARTBEAT_S` (``beat``: the time of the last pass that completed), and it carries the
writer's pid: a reader trusts it only while that pid is the live worker's, so a dead worker's last
words are never shown as the present. A worker that holds the lock but does not beat — stopped by
SIGSTOP, hung, or unable to write its state directory — is stalled (:func:`stall_reason`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dialsum_tui.manager import procfs
from dialsum_tui.manager.workspace import sharing
from engine.artifacts import atomic_write_text

if TYPE_CHECKING:
    from dialsum_tui.manager.workspace.layout import Workspace

log = logging.getLogger("dialsum.worker")

HEALTH_FILE = "health.json"
STATE_DIR_FLOOR_BYTES = 1024 * 1024  # less free than this on .dialsum's filesystem: writes fail
HEARTBEAT_S = 5.0  # how often a working worker says so; readers call it stalled well after (service)


def health_path(ws: Workspace) -> Path:
    """``.dialsum/health.json`` of the workspace."""
    return ws.state_dir / HEALTH_FILE


@dataclass(frozen=True)
class Ailment:
    """One problem of one part of the worker, and since when it holds."""

    part: str  # "disk", "settings", "loop", "disk-thread"
    message: str
    since: float

    def describe(self, now: float | None = None) -> str:
        age = (time.time() if now is None else now) - self.since
        return f"{self.part}: {self.message} (for {age:.0f}s)"


class Health:
    """The worker's side: parts report :meth:`fail` or :meth:`ok`; the file follows the changes."""

    def __init__(self, ws: Workspace, pid: int | None = None) -> None:
        self.path = health_path(ws)
        self.pid = os.getpid() if pid is None else pid
        self._lock = threading.Lock()  # the disk thread and the loop both report
        self._ailments: dict[str, Ailment] = {}
        self._beat = 0.0  # wall time written as the last heartbeat
        self._beat_mono = -HEARTBEAT_S  # when it was written, on the monotonic clock

    def fail(self, part: str, message: str) -> None:
        """``part`` has ``message`` wrong now (logged once per change, not every poll)."""
        with self._lock:
            old = self._ailments.get(part)
            if old is not None and old.message == message:
                return
            self._ailments[part] = Ailment(part, message, old.since if old else time.time())
            log.error("health: %s: %s", part, message)
            self._write()

    def ok(self, part: str) -> None:
        """``part`` works again."""
        with self._lock:
            if self._ailments.pop(part, None) is None:
                return
            log.info("health: %s recovered", part)
            self._write()

    def beat(self) -> None:
        """A pass completed: refresh the heartbeat if the last one is :data:`HEARTBEAT_S` old."""
        with self._lock:
            if time.monotonic() - self._beat_mono < HEARTBEAT_S:
                return
            self._beat_mono = time.monotonic()
            self._beat = time.time()
            self._write()

    def ailments(self) -> list[Ailment]:
        with self._lock:
            return list(self._ailments.values())

    def clear(self) -> None:
        """Start clean (a new worker): the previous worker's file is replaced."""
        with self._lock:
            self._ailments.clear()
            self._write()

    def _write(self) -> None:
        body = {"pid": self.pid, "beat": self._beat or time.time(),
                "ailments": [a.__dict__ for a in self._ailments.values()]}
        try:
            atomic_write_text(self.path, json.dumps(body, ensure_ascii=False), mode=sharing.file_mode())  # teammates' check reads it
        except OSError:  # the state dir itself is in trouble: the log still has it
            log.exception("cannot write %s", self.path)


def read_ailments(ws: Workspace, worker_pid: int | None) -> list[Ailment]:
    """The live worker's problems (none when no worker runs, or the file is another pid's)."""
    if worker_pid is None:
        return []
    try:
        body = json.loads(health_path(ws).read_text(encoding="utf-8"))
        if body.get("pid") != worker_pid:
            return []
        return [Ailment(str(a["part"]), str(a["message"]), float(a["since"])) for a in body.get("ailments", [])]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []


def stall_reason(ws: Workspace, pid: int, beat_age_s: float | None, limit_s: float) -> str | None:
    """Why the live worker ``pid`` looks stuck, or None: stopped by a signal, unable to write its
    state directory (full or read-only), or silent for longer than ``limit_s``.

    ``beat_age_s`` is the age of its last heartbeat on the wall clock: a negative one (the clock
    stepped back) counts as fresh.
    """
    from dialsum_tui.manager.workspace.space import filesystem_problems

    if procfs.is_stopped(pid):
        return f"worker pid {pid} is stopped (SIGSTOP or Ctrl-Z): `kill -CONT {pid}` lets it go on"
    if beat_age_s is None or beat_age_s <= limit_s:
        return None
    problems = filesystem_problems([ws.state_dir], floor_bytes=STATE_DIR_FLOOR_BYTES)
    why = f"{problems[0].message}: {problems[0].hint}" if problems else f"see {ws.worker_log}"
    return f"worker pid {pid} has not completed a pass for {beat_age_s:.0f} s; {why}"
