"""Provides OverlayPlot: several runs' curves on one plotext chart, one colour per run, and the legend."""

from __future__ import annotations

from rich.text import Text
from textual_plotext import PlotextPlot

# RGB, so the plot and the legend (Rich) show exactly the same colour for a run.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 190, 255), (255, 110, 190), (120, 210, 80), (255, 165, 0), (175, 135, 255), (255, 85, 85), (230, 220, 90),
)


def run_colour(index: int) -> tuple[int, int, int]:
    """The colour of the index-th run (the palette repeats after seven runs)."""
    return PALETTE[index % len(PALETTE)]


def legend(labels: list[str]) -> Text:
    """One coloured ■ and label per run, in plot order."""
    text = Text()
    for i, label in enumerate(labels):
        text.append("■ ", style="rgb({},{},{})".format(*run_colour(i)))
        text.append(label + ("   " if i < len(labels) - 1 else ""))
    return text


class OverlayPlot(PlotextPlot):
    """Feed it with :meth:`show`; runs without points are left out (the legend still lists them)."""

    def show(self, title: str, series: list[list[tuple[float, float]]], empty_note: str = "no points") -> None:
        """Plot one line per run; ``series[i]`` is run i's (x, y) points, drawn in ``run_colour(i)``."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        drawn = False
        for i, points in enumerate(series):
            if points:
                plt.plot([x for x, _ in points], [y for _, y in points], marker="braille", color=run_colour(i))
                drawn = True
        plt.title(title if drawn else f"{title}: {empty_note}")
        self.refresh()
