"""Provides LogLines: a scrolling view of log lines that renders only the rows on screen.

A training log can grow by 10k lines a second. RichLog renders (and wraps) every line as it is
written, so a fast writer kept the UI thread busy for a second per second and a key waited behind
it. Here a write only stores the strings and counts the rows each will take; a row is rendered
when it scrolls into view (toolong's idea, and Textual's own ``Log``, which has no wrapping).

Wrapping breaks a line at its last space that fits the view's width (cells, so Hangul never
splits); unwrapped lines keep their length and the view scrolls sideways.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from itertools import accumulate

from rich.cells import cell_len, chop_cells
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

_CONTROL = re.compile("[\u0000-\u0008\u000b-\u001f\u007f]")


def clean(line: str) -> str:
    """A log line as it can be drawn: tabs expanded, control characters (ANSI escapes, ``\\r``) shown as ``�``."""
    return _CONTROL.sub("�", line.expandtabs())


def fold(line: str, width: int) -> list[str]:
    """``line`` wrapped into rows of at most ``width`` cells: at the last space that fits, else (one long
    token) at the width itself; a wide character is never split."""
    if width <= 0 or not line:
        return [line]
    ascii_ = line.isascii()
    if (len(line) if ascii_ else cell_len(line)) <= width:
        return [line]
    return _wrap_ascii(line, width) if ascii_ else _wrap_cells(line, width)


def _wrap_ascii(line: str, width: int) -> list[str]:
    rows = []
    while len(line) > width:
        cut = line.rfind(" ", 0, width + 1)
        if cut <= 0:
            rows.append(line[:width])
            line = line[width:]
        else:
            rows.append(line[:cut])
            line = line[cut + 1:]
    rows.append(line)
    return rows


def _wrap_cells(line: str, width: int) -> list[str]:
    rows: list[str] = []
    row, used = "", 0
    for word in line.split(" "):
        size = cell_len(word)
        if row and used + 1 + size <= width:
            row, used = f"{row} {word}", used + 1 + size
            continue
        if row or used:
            rows.append(row)
        if size > width:  # a word wider than the row: cut by cells
            *full, row = chop_cells(word, width)
            rows.extend(full)
            used = cell_len(row)
        else:
            row, used = word, size
    rows.append(row)
    return rows


def rows_of(line: str, width: int) -> int:
    """How many rows ``line`` takes when folded at ``width`` (one, without folding, for a line that fits)."""
    if width <= 0 or len(line) <= width and (line.isascii() or cell_len(line) <= width):
        return 1
    return len(fold(line, width))


class LogLines(ScrollView, can_focus=True):
    """Lines of text, the newest at the bottom, followed while the view is at its end.

    Args:
        max_lines: lines kept; older ones are dropped (they live on in the file).
        style_of: the style a line is drawn in (e.g. red for an error line), or None.
    """

    DEFAULT_CSS = """
    LogLines {
        overflow-x: auto;
        overflow-y: scroll;
        scrollbar-gutter: stable;
    }
    """

    def __init__(self, max_lines: int, style_of: Callable[[str], str | None] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_lines = max_lines
        self.style_of = style_of
        self.placeholder = ""  # drawn dim on the first row while there is no line
        self._live = ""  # an unfinished line (a tqdm bar being redrawn), drawn after the lines until replaced
        self._wrap = True
        self._lines: list[str] = []
        self._heights: list[int] = []  # rows per line at _fold_width (wrap) — all 1 unwrapped
        self._ends: list[int] = []  # cumulative rows: line i ends before row _ends[i]
        self._dropped = 0  # lines dropped from the front so far: keys the row cache across drops
        self._widest = 0
        self._fold_width = 0
        self._follow = True  # at the end: new lines scroll into view (until the user scrolls up)
        self._cache: LRUCache[tuple[int, int, int], Strip] = LRUCache(1024)

    # --- content -----------------------------------------------------------------------------

    @property
    def line_count(self) -> int:
        return len(self._lines)

    @property
    def lines(self) -> list[str]:
        """The lines held (cleaned), oldest first."""
        return list(self._lines)

    @property
    def row_count(self) -> int:
        """Rows the lines take at the current width (one per line unwrapped)."""
        return self._ends[-1] if self._ends else 0

    @property
    def wrap(self) -> bool:
        return self._wrap

    @wrap.setter
    def wrap(self, value: bool) -> None:
        if value != self._wrap:
            self._wrap = value
            self._reflow()

    def set_live(self, line: str) -> None:
        """Show ``line`` as the unfinished last row (empty: none); it is replaced, never appended."""
        line = clean(line)
        if line != self._live:
            had = bool(self._live)
            self._live = line
            if had != bool(line):
                self._resize()
                self._keep_following()
            self.refresh()

    def clear(self) -> None:
        """Drop every line."""
        self._dropped += len(self._lines)
        self._lines, self._heights, self._ends, self._widest = [], [], [], 0
        self._cache.clear()
        self.scroll_to(0, 0, animate=False, immediate=True)
        self._resize()
        self._follow = True

    def write_lines(self, lines: Iterable[str]) -> None:
        """Append ``lines``; the view follows them if it was at its end."""
        new = [clean(line) for line in lines]
        if not new:
            return
        if len(new) > self.max_lines:
            self._dropped += len(new) - self.max_lines
            new = new[-self.max_lines:]
        width = self._fold_width
        self._lines.extend(new)
        self._heights.extend(rows_of(line, width) for line in new) if self._wrap else self._heights.extend([1] * len(new))
        self._widest = max(self._widest, max(cell_len(line) for line in new))
        excess = len(self._lines) - self.max_lines
        if excess > 0:
            del self._lines[:excess], self._heights[:excess]
            self._dropped += excess
        self._ends = list(accumulate(self._heights))
        self._resize()
        self._keep_following()
        self.refresh()

    def _keep_following(self) -> None:
        if self._follow:  # after the layout has the new size: max_scroll_y is right then
            self.scroll_end(animate=False, x_axis=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Scrolled up by the user: stop following; back at the end (End, the wheel): follow again.
        self._follow = round(new_value) >= self.max_scroll_y

    # --- layout ----------------------------------------------------------------------------------

    def _text_width(self) -> int:
        return max(1, self.scrollable_content_region.width)

    def _reflow(self) -> None:
        """Count rows again (the width or the wrap mode changed)."""
        self._fold_width = self._text_width()
        width = self._fold_width
        self._heights = [rows_of(line, width) for line in self._lines] if self._wrap else [1] * len(self._lines)
        self._ends = list(accumulate(self._heights))
        self._cache.clear()
        self._resize()
        self.scroll_to(x=0 if self._wrap else min(self.scroll_x, self.max_scroll_x), animate=False, immediate=True)
        self.refresh()

    def _resize(self) -> None:
        width = self._text_width() if self._wrap else max(self._widest, cell_len(self._live), 1)
        self.virtual_size = Size(width, max(self.row_count + bool(self._live), 1))

    def on_resize(self) -> None:
        if self._text_width() != self._fold_width:
            self._reflow()
        self._keep_following()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    # --- rendering (only the rows on screen) -----------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.rich_style
        row = scroll_y + y
        if row == self.row_count and self._live:
            live = Strip(Text(self._live, style="green", no_wrap=True, end="").render(self.app.console, end=""))
            return live.apply_style(base).crop_extend(scroll_x, scroll_x + width, base)
        if not self._lines:
            if row == 0 and self.placeholder:
                return Strip(Text(self.placeholder, style="dim").render(self.app.console)).crop_extend(0, width, base)
            return Strip.blank(width, base)
        if row >= self.row_count:
            return Strip.blank(width, base)
        index = bisect_right(self._ends, row)
        part = row - (self._ends[index - 1] if index else 0)
        strip = self._strip(index, part, base)
        return strip.crop_extend(scroll_x, scroll_x + width, base) if not self._wrap else strip.extend_cell_length(width, base)

    def _strip(self, index: int, part: int, base: Style) -> Strip:
        key = (self._dropped + index, part, self._fold_width if self._wrap else 0)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        line = self._lines[index]
        segment = fold(line, self._fold_width)[part] if self._wrap else line
        style = self.style_of(line) if self.style_of else None
        text = Text(segment, style=style or "", no_wrap=True, end="")
        strip = Strip(text.render(self.app.console, end=""), cell_len(segment)).apply_style(base)
        self._cache[key] = strip
        return strip
