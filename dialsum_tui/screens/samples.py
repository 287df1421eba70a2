"""Provides SamplesScreen: per-sample dev insights (dialogue, references, predictions side by side,
per-item ROUGE), with keys to sort (worst / best / largest difference) and filter (empty / foreign /
length) and the count of each filter."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from dialsum_tui.manager.insights.samples import FILTERS, RULES, Sample, SampleSet
from dialsum_tui.widgets.overlay_plot import run_colour

FLAG_LABELS = {"empty": "∅ empty", "foreign": "文 foreign", "length": "↔ length"}


def _colour(i: int) -> str:
    return "rgb({},{},{})".format(*run_colour(i))


def head_text(sample_set: SampleSet, sort: str, filter_: str | None, shown: int) -> Text:
    """Which runs, how they are scored, each filter's count per run, and the current view."""
    counts, means = sample_set.counts(), sample_set.means()
    text = Text()
    for i, run in enumerate(sample_set.runs):
        text.append(f"{'AB'[i]} ", style=f"bold {_colour(i)}")
        text.append(f"{run['label']} ", style=_colour(i))
        text.append(f"mean {means[i]:.2f} · " + " · ".join(f"{FLAG_LABELS[f]} {counts[f][i]}" for f in FILTERS) + "\n")
    text.append(f"{len(sample_set.samples)} dev dialogues · {sample_set.scorer}/{sample_set.tokenizer} · ", style="dim")
    text.append(f"sort {sort} · filter {filter_ or 'none'} · {shown} shown", style="bold")
    for note in sample_set.notes:
        text.append(f"\n{note}", style="yellow")
    return text


def detail_text(sample: Sample, labels: list[str]) -> Text:
    """The whole sample: scores, predictions (flags named), references and the dialogue, wrapped by the widget."""
    text = Text()
    text.append(sample.fname, style="bold")
    if sample.diff is not None:
        text.append(f"   Δ {sample.diff:+.2f}", style="bold green" if sample.diff > 0 else "bold red")
    for i, (prediction, score, flags) in enumerate(zip(sample.predictions, sample.scores, sample.flags)):
        text.append(f"\n\n{'AB'[i]} {labels[i]}", style=f"bold {_colour(i)}")
        text.append(f"  R1 {score.rouge1 * 100:.2f} R2 {score.rouge2 * 100:.2f} RL {score.rougeL * 100:.2f} "
                    f"final {score.final:.2f}", style="dim")
        for name, found in flags.items():
            text.append(f"\n{FLAG_LABELS[name]}: {found}", style="yellow")
        text.append("\n" + (prediction or "(empty output)"))
    for n, reference in enumerate(sample.references, start=1):
        text.append(f"\n\nreference {n}", style="bold")
        text.append("\n" + reference)
    text.append("\n\ndialogue", style="bold")
    text.append("\n" + sample.dialogue)
    return text


class SamplesScreen(Screen[None]):
    """Shows a :class:`~dialsum_tui.manager.insights.samples.SampleSet` loaded (and scored) by the app."""

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("f", "cycle_filter", "Filter"),
    ]

    def __init__(self, sample_set: SampleSet) -> None:
        super().__init__()
        self.sample_set = sample_set
        self.sorts = ["worst", "best"] + (["diff"] if len(sample_set.runs) > 1 else [])
        self.sort = "diff" if len(sample_set.runs) > 1 else "worst"
        self.filter: str | None = None
        self.shown: list[Sample] = []

    def compose(self) -> ComposeResult:
        yield Static(id="samples-head")
        with Horizontal(id="samples-body"):
            yield DataTable(cursor_type="row", zebra_stripes=True, id="samples-list")
            with VerticalScroll(id="samples-detail"):
                yield Static(id="samples-text")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#samples-list", DataTable)
        table.add_column("fname", key="fname")
        for i in range(len(self.sample_set.runs)):
            table.add_column(Text("AB"[i], style=f"bold {_colour(i)}"), key=f"run{i}")
        if len(self.sample_set.runs) > 1:
            table.add_column("Δ", key="diff")
        table.add_column("flags", key="flags")
        self._refresh_view()
        table.focus()

    def _refresh_view(self) -> None:
        self.shown = self.sample_set.view(self.sort, self.filter)
        self.query_one("#samples-head", Static).update(head_text(self.sample_set, self.sort, self.filter, len(self.shown)))
        table = self.query_one("#samples-list", DataTable)
        table.clear()
        for sample in self.shown:
            cells: list[str | Text] = [sample.fname, *(f"{score.final:6.2f}" for score in sample.scores)]
            if sample.diff is not None:
                cells.append(Text(f"{sample.diff:+.2f}", style="green" if sample.diff > 0 else "red" if sample.diff < 0 else ""))
            flags = sorted({name for flags in sample.flags for name in flags})
            cells.append(" ".join(FLAG_LABELS[name].split()[0] for name in flags))
            table.add_row(*cells, key=sample.fname)
        self._show_detail(0)

    def _show_detail(self, index: int) -> None:
        text = self.query_one("#samples-text", Static)
        if not self.shown:
            rule = f": {RULES[self.filter]}" if self.filter else ""
            text.update(Text(f"no dialogue matches filter {self.filter}{rule}", style="dim"))
            return
        labels = [run["label"] for run in self.sample_set.runs]
        text.update(detail_text(self.shown[min(index, len(self.shown) - 1)], labels))
        self.query_one("#samples-detail", VerticalScroll).scroll_home(animate=False)

    @on(DataTable.RowHighlighted, "#samples-list")
    def _on_highlight(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail(event.cursor_row)

    def action_cycle_sort(self) -> None:
        self.sort = self.sorts[(self.sorts.index(self.sort) + 1) % len(self.sorts)]
        self._refresh_view()

    def action_cycle_filter(self) -> None:
        cycle: list[str | None] = [None, *FILTERS]
        self.filter = cycle[(cycle.index(self.filter) + 1) % len(cycle)]
        self._refresh_view()
        if self.filter:
            self.notify(RULES[self.filter], title=f"filter {self.filter}", timeout=4)
