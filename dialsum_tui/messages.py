"""Provides the messages the app's poll thread and intent workers post to the UI thread.

The poll thread asks the manager for snapshots (:mod:`dialsum_tui.manager.snapshot`) and posts one
only when something changed, so an idle screen costs nothing to redraw. A snapshot is the whole
state, never a delta, so a newer one may replace an older one still in the queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from dialsum_tui.manager.snapshot import BoardSnapshot, RunSnapshot


@dataclass
class BoardRefreshed(Message):
    """A fresh snapshot of the queue, the GPUs and the disk."""

    board: BoardSnapshot

    def can_replace(self, message: Message) -> bool:
        # Only the newest snapshot matters; a slow frame must not queue up stale ones.
        return isinstance(message, BoardRefreshed)


@dataclass
class RunRefreshed(Message):
    """A fresh snapshot of the selected run: progress, loss and ROUGE series, log tail."""

    snapshot: RunSnapshot

    def can_replace(self, message: Message) -> bool:
        # Whole state: the log view appends what it has not shown, however many snapshots it missed.
        return isinstance(message, RunRefreshed)


@dataclass
class IntentFailed(Message):
    """An action posted to the manager was refused; ``message`` says why and what to do."""

    action: str
    message: str


@dataclass
class IntentDone(Message):
    """An action posted to the manager succeeded; ``message`` is shown as a notice."""

    action: str
    message: str
