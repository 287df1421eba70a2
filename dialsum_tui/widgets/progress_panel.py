"""Provides ProgressPanel: the selected run's progress, speed, ETA, its loss and ROUGE curves and ROUGE per eval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from dialsum_tui.manager.snapshot import failure_headline
from dialsum_tui.widgets.formatting import bar, duration, progress_fraction, sparkline
from engine.units import format_bytes, format_rouge

if TYPE_CHECKING:
    from rich.table import Table

    from dialsum_tui.manager.snapshot import Eval, RunSnapshot

LABEL = 6  # "loss  ", "ROUGE "


def render_progress(snapshot: RunSnapshot | None, width: int = 12) -> Text:
    """Render the stage, a progress bar, ETA, tokens/s and epoch of the run in ``snapshot`` (one line
    each, cut at the panel's edge: the ETA first, as it matters most)."""
    if snapshot is None:
        return Text("no run selected", style="dim")
    run, p = snapshot.run, snapshot.progress
    fraction = progress_fraction(p)
    text = Text(f"{run.stage or run.action.value} ", style="bold")
    text.append(bar(fraction or 0.0, width), style="green")
    if fraction is not None and p is not None:
        text.append(f" {fraction * 100:3.0f}%  {p.step}/{p.total}")
    details = []
    if run.state.is_active and p is not None and p.eta_s is not None:
        details.append(f"ETA {duration(p.eta_s)}")
    if p is not None and p.tokens_per_s is not None:
        details.append(f"{p.tokens_per_s:,.0f} tok/s")
    if p is not None and p.epoch is not None:
        details.append(f"epoch {p.epoch:.2f}")
    if details:
        text.append("\n" + " · ".join(details), style="dim")
    if run.backend != "local":  # where it runs: the Slurm job to look up
        text.append(f"\non {run.backend}" + (f" · job {run.job_id}" if run.job_id else ""), style="dim")
    return text


def render_verdict(snapshot: RunSnapshot | None) -> Text:
    """What to know besides progress: a failure's cause and hint, a guard's reason, where it resumes,
    what a queued run will add to the disk (wrapped: these are read whole)."""
    text = Text()
    if snapshot is None:
        return text
    run = snapshot.run
    failed = failure_headline(run)
    if failed:
        # The verdict is what a user of a failed run needs first: what broke (its cause, not the
        # message's heading), and what to do. The whole message is one key away (enter on the queue).
        text.append(f"✖ {failed}", style="bold red")
        if run.failure_hint:
            text.append(f"\n→ {run.failure_hint}", style="yellow")
    elif run.state.is_active and run.reason:
        text.append(f"⏸ {run.reason}", style="yellow")
    if snapshot.resume is not None:  # a stopped training with a complete checkpoint
        text.append(f"\nR resumes from {snapshot.resume.where}", style="bold green")
    if snapshot.resumed:
        text.append(f"\n↻ {snapshot.resumed}", style="cyan")
    if run.state.value in ("queued", "waiting") and snapshot.footprint:
        text.append(f"\nwill add ~{format_bytes(snapshot.footprint)} to the disk", style="dim")
    return text[1:] if text.plain.startswith("\n") else text


def eval_score(record: Eval) -> float | None:
    """An eval's score ×100: its ``final``, else the mean of R1/R2/RL."""
    if record.final is not None:
        return record.final
    parts = [v for v in (record.rouge1, record.rouge2, record.rougeL) if v is not None]
    return sum(parts) / len(parts) * 100 if parts else None


def render_curves(loss: Sequence[tuple[float, float]], evals: Sequence[Eval], width: int) -> Text:
    """Two one-line curves that fit any panel: the train loss and the ROUGE per eval, each with its last value."""
    room = max(4, width - LABEL - 14)
    text = Text()
    text.append("loss  ", style="bold")
    if loss:
        last_step, last = loss[-1]
        text.append(sparkline([y for _, y in loss], room), style="cyan")
        text.append(f" {last:.3f}", style="bold")
        text.append(f" @{last_step:.0f}", style="dim")
    else:
        text.append("no loss logged yet", style="dim")
    text.append("\nROUGE ", style="bold")
    scores = [s for s in (eval_score(e) for e in evals) if s is not None]
    if scores:
        if len(scores) > 1:
            text.append(sparkline(scores, room) + " ", style="green")
        text.append(format_rouge(scores[-1], x100=True), style="bold")
        text.append(f" ({len(scores)} eval{'s' if len(scores) > 1 else ''})", style="dim")
    else:
        text.append("no evaluation yet", style="dim")
    return text


def render_evals(evals: Sequence[Eval]) -> Table | Text:
    """Render one row per scored ``eval`` event: R1/R2/RL and the final score, all × 100 to fit narrow panels
    (nothing before the first: the ROUGE curve's line says so)."""
    if not evals:
        return Text("")
    from rich.table import Table  # not on the first frame's path: a run's evals come later
    # One space between columns and none at the edges: "ep 1.0 41.00 22.00 39.00 34.00" fits a 30-cell panel.
    table = Table("eval", "R1", "R2", "RL", "final", box=None, padding=(0, 0, 0, 1), pad_edge=False,
                  header_style="bold")
    for record in evals:
        label = f"ep {record.epoch:.1f}" if record.epoch is not None else (record.split or record.command or "final")
        cells = [format_rouge(v) for v in (record.rouge1, record.rouge2, record.rougeL)]
        table.add_row(label, *cells, format_rouge(record.final, x100=True))
    return table


class ProgressPanel(Vertical):
    """Renders the :class:`RunSnapshot` the app hands down with :meth:`show`, as one text: the bar and
    speed (one line each, cut at the edge), the cause of a failed or held run, the loss and ROUGE
    curves (one line each) and, where the screen has the rows (:meth:`fit`), the per-eval table.

    A full loss chart (textual-plotext) replaces the one-line curves only when the screen asks for it
    (48 rows and up): it is mounted then, so smaller terminals and the first frame never load plotext.
    One text rather than a widget per part: each widget costs the first frame its styling and layout.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._loss: tuple[tuple[float, float], ...] = ()
        self._evals: tuple[Eval, ...] = ()
        self._snapshot: RunSnapshot | None = None
        self._chart = False
        self._table = False
        self._shape: tuple | None = None  # what decides the text's height, to lay out only when it changes
        self.text = Text()  # what the panel shows (plain text for tests and the chart's neighbours)

    def compose(self) -> ComposeResult:
        yield Static(id="progress-body")

    def on_mount(self) -> None:
        self.border_title = "Progress & metrics"

    def on_resize(self) -> None:
        self._redraw()

    def fit(self, chart: bool, table: bool) -> None:
        """What the screen has room for: the full chart (from 48 rows) and the per-eval table (from 36)."""
        self._table = table
        if chart != self._chart:
            self._chart = chart
            self.set_class(chart, "-chart")
            if chart:
                self._mount_chart()
        self._redraw()

    def show(self, snapshot: RunSnapshot | None) -> None:
        """Render ``snapshot``; the chart is drawn again only when the loss changed."""
        self._snapshot = snapshot
        loss = snapshot.loss if snapshot else ()
        if loss is not self._loss and loss != self._loss:
            self._loss = loss
            if self._chart:
                self._replot()
        self._evals = snapshot.evals if snapshot else ()
        self._redraw()

    def _redraw(self) -> None:
        width = self.content_region.width or 30
        # The bar takes what "train " and " 100%  780/780" leave of the panel's width.
        progress = render_progress(self._snapshot, width=min(30, max(6, width - 21)))
        progress.no_wrap, progress.overflow = True, "ellipsis"
        verdict = render_verdict(self._snapshot)
        parts: list[Text | Table] = [progress]
        if verdict.plain:
            parts.append(verdict)
        if not self._chart:
            curves = render_curves(self._loss, self._evals, width)
            curves.no_wrap, curves.overflow = True, "ellipsis"
            parts.append(curves)
        if (self._table or self._chart) and self._evals:
            parts.append(render_evals(self._evals))
        text = Text("\n").join(part for part in parts if isinstance(part, Text))
        shape = (progress.plain.count("\n"), verdict.plain, self._chart, len(self._evals) if self._table else 0, width)
        if text == self.text and shape == self._shape:
            return
        self.text = text
        body = self.query_one("#progress-body", Static)
        body.update(Group(*parts), layout=shape != self._shape)
        self._shape = shape

    @property
    def loss_points(self) -> list[tuple[float, float]]:
        """The (step, loss) points on the curve."""
        return list(self._loss)

    def _mount_chart(self) -> None:
        if not self.query("#loss-plot"):
            from textual_plotext import PlotextPlot

            self.mount(PlotextPlot(id="loss-plot"))
        self.call_after_refresh(self._replot)

    def _replot(self) -> None:
        plots = self.query("#loss-plot")
        if not plots:
            return
        plot = plots.first()
        plt = plot.plt
        plt.clear_data()
        plt.title("train loss")
        if self._loss:
            plt.plot([x for x, _ in self._loss], [y for _, y in self._loss], marker="braille")
        plot.refresh()
