"""Provides ProgressPanel: the selected run's progress, speed, ETA, loss curve and ROUGE per eval."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.snapshot import Eval, RunSnapshot
from dialsum_tui.widgets.formatting import bar, duration, progress_fraction
from engine.units import format_bytes, format_rouge


def render_progress(snapshot: RunSnapshot | None, width: int = 12) -> Text:
    """Render the stage, a progress bar, tokens/s and ETA of the run in ``snapshot``."""
    if snapshot is None:
        return Text("no run selected", style="dim")
    run, p = snapshot.run, snapshot.progress
    fraction = progress_fraction(p)
    text = Text(f"{run.stage or run.action.value} ", style="bold")
    text.append(bar(fraction or 0.0, width), style="green")
    if fraction is not None and p is not None:
        text.append(f" {fraction * 100:3.0f}%  {p.step}/{p.total}")
    details = []
    if p is not None and p.epoch is not None:
        details.append(f"epoch {p.epoch:.2f}")
    if p is not None and p.tokens_per_s is not None:
        details.append(f"{p.tokens_per_s:,.0f} tok/s")
    if run.state.is_active and p is not None and p.eta_s is not None:
        details.append(f"ETA {duration(p.eta_s)}")
    if details:
        text.append("\n" + " · ".join(details), style="dim")
    if run.backend != "local":  # where it runs: the Slurm job to look up
        text.append(f"\non {run.backend}" + (f" · job {run.job_id}" if run.job_id else ""), style="dim")
    if run.failure_kind:
        # The verdict is what a user of a failed run needs first: what broke, and what to do.
        text.append(f"\n✖ {run.failure_kind} in {run.failed_stage or run.stage}: ", style="bold red")
        text.append(run.failure_message or "", style="red")
        if run.failure_hint:
            text.append(f"\n→ {run.failure_hint}", style="yellow")
    elif run.state.is_active and run.reason:
        text.append(f"\n⏸ {run.reason}", style="yellow")
    if snapshot.resume is not None:  # a stopped training with a complete checkpoint
        text.append(f"\nR resumes from {snapshot.resume.where}", style="bold green")
    if snapshot.resumed:
        text.append(f"\n↻ {snapshot.resumed}", style="cyan")
    if run.state in (RunState.QUEUED, RunState.WAITING) and snapshot.footprint:
        text.append(f"\nwill add ~{format_bytes(snapshot.footprint)} to the disk", style="dim")
    return text


def render_evals(evals: Sequence[Eval]) -> Table | Text:
    """Render one row per scored ``eval`` event: R1/R2/RL and the final score, all × 100 to fit narrow panels."""
    if not evals:
        return Text("no evaluation yet", style="dim")
    # One space between columns and none at the edges: "ep 1.0 41.00 22.00 39.00 34.00" fits a 30-cell panel.
    table = Table("eval", "R1", "R2", "RL", "final", box=None, padding=(0, 0, 0, 1), pad_edge=False,
                  header_style="bold")
    for record in evals:
        label = f"ep {record.epoch:.1f}" if record.epoch is not None else (record.split or record.command or "final")
        cells = [format_rouge(v) for v in (record.rouge1, record.rouge2, record.rougeL)]
        table.add_row(label, *cells, format_rouge(record.final, x100=True))
    return table


class ProgressPanel(Vertical):
    """Renders the :class:`RunSnapshot` the app hands down with :meth:`show`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._loss: tuple[tuple[float, float], ...] = ()
        self._evals: tuple[Eval, ...] = ()
        self._shown: Text | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="progress-text")
        yield PlotextPlot(id="loss-plot")
        yield Static(id="rouge-table")

    def on_mount(self) -> None:
        self.border_title = "Progress & metrics"
        self._replot()
        self.query_one("#rouge-table", Static).update(render_evals(()))
        self.query_one("#progress-text", Static).update(render_progress(None))

    def show(self, snapshot: RunSnapshot | None) -> None:
        """Render ``snapshot``, redrawing only the parts that changed."""
        # The bar takes what "train " and " 100%  780/780" leave of the panel's width.
        text = render_progress(snapshot, width=min(30, max(6, self.content_region.width - 21)))
        if text != self._shown:
            self._shown = text
            self.query_one("#progress-text", Static).update(text)
        loss = snapshot.loss if snapshot else ()
        if loss is not self._loss and loss != self._loss:
            self._loss = loss
            self._replot()
        evals = snapshot.evals if snapshot else ()
        if evals is not self._evals and evals != self._evals:
            self._evals = evals
            self.query_one("#rouge-table", Static).update(render_evals(evals))

    @property
    def loss_points(self) -> list[tuple[float, float]]:
        """The (step, loss) points on the curve."""
        return list(self._loss)

    def _replot(self) -> None:
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.title("train loss")
        if self._loss:
            plt.plot([x for x, _ in self._loss], [y for _, y in self._loss], marker="braille")
        plot.refresh()
