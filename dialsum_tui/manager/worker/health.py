"""Provides the worker's health: what is wrong inside the worker right now (a thread that failed,
settings it cannot read, a disk it cannot measure), written to ``.dialsum/health.json`` for
``dialsum-tui check``, ``worker status`` and the TUI's status line to read.

The file is rewritten only when the set of problems changes (no heartbeat), and it carries the
writer's pid: a reader trusts it only while that pid is the live worker's, so a dead worker's last
words are never shown as the present.
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

from engine.artifacts import atomic_write_text

if TYPE_CHECKING:
    from dialsum_tui.manager.workspace.layout import Workspace

log = logging.getLogger("dialsum.worker")

HEALTH_FILE = "health.json"


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

    def ailments(self) -> list[Ailment]:
        with self._lock:
            return list(self._ailments.values())

    def clear(self) -> None:
        """Start clean (a new worker): the previous worker's file is replaced."""
        with self._lock:
            self._ailments.clear()
            self._write()

    def _write(self) -> None:
        body = {"pid": self.pid, "ailments": [a.__dict__ for a in self._ailments.values()]}
        try:
            atomic_write_text(self.path, json.dumps(body, ensure_ascii=False), mode=0o600)
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
