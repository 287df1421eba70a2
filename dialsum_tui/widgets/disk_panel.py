"""Provides DiskPanel: quota use against the limit with the safe zone, top consumers, projection."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from dialsum_tui.widgets.formatting import show_text
from engine.units import GB, format_bytes, format_used_of

if TYPE_CHECKING:
    from dialsum_tui.manager.snapshot import DiskUsage

BAR_WIDTH = 10
TOP_CONSUMERS = 4


def quota_bar(used: int, projected: int, safe: int, limit: int, width: int = BAR_WIDTH) -> Text:
    """Return a bar of ``width`` cells: used, then projected growth, with ``|`` at the safe line."""
    def cell(n: int) -> int:
        return min(width, int(round(n / limit * width))) if limit else 0

    used_c, after_c, safe_c = cell(used), cell(used + projected), cell(safe)
    text = Text()
    for i in range(width):
        if i == safe_c:
            text.append("|", style="bold yellow")
        elif i < used_c:
            text.append("█", style="red" if i >= safe_c else "green")
        elif i < after_c:
            text.append("▒", style="yellow")
        else:
            text.append("·", style="dim")
    return text


def render_disk(disk: DiskUsage | None, projected: int, projecting: int = 0) -> Text:
    """Render a ``DiskUsage`` (or its absence) and the projection after the queued runs (``projecting``:
    queued runs whose footprint is still being worked out, a long queue's first seconds)."""
    if disk is None:
        return Text("Disk: not measured yet (the worker measures in the background)", style="dim")
    text = Text()
    text.append_text(quota_bar(disk.used_bytes, projected, disk.safe_bytes, disk.limit_bytes))
    text.append(f" {format_used_of(disk.used_bytes, disk.limit_bytes)}")
    after = disk.used_bytes + projected
    style = "red" if after > disk.limit_bytes - disk.margin_bytes else "yellow" if after > disk.safe_bytes else ""
    estimating = f" (+{projecting} runs being estimated)" if projecting else ""
    text.append(f"\n  after queue ~{format_bytes(after)}{estimating} · safe ≤ {disk.safe_bytes / GB:.1f} GB", style=style)
    for label, size in disk.consumers[:TOP_CONSUMERS]:
        text.append(f"\n  {format_bytes(size):>9}  {label}")
    return text


class DiskPanel(Static):
    """Shows the cached disk measurement; never measures anything itself."""

    def __init__(self, **kwargs) -> None:
        super().__init__("Disk: …", **kwargs)
        self._shown: tuple | None = None
        self._text: Text | None = None

    def show(self, disk: DiskUsage | None, projected: int, projecting: int = 0) -> None:
        """Render unless unchanged."""
        key = (repr(disk), projected, projecting)
        if key != self._shown:
            self._shown = key
            text = render_disk(disk, projected, projecting)
            show_text(self, text, self._text)
            self._text = text
