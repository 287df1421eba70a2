"""Provides RunMarks: the runs marked in the queue (``m``) for compare and side-by-side samples."""

from __future__ import annotations


class RunMarks:
    """Marked run ids in the order they were marked (the compare screen's column order)."""

    def __init__(self) -> None:
        self._ids: list[int] = []

    @property
    def ids(self) -> list[int]:
        return list(self._ids)

    def toggle(self, run_id: int) -> bool:
        """Mark ``run_id``, or unmark it when it was marked; returns whether it is marked now."""
        if run_id in self._ids:
            self._ids.remove(run_id)
            return False
        self._ids.append(run_id)
        return True

    def partner(self, run_id: int) -> int | None:
        """The run to show beside ``run_id`` in samples: the one other marked run, if exactly one."""
        others = [i for i in self._ids if i != run_id]
        return others[0] if len(others) == 1 else None
