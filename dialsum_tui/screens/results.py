"""Provides ResultsScreen: the results table, with ``m`` to export it as Markdown."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from dialsum_tui.widgets.results_table import ResultsTable


class ResultsScreen(Screen[None]):
    """Shows ``ResultRow`` records; ``m`` asks the app to write them as Markdown."""

    BINDINGS = [
        Binding("escape,r", "app.pop_screen", "Back"),
        Binding("m", "app.export_results", "Export Markdown"),
    ]

    def __init__(self, rows: list[Any], note: str = "") -> None:
        super().__init__()
        self._rows = rows
        self._note = note

    def compose(self) -> ComposeResult:
        yield Static("Results — ROUGE = mean(R1, R2, RL) × 100, tokenizer in brackets; ★ best dev ROUGE among the "
                     "same tokenizer and scorer; LB = public leaderboard (`dialsum-tui lb`)", id="results-title")
        yield ResultsTable(id="results-table")
        yield Static(self._note, id="results-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ResultsTable).show_rows(self._rows)
