"""Provides ResultsTable: the hand-off table (Model | ROUGE | 상태) built by the manager."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from dialsum_tui.widgets.formatting import fit_cell

COLUMNS = (("model", "Model"), ("rouge", "ROUGE"), ("r123", "R1/R2/RL ×100"), ("status", "상태"), ("user", "By"),
           ("evidence", "Evidence"))
# A nickname may run to 64 characters (128 cells in Hangul): uncapped, it pushed every score off an
# 80-column screen. The full name is in `dialsum-tui results` and the Markdown export.
MODEL_CELLS = 32


def result_cells(row: Any) -> tuple[Any, ...]:
    """Return the cells for one ``ResultRow``; the score says its tokenizer so numbers stay comparable."""
    rouge = Text(row.rouge_cell, style="bold" if row.best else "")  # ★ best, LB beside
    # One line: a DataTable row shows only the first line of a cell (a preflight failure lists its
    # problems on several).
    evidence = " ".join((row.evidence + (f" — {row.hint}" if row.hint else "")).split())
    return (fit_cell(row.nickname, MODEL_CELLS), rouge, row.parts_text, row.status, row.user or "-", Text(evidence, style="dim"))


class ResultsTable(DataTable):
    """One row per model; Rich measures Korean as double-width, so columns stay aligned."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def show_rows(self, rows: list[Any]) -> None:
        """Replace the table's contents with ``rows`` (``ResultRow`` records)."""
        self.clear()
        for n, row in enumerate(rows):
            self.add_row(*result_cells(row), key=f"{row.nickname}-{n}")
