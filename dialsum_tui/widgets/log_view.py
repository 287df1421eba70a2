"""Provides LogView: the following tail of a run's ``run.log`` with a live tqdm line, a filter and wrapping."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.events import Resize
from textual.widgets import RichLog, Static

from dialsum_tui.manager.runs.logs import is_error_line
from dialsum_tui.manager.snapshot import LOG_LINES, RunSnapshot


class LogView(Vertical):
    """Log lines above, the unfinished (tqdm) line below.

    Renders the log part of the :class:`RunSnapshot` it is shown: it appends only the lines it has
    not shown yet (``log_total``) and starts over when the run or the log's generation changed.
    ``toggle_filter`` shows errors only; ``toggle_wrap`` switches between wrapped lines and whole
    lines that scroll sideways.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.errors_only = False
        self.wrap = True  # wrapped by default: a narrow terminal must still show the end of a traceback line
        self.title = "no run selected"
        self._lines: tuple[str, ...] = ()  # what the snapshot holds, for re-filtering and re-wrapping
        self._shown: tuple[int, int] | None = None  # (run id, log generation) on screen
        self._total = 0  # lines of that generation already written
        self._visible: list[str] = []  # lines written to the view (after the filter, before wrapping)
        self._width = 0  # the width the wrapped lines were cut to

    def compose(self) -> ComposeResult:
        # min_width=1: RichLog renders at least 78 cells wide by default, which defeats wrapping.
        yield RichLog(max_lines=LOG_LINES, wrap=self.wrap, min_width=1, markup=False, highlight=False,
                      id="log-lines")
        yield Static("", id="log-live")

    @property
    def line_count(self) -> int:
        """Log lines written to the view (after the filter, before wrapping)."""
        return len(self._visible)

    @property
    def shown_lines(self) -> list[str]:
        """The log lines written to the view, as the log has them (after the filter, before wrapping)."""
        return list(self._visible[-LOG_LINES:])

    def _keep(self, line: str) -> bool:
        return not self.errors_only or is_error_line(line)

    def _write(self, lines: list[str] | tuple[str, ...]) -> None:
        log = self.query_one(RichLog)
        for line in lines:
            log.write(Text(line), scroll_end=True)  # Text: never markup, logs contain [brackets]
        self._visible.extend(lines)
        del self._visible[:-LOG_LINES]  # as many as the view keeps

    def _rewrite(self) -> None:
        self.query_one(RichLog).clear()
        self._visible = []
        self._write([line for line in self._lines if self._keep(line)])

    def show(self, snapshot: RunSnapshot) -> None:
        """Show the log of ``snapshot``: new lines appended, the live line replaced."""
        key = (snapshot.run.id, snapshot.log_generation)
        if key != self._shown:  # another run, or its log was opened, replaced or truncated
            self._shown, self._total = key, 0
            self.title = f"run {snapshot.run.id} {snapshot.run.nickname}".strip()
            self.query_one(RichLog).clear()
            self._visible = []
            self._update_border()
        new = snapshot.log_total - self._total
        if new > 0:
            # More new lines than the snapshot keeps (messages coalesced): the kept ones are all there is.
            fresh = snapshot.log_lines[-new:] if new < len(snapshot.log_lines) else snapshot.log_lines
            self._write([line for line in fresh if self._keep(line)])
        self._lines, self._total = snapshot.log_lines, snapshot.log_total
        live = snapshot.log_live if snapshot.log_live and self._keep(snapshot.log_live) else ""
        self.query_one("#log-live", Static).update(Text(live))

    def toggle_filter(self) -> bool:
        """Switch between all lines and errors only; returns the new state."""
        self.errors_only = not self.errors_only
        self._rewrite()
        self._update_border()
        return self.errors_only

    def toggle_wrap(self) -> bool:
        """Switch between wrapped lines and whole lines that scroll sideways; returns True when wrapped."""
        self.wrap = not self.wrap
        self.query_one(RichLog).wrap = self.wrap
        self._rewrite()
        self._update_border()
        return self.wrap

    def on_resize(self, event: Resize) -> None:
        # Wrapped lines were cut to the old width: cut them again so none is clipped or half-empty.
        if self.wrap and event.size.width != self._width and self._lines:
            self._width = event.size.width
            self._rewrite()

    def _update_border(self) -> None:
        modes = [" · errors only (f)" if self.errors_only else "", "" if self.wrap else " · unwrapped (w)"]
        self.border_title = f"Log · {self.title}" + "".join(modes)

    def on_mount(self) -> None:
        self._update_border()
