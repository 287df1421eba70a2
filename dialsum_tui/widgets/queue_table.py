"""Provides QueueTable: the run queue with state, progress, ETA and the guard's reason."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable

from dialsum_tui.manager.models import Run
from dialsum_tui.manager.snapshot import run_progress
from dialsum_tui.widgets.formatting import (
    STATE_ICONS,
    duration,
    progress_fraction,
    run_note,
)

# (key, label, width). The columns a narrow (80×24) terminal must show come first; the rest scroll
# horizontally. Widths are fixed: DataTable measures auto widths on idle, after it may already have
# cached the header and the cursor row at the old widths (seen as a cropped first row).
COLUMNS = (("id", "ID", 3), ("state", "State", 11), ("model", "Model", 26), ("pct", "%", 4), ("eta", "ETA", 6),
           ("stage", "Stage", 16), ("step", "Step", 9), ("note", "Note", 64))


def run_cells(run: Run) -> tuple[str, ...]:
    """Return the table cells for one run, in column order."""
    progress = run_progress(run)
    fraction = progress_fraction(progress)
    step, total = (progress.step, progress.total) if progress else (None, None)
    active = run.state.is_active
    return (
        str(run.id),
        STATE_ICONS[run.state],
        run.nickname,
        f"{fraction * 100:.0f}%" if fraction is not None else "",
        duration(progress.eta_s) if active and progress else "",
        f"{run.stage or '-'}" + (f" ({run.action.value})" if run.action.value != "pipeline" else ""),
        f"{step}/{total}" if step is not None and total else "",
        run_note(run),
    )


class QueueTable(DataTable):
    """One row per run in queue order; the row key is the run id."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._rows: dict[str, tuple[str, ...]] = {}
        self.marked: frozenset[int] = frozenset()  # runs marked for compare: ● before the id

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    @property
    def selected_run_id(self) -> int | None:
        """The id of the run under the cursor, or None when the queue is empty."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return int(key.value) if key.value is not None else None

    def show_runs(self, runs: Sequence[Run]) -> None:
        """Render ``runs``, touching only the cells that changed and keeping the cursor on its run."""
        rows = {str(run.id): _marked(run_cells(run), run.id in self.marked) for run in runs}
        if list(rows) == list(self._rows):
            for key, cells in rows.items():
                for (column, _, _), old, new in zip(COLUMNS, self._rows[key], cells):
                    if old != new:
                        self.update_cell(key, column, new)
        else:
            selected = self.selected_run_id
            self.clear()
            for key, cells in rows.items():
                self.add_row(*cells, key=key)
            if selected is not None and str(selected) in rows:
                self.move_cursor(row=self.get_row_index(str(selected)))
        self._rows = rows

    def set_marked(self, run_ids: list[int]) -> None:
        """Show ● before the ids of ``run_ids`` (and only those)."""
        self.marked = frozenset(run_ids)
        for key, cells in self._rows.items():
            new = _marked((key, *cells[1:]), int(key) in self.marked)
            if new[0] != cells[0]:
                self.update_cell(key, "id", new[0])
                self._rows[key] = new


def _marked(cells: tuple[str, ...], marked: bool) -> tuple[str, ...]:
    return (f"●{cells[0]}", *cells[1:]) if marked else cells
