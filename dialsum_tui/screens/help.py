"""Provides HelpScreen: every key of the app with what it does (``?``)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static


class HelpScreen(ModalScreen[None]):
    """Lists the bindings it is given; any of ``escape``, ``q``, ``?`` closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self._keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static("Keys — runs keep going when you quit; the worker is detached", id="help-title")
            table = DataTable(cursor_type="none", show_header=True, id="help-table")
            table.add_columns("Key", "Action")
            for key, description in self._keys:
                table.add_row(key, description)
            yield table
