"""Provides CompareScreen: overlaid loss and dev-ROUGE curves, the metric table side by side and the
config keys that differ, for two or more runs (``c`` on the marked runs)."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from dialsum_tui.manager.insights.compare import Comparison
from dialsum_tui.widgets.overlay_plot import OverlayPlot, legend, run_colour
from engine.units import format_rouge

METRIC_COLUMNS = ("Run", "R1", "R2", "RL", "final", "tokenizer", "n", "scorer")


def metric_rows(comparison: Comparison) -> list[tuple[Any, ...]]:
    """One row per run: R1/R2/RL/final ×100 with two decimals, and how the numbers were made.

    The best final is starred only among runs with the same tokenizer and scorer.
    """
    best: dict[tuple[Any, Any], float] = {}
    for m in comparison.metrics:
        if m["final"] is not None:
            key = (m["tokenizer"], m["scorer"])
            best[key] = max(best.get(key, m["final"]), m["final"])
    rows = []
    for i, (run, m) in enumerate(zip(comparison.runs, comparison.metrics)):
        colour = "rgb({},{},{})".format(*run_colour(i))
        final = format_rouge(m["final"], x100=True)
        if m["final"] is not None and len(comparison.runs) > 1 and m["final"] == best[(m["tokenizer"], m["scorer"])]:
            final += " ★"
        rows.append((Text(run["label"], style=colour), format_rouge(m["rouge1"]), format_rouge(m["rouge2"]), format_rouge(m["rougeL"]), final,
                     m["tokenizer"] or "-", str(m["n"] or "-"), m["scorer"] or "-"))
    return rows


def _value(value: Any) -> str:
    return "(absent)" if value is None else json.dumps(value, ensure_ascii=False)


class CompareScreen(Screen[None]):
    """Shows a :class:`~dialsum_tui.manager.insights.compare.Comparison` computed by the app."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back")]

    def __init__(self, comparison: Comparison) -> None:
        super().__init__()
        self.comparison = comparison

    def compose(self) -> ComposeResult:
        labels = [run["label"] for run in self.comparison.runs]
        yield Static(Text(f"Compare {len(labels)} runs — dev ROUGE ×100 (final = mean(R1,R2,RL))", style="bold"),
                     id="compare-title")
        yield Static(legend(labels), id="compare-legend")
        with VerticalScroll(id="compare-body"):
            with Horizontal(id="compare-plots"):
                yield OverlayPlot(id="compare-loss")
                yield OverlayPlot(id="compare-rouge")
            yield DataTable(cursor_type="row", zebra_stripes=True, id="compare-metrics")
            yield Static(id="compare-warning")
            yield DataTable(cursor_type="row", zebra_stripes=True, id="compare-diff")
        yield Footer()

    def on_mount(self) -> None:
        c = self.comparison
        self.query_one("#compare-loss", OverlayPlot).show("train loss", [curve.loss for curve in c.curves])
        self.query_one("#compare-rouge", OverlayPlot).show("dev final", [curve.rouge for curve in c.curves],
                                                            "no in-training evaluation")
        metrics = self.query_one("#compare-metrics", DataTable)
        metrics.add_columns(*METRIC_COLUMNS)
        for row in metric_rows(c):
            metrics.add_row(*row)
        made = {(m["tokenizer"], m["scorer"]) for m in c.metrics if m["final"] is not None}
        warning = self.query_one("#compare-warning", Static)
        warning.update(Text("⚠ different tokenizers/scorers: these finals are not comparable", style="bold yellow"))
        warning.display = len(made) > 1
        diff = self.query_one("#compare-diff", DataTable)
        diff.border_title = "Config keys that differ"
        diff.add_column("key")
        for run in c.runs:
            diff.add_column(f"#{run['id']}")
        for row in c.config_diff:
            diff.add_row(row.key, *(_value(v) for v in row.values))
        if not c.config_diff:
            diff.add_row("(no key differs)", *("" for _ in c.runs))
        metrics.focus()
