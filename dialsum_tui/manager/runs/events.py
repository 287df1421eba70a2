"""Provides the manager's reading of a run's events: which belong to a stage, and the progress and
metrics they add up to (the latest of each kind wins). The worker follows with these, and the store's
rebuild replays a run's whole file through the same functions, so both agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engine.contract import Event

_EVENT_META = frozenset({"v", "ts", "event", "command"})


def stage_events(events: Iterable[dict[str, Any]], stage: str) -> list[dict[str, Any]]:
    """The events written by ``stage`` (lines without a command belong to every stage)."""
    return [e for e in events if e.get("command") in (None, stage)]


def absorb(progress: dict[str, Any], metrics: dict[str, Any], new: list[dict[str, Any]],
           stage: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's progress and metrics after a stage's new events (the latest of each kind wins)."""
    for event in new:
        kind = event.get("event")
        if kind == Event.PROGRESS:
            progress = {k: v for k, v in event.items() if k not in _EVENT_META} | {"stage": stage, "ts": event.get("ts")}
        elif kind == Event.EVAL:
            metrics = metrics | {k: v for k, v in event.items() if k not in _EVENT_META} | {"stage": stage}
        elif kind == Event.TRAIN_LOG and "loss" in event:
            progress = progress | {"loss": event["loss"]}
    return progress, metrics
