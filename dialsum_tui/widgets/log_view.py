"""Provides LogView: the following tail of a run's ``run.log`` with a live tqdm line, a filter and wrapping."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dialsum_tui.manager.snapshot import LOG_LINES
from dialsum_tui.widgets.log_lines import LogLines

if TYPE_CHECKING:
    from dialsum_tui.manager.snapshot import RunSnapshot

NO_LOG = "no log yet: the run has not started a stage"


def _error_test() -> Callable[[str], bool]:
    # The manager's one error-line matcher (warnings are not errors). Imported on first use, when a
    # run is shown: the first frame does not wait for the manager's modules.
    from dialsum_tui.manager.runs.logs import is_error_line

    return is_error_line


class LogView(LogLines):
    """The log lines of the selected run (error lines red), the unfinished (tqdm) line as its last row.

    Renders the log part of the :class:`RunSnapshot` it is shown: it appends only the lines it has
    not shown yet (``log_total``) and starts over when the run or the log's generation changed.
    ``toggle_filter`` shows errors only (until another run is selected); ``toggle_wrap`` switches
    between wrapped lines and whole lines that scroll sideways (← →, no Tab needed).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(LOG_LINES, style_of=self._style_of, **kwargs)
        self.errors_only = False
        self.title = "no run selected"
        self._source: tuple[str, ...] = ()  # what the snapshot holds, for re-filtering
        self._shown: tuple[int, int] | None = None  # (run id, log generation) on screen
        self._run_id: int | None = None
        self._total = 0  # lines of that generation already written
        self._is_error: Callable[[str], bool] | None = None

    def on_mount(self) -> None:
        self._update_border()

    @property
    def shown_lines(self) -> list[str]:
        """The log lines written to the view, as the log has them (after the filter, before wrapping)."""
        return self.lines

    def _error(self, line: str) -> bool:
        if self._is_error is None:
            self._is_error = _error_test()
        return self._is_error(line)

    def _style_of(self, line: str) -> str | None:
        return "red" if self._error(line) else None

    def _keep(self, line: str) -> bool:
        return not self.errors_only or self._error(line)

    def _rewrite(self) -> None:
        self.clear()
        self.write_lines([line for line in self._source if self._keep(line)])
        self._placeholder()

    def _placeholder(self) -> None:
        if self.errors_only:
            self.placeholder = f"no error lines in the last {len(self._source):,} lines (f shows every line)"
        else:
            self.placeholder = NO_LOG if self._run_id is not None else ""

    def show(self, snapshot: RunSnapshot) -> None:
        """Show the log of ``snapshot``: new lines appended, the live line replaced."""
        key = (snapshot.run.id, snapshot.log_generation)
        if key != self._shown:  # another run, or its log was opened, replaced or truncated
            if snapshot.run.id != self._run_id:
                self.errors_only = False  # a filter set for one run's failure is not the next run's view
            self._shown, self._total, self._run_id = key, 0, snapshot.run.id
            self.title = f"run {snapshot.run.id} {snapshot.run.nickname}".strip()
            self.clear()
            self._update_border()
        new = snapshot.log_total - self._total
        if new > 0:
            # More new lines than the snapshot keeps (messages coalesced): the kept ones are all there is.
            fresh = snapshot.log_lines[-new:] if new < len(snapshot.log_lines) else snapshot.log_lines
            self.write_lines([line for line in fresh if self._keep(line)])
        self._source, self._total = snapshot.log_lines, snapshot.log_total
        self._placeholder()
        self.set_live(snapshot.log_live if snapshot.log_live and self._keep(snapshot.log_live) else "")

    def toggle_filter(self) -> bool:
        """Switch between all lines and errors only; returns the new state."""
        self.errors_only = not self.errors_only
        self._rewrite()
        self._update_border()
        return self.errors_only

    def toggle_wrap(self) -> bool:
        """Switch between wrapped lines and whole lines that scroll sideways; returns True when wrapped."""
        self.wrap = not self.wrap
        self._update_border()
        return self.wrap

    def scroll_sideways(self, cells: int) -> bool:
        """Scroll unwrapped lines ``cells`` to the right (negative: left); False when wrapped (nothing to scroll)."""
        if self.wrap:
            return False
        self.scroll_to(x=max(0, min(self.max_scroll_x, self.scroll_x + cells)), animate=False)
        return True

    def _update_border(self) -> None:
        # The modes first: a narrow panel cuts the end of its title, and the run is named on the detail line too.
        modes = (["errors only (f)"] if self.errors_only else []) + ([] if self.wrap else ["← → scroll sideways"])
        self.border_title = " · ".join(["Log", *modes, self.title])
