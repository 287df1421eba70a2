"""Provides a run's priority as a person names it (``add --priority high|normal|low``) and as the store
keeps it (``Run.priority``: higher starts first among the pending runs; it never preempts a running one).
"""

from __future__ import annotations

from dialsum_tui.manager.errors import DialsumError

PRIORITIES = {"high": 1, "normal": 0, "low": -1}


def parse_priority(value: str | int | None) -> int:
    """``"high"`` → 1, ``"normal"``/None → 0, ``"low"`` → -1; an int is taken as it is.

    Raises:
        DialsumError: another word (exit 2), naming the three.
    """
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in PRIORITIES:
        return PRIORITIES[text]
    try:
        return int(text)
    except ValueError:
        raise DialsumError(f"--priority {value!r}: use high, normal or low") from None


def priority_name(value: int) -> str:
    """1 → ``"high"``, 0 → ``"normal"``, -1 → ``"low"``; other numbers as they are."""
    return next((name for name, number in PRIORITIES.items() if number == value), str(value))
