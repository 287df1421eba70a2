"""Provides HelpScreen: every key of the app with what it does (``?``), wrapped and scrollable."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def render_keys(keys: list[tuple[str, str]]) -> Table:
    """One row per key; the description column wraps, so no line is ever cut at the edge."""
    table = Table(box=None, padding=(0, 1), show_header=True, header_style="bold", expand=True)
    table.add_column("Key", no_wrap=True, style="bold cyan")
    table.add_column("Action", ratio=1, overflow="fold")
    for key, description in keys:
        table.add_row(key, description)
    return table


class HelpScreen(ModalScreen[None]):
    """Lists the bindings it is given; any of ``escape``, ``q``, ``?`` closes it; arrows and pgup/pgdn scroll."""

    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static("Keys — runs keep going when you quit; the worker is detached. "
                         "↑ ↓ scroll, esc closes.", id="help-title")
            yield Static(render_keys(self.keys), id="help-table")

    def on_mount(self) -> None:
        self.query_one("#help").focus()  # so the arrows scroll the list at once
