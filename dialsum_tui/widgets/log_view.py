"""Provides LogView: the following tail of a run's ``run.log`` with a live tqdm line and a filter."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Log, Static

from dialsum_tui.manager.logs import is_error_line
from dialsum_tui.manager.snapshot import LOG_LINES, RunSnapshot


class LogView(Vertical):
    """Log lines above, the unfinished (tqdm) line below; ``toggle_filter`` shows errors only.

    Renders the log part of the :class:`RunSnapshot` it is shown: it appends only the lines it has
    not shown yet (``log_total``) and starts over when the run or the log's generation changed.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.errors_only = False
        self.title = "no run selected"
        self._lines: tuple[str, ...] = ()  # what the snapshot holds, for re-filtering
        self._shown: tuple[int, int] | None = None  # (run id, log generation) on screen
        self._total = 0  # lines of that generation already written

    def compose(self) -> ComposeResult:
        yield Log(max_lines=LOG_LINES, id="log-lines")
        yield Static("", id="log-live")

    def _keep(self, line: str) -> bool:
        return not self.errors_only or is_error_line(line)

    def show(self, snapshot: RunSnapshot) -> None:
        """Show the log of ``snapshot``: new lines appended, the live line replaced."""
        log = self.query_one(Log)
        key = (snapshot.run.id, snapshot.log_generation)
        if key != self._shown:  # another run, or its log was opened, replaced or truncated
            self._shown, self._total = key, 0
            self.title = f"run {snapshot.run.id} {snapshot.run.nickname}".strip()
            log.clear()
            self._update_border()
        new = snapshot.log_total - self._total
        if new > 0:
            # More new lines than the snapshot keeps (messages coalesced): the kept ones are all there is.
            fresh = snapshot.log_lines[-new:] if new < len(snapshot.log_lines) else snapshot.log_lines
            kept = [line for line in fresh if self._keep(line)]
            if kept:
                log.write_lines(kept)
        self._lines, self._total = snapshot.log_lines, snapshot.log_total
        live = snapshot.log_live if snapshot.log_live and self._keep(snapshot.log_live) else ""
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
