"""Provides LogView: the following tail of a run's ``run.log`` with a live tqdm line and a filter."""

from __future__ import annotations

import re
from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Log, Static

from dialsum_tui.widgets.log_tail import LogChunk

MAX_LINES = 5000  # what stays scrollable; older lines live on in the file
ERROR_PATTERN = re.compile(r"error|exception|traceback|failed|fatal|killed|out of memory|warning", re.IGNORECASE)


class LogView(Vertical):
    """Log lines above, the unfinished (tqdm) line below; ``toggle_filter`` shows errors only."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._lines: deque[str] = deque(maxlen=MAX_LINES)
        self.errors_only = False
        self.title = "no run selected"

    def compose(self) -> ComposeResult:
        yield Log(max_lines=MAX_LINES, id="log-lines")
        yield Static("", id="log-live")

    def _keep(self, line: str) -> bool:
        return not self.errors_only or bool(ERROR_PATTERN.search(line))

    def start(self, title: str) -> None:
        """Clear the view for another run (or a replaced file)."""
        self.title = title
        self._lines.clear()
        self.query_one(Log).clear()
        self.query_one("#log-live", Static).update("")
        self._update_border()

    def append(self, chunk: LogChunk) -> None:
        """Show the lines of ``chunk`` and replace the live line."""
        log = self.query_one(Log)
        if chunk.reset:
            self._lines.clear()
            log.clear()
        lines = list(chunk.lines)
        if chunk.skipped:
            lines.insert(0, f"… {chunk.skipped:,} bytes skipped (writer faster than the view) …")
        self._lines.extend(lines)
        kept = [line for line in lines if self._keep(line)]
        if kept:
            log.write_lines(kept)
        live = chunk.live if chunk.live and self._keep(chunk.live) else ""
        self.query_one("#log-live", Static).update(Text(live))  # never markup: logs contain [brackets]

    def toggle_filter(self) -> bool:
        """Switch between all lines and errors only; returns the new state."""
        self.errors_only = not self.errors_only
        log = self.query_one(Log)
        log.clear()
        log.write_lines([line for line in self._lines if self._keep(line)])
        self._update_border()
        return self.errors_only

    def _update_border(self) -> None:
        self.border_title = f"Log · {self.title}" + (" · errors only (f)" if self.errors_only else "")

    def on_mount(self) -> None:
        self._update_border()
