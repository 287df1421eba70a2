"""Provides KeyBar: the main screen's one-line key list, chosen for the terminal's width from the key
table (:data:`dialsum_tui.screens.main.KEYS`); a key is clickable, like Textual's Footer.

One widget instead of Textual's Footer (a widget per key, composed again whenever the bindings change):
on the dashboard that was a tenth of the first frame, for a line that changes only with the width.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.widgets import Static


def render_keys(keys: Sequence[tuple[str, str, str]], width: int = 0) -> Content:
    """``(key label, word, action)`` as ``a Add  x Cancel …`` (one space between keys where two would
    not fit ``width``); clicking a key runs its action."""
    parts = [Content.from_markup("[b $accent]$key[/] $word", key=key, word=word).stylize(f"@click={action}")
             for key, word, action in keys]
    wide = sum(len(part) for part in parts) + 2 * max(len(parts) - 1, 0)
    return Content("  " if not width or wide <= width else " ").join(parts)


class KeyBar(Static):
    """Shows the keys it is given (:meth:`show`); redraws only when they change."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.keys: tuple[tuple[str, str, str], ...] = ()
        self._shown: tuple | None = None

    def show(self, keys: Sequence[tuple[str, str, str]], width: int) -> None:
        """Show ``keys`` on a line ``width`` cells wide."""
        keys = tuple(keys)
        if (keys, width) != self._shown:
            self._shown = (keys, width)
            self.keys = keys
            self.update(render_keys(keys, width - 1), layout=False)  # always one line
