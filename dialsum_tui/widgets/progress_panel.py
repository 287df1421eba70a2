"""Provides ProgressPanel: the selected run's progress, speed, ETA, loss curve and ROUGE per eval."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from dialsum_tui.manager.models import Run
from dialsum_tui.widgets.formatting import bar, duration, progress_fraction


def _num(event: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = event.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return None


def render_progress(run: Run | None, width: int = 12) -> Text:
    """Render the stage, a progress bar, tokens/s and ETA of ``run``."""
    if run is None:
        return Text("no run selected", style="dim")
    p = run.progress
    fraction = progress_fraction(run)
    text = Text(f"{run.stage or run.action.value} ", style="bold")
    text.append(bar(fraction or 0.0, width), style="green")
    if fraction is not None:
        text.append(f" {fraction * 100:3.0f}%  {p.get('step')}/{p.get('total')}")
    details = []
    if isinstance(p.get("epoch"), (int, float)):
        details.append(f"epoch {p['epoch']:.2f}")
    if isinstance(p.get("tokens_per_s"), (int, float)):
        details.append(f"{p['tokens_per_s']:,.0f} tok/s")
    if run.state.is_active and p.get("eta_s") is not None:
        details.append(f"ETA {duration(p.get('eta_s'))}")
    if details:
        text.append("\n" + " · ".join(details), style="dim")
    if run.failure_kind:
        # The verdict is what a user of a failed run needs first: what broke, and what to do.
        text.append(f"\n✖ {run.failure_kind} in {run.failed_stage or run.stage}: ", style="bold red")
        text.append(run.failure_message or "", style="red")
        if run.failure_hint:
            text.append(f"\n→ {run.failure_hint}", style="yellow")
    elif run.state.is_active and run.reason:
        text.append(f"\n⏸ {run.reason}", style="yellow")
    return text


def render_evals(evals: list[dict[str, Any]]) -> Table | Text:
    """Render one row per ``eval`` event: R1/R2/RL and the final score, all × 100 to fit narrow panels."""
    if not evals:
        return Text("no evaluation yet", style="dim")
    table = Table("eval", "R1", "R2", "RL", "final", box=None, padding=(0, 1), header_style="bold")
    for event in evals:
        epoch = _num(event, "epoch")
        label = f"ep {epoch:.1f}" if epoch is not None else str(event.get("split") or event.get("command") or "final")
        cells = [f"{v * 100:.1f}" if (v := _num(event, k, k.replace("rouge", "rouge_"))) is not None else "-"
                 for k in ("rouge1", "rouge2", "rougeL")]
        final = _num(event, "final", "final_score")
        table.add_row(label, *cells, f"{final:.1f}" if final is not None else "-")
    return table


class ProgressPanel(Vertical):
    """Fed by the app: ``show_run`` with the store's progress, ``add_events`` with new events."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._loss: list[tuple[float, float]] = []
        self._evals: list[dict[str, Any]] = []
        self._shown: Text | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="progress-text")
        yield PlotextPlot(id="loss-plot")
        yield Static(id="rouge-table")

    def on_mount(self) -> None:
        self.border_title = "Progress & metrics"
        self._replot()
        self.query_one("#rouge-table", Static).update(render_evals([]))

    def reset(self) -> None:
        """Forget the previous run's curve and scores."""
        self._loss.clear()
        self._evals.clear()
        self._replot()
        self.query_one("#rouge-table", Static).update(render_evals([]))

    def show_run(self, run: Run | None) -> None:
        """Render the store's progress for ``run`` unless it is unchanged."""
        text = render_progress(run)
        if text != self._shown:
            self._shown = text
            self.query_one("#progress-text", Static).update(text)

    def add_events(self, events: list[dict[str, Any]]) -> None:
        """Take ``train_log`` losses and ``eval`` scores from new events."""
        new_loss = new_eval = False
        for event in events:
            kind = event.get("event")
            if kind == "train_log":
                loss, step = _num(event, "loss", "train_loss"), _num(event, "step")
                if loss is not None:
                    self._loss.append((step if step is not None else len(self._loss), loss))
                    new_loss = True
            elif kind == "eval" and _num(event, "rouge1", "final", "final_score") is not None:
                self._evals.append(event)
                new_eval = True
        if new_loss:
            self._replot()
        if new_eval:
            self.query_one("#rouge-table", Static).update(render_evals(self._evals))

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
