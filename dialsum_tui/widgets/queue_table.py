"""Provides QueueTable: the run queue, its columns fitted to the room it has, a sweep's runs under its
group row (as ``ls`` draws them), and the detail line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.events import Resize
from textual.widgets import DataTable

from dialsum_tui.manager.snapshot import focus_run, run_progress
from dialsum_tui.widgets.formatting import STATE_ICONS, duration, fit_cell, progress_fraction, run_note

if TYPE_CHECKING:
    from dialsum_tui.manager.runs.sweeps import SweepStatus
    from dialsum_tui.manager.snapshot import Run

# key -> (label, width). Widths are set, never measured: DataTable measures auto widths on idle,
# after it may already have cached the header and the cursor row at the old widths (a cropped row).
# The id's width follows the largest id (``layout_columns``): run 1000 must not read "10…".
COLUMN_SPECS: dict[str, tuple[str, int]] = {
    "id": ("ID", 3), "state": ("State", 11), "model": ("Model", 28), "pct": ("%", 4), "eta": ("ETA", 6),
    "user": ("By", 8), "step": ("Step", 9), "stage": ("Stage", 16), "note": ("Note", 0),
}
# Which columns a narrower table gives up first: the last of this list goes first. The note is
# the last to go because the detail line under the table repeats it in full.
PRIORITY = ("id", "state", "model", "pct", "note", "eta", "user", "step", "stage")
ORDER = ("id", "state", "model", "pct", "eta", "stage", "step", "user", "note")
CELL_PAD = 2  # DataTable's cell_padding=1 on both sides
MIN_NOTE = 12
ROOM_FOR_NOTE = 40  # an optional column is shown only if the note keeps this many cells
MIN_MODEL = 10
SCROLLBAR = 2
MARK = "●"  # before the id of a run marked for compare
EXPANDED, COLLAPSED = "▾", "▸"  # before a sweep's nickname on its group row
# A group row's state in a state column cut to its icon: the sweep's state (SweepStatus.state).
SWEEP_ICONS = {"running": "▶", "queued": "○", "ended": "✔"}


def id_width(largest_id: int) -> int:
    """Cells the ID column needs for ``largest_id`` and a compare mark before it (at least the header's 3)."""
    return max(COLUMN_SPECS["id"][1], len(str(largest_id)) + len(MARK))


def layout_columns(width: int, longest_nickname: int = 28, largest_id: int = 99) -> list[tuple[str, str, int]]:
    """Return ``(key, label, width)`` of the columns that fit ``width`` cells, in display order.

    The id column always fits the largest id; the state shrinks to its icon and the model to
    ``MIN_MODEL`` cells before a column is given up; the note takes whatever is left (at least ``MIN_NOTE``).
    """
    room = max(width - SCROLLBAR, 0)
    widths = {key: spec[1] for key, spec in COLUMN_SPECS.items()}
    widths["id"] = id_width(largest_id)
    # The model takes at most a third of a narrow table, so the note is not squeezed to nothing.
    widths["model"] = max(MIN_MODEL, min(longest_nickname, widths["model"], room // 3))
    widths["note"] = MIN_NOTE
    keys = list(PRIORITY)

    def used() -> int:
        return sum(widths[k] + CELL_PAD for k in keys)

    # Give up optional columns, least useful first, until the note keeps room to be read.
    while len(keys) > 5 and used() + ROOM_FOR_NOTE - MIN_NOTE > room:
        keys.pop()
    if used() > room:
        widths["state"] = 2  # the icon alone: ▶ ◷ ✔ ✖
    if used() > room:
        widths["model"] = max(MIN_MODEL, widths["model"] - (used() - room))
    if used() > room:
        keys.remove("note")  # the detail line under the table still shows it
    if "note" in keys:
        widths["note"] = max(MIN_NOTE, room - used() + MIN_NOTE)
    labels = {key: COLUMN_SPECS[key][0] if widths[key] > 2 or key != "state" else "" for key in keys}
    return [(key, labels[key], widths[key]) for key in ORDER if key in keys]


def run_cells(run: Run) -> dict[str, str]:
    """Return every cell a run can show, by column key."""
    progress = run_progress(run)
    fraction = progress_fraction(progress)
    step, total = (progress.step, progress.total) if progress else (None, None)
    active = run.state.is_active
    return {
        "id": str(run.id),
        "state": STATE_ICONS[run.state],
        "model": run.nickname,
        "pct": f"{fraction * 100:.0f}%" if fraction is not None else "",
        "eta": duration(progress.eta_s) if active and progress else "",
        "stage": f"{run.stage or '-'}" + (f" ({run.action.value})" if run.action.value != "pipeline" else ""),
        "step": f"{step}/{total}" if step is not None and total else "",
        "user": run.user or "-",
        "note": run_note(run),
    }


def sweep_cells(status: SweepStatus, collapsed: bool) -> dict[str, str]:
    """Return every cell a sweep's group row can show, by column key: its id, ``▾ kobart ×4``, ``3/4 done``
    and, as ``ls`` words it, the swept keys, what did not succeed and its best."""
    from dialsum_tui.cli_output import sweep_note  # a sweep comes with the manager loaded: off the first frame

    running = sum(run.state.value == "running" for run in status.runs)
    users = {run.user for run in status.runs}
    return {
        "id": status.id,
        "state": f"{status.done}/{status.total} done",
        "model": f"{COLLAPSED if collapsed else EXPANDED} {status.sweep.nickname} ×{status.total}",
        "pct": "",
        "eta": "",
        "stage": f"{running} running" if running else "-",
        "step": "",
        "user": (users.pop() or "-") if len(users) == 1 else "-",
        "note": sweep_note(status),
    }


def member_name(status: SweepStatus, run: Run) -> str:
    """A sweep's run under its group row: indented, named by what sets it apart (``lr1e-4-r8``), as in ``ls``."""
    from dialsum_tui.cli_output import variant_name

    return variant_name(status, run.nickname)


def render_sweep_detail(status: SweepStatus, collapsed: bool) -> Text:
    """A sweep's group row under the table, two lines like a run's: what it is and how far, then its
    note (as ``ls`` words it) and what the keys do here."""
    from dialsum_tui.cli_output import sweep_note

    head = [f"sweep {status.id}", f"{status.sweep.nickname} ×{status.total}", status.progress_text,
            f"sweep of {status.keys_text}", status.state]
    text = Text(" · ".join(head), style="bold")
    note = sweep_note(status).removeprefix(f"sweep of {status.keys_text}").lstrip(" ·")
    keys = f"enter {'expands' if collapsed else 'collapses'} · c compares the sweep · ↓ a run of it for the other keys"
    text.append("\n" + (f"{note} · " if note else "") + keys, style="dim")
    return text


def render_detail(run: Run | None) -> Text:
    """The selected run under the table, always two lines (the table's height never jumps): who and
    where it is, then its note — a failure's cause first — or its config; enter shows everything."""
    if run is None:
        return Text("no run selected · a adds one\n", style="dim")
    cells = run_cells(run)
    head = [f"run {run.id}", run.nickname, cells["state"], run.action.value]
    if run.stage:
        head.append(f"stage {run.stage}" + (f" {cells['step']}" if cells["step"] else ""))
    if cells["eta"]:
        head.append(f"ETA {cells['eta']}")
    head.append(f"GPU {run.gpus}" if run.gpus else "any GPU")
    if run.after is not None:
        head.append(f"after run {run.after}")
    head.append(f"by {run.user}" if run.user else "by -")
    text = Text(" · ".join(head), style="bold")
    note = cells["note"]
    if note:
        text.append("\n" + ("✖ " if run.failure_kind else "") + note, style="red" if run.failure_kind else "yellow")
    else:
        text.append(f"\nconfig {run.config_path} · enter: the run in full", style="dim")
    return text


class QueueTable(DataTable, inherit_bindings=False):
    """One row per run in queue order; the row key is the run id; columns follow the widget's width.

    A sweep's runs stand under its group row (row key: the sweep's id, ``s1``), placed where its first
    run stands, as ``ls`` draws them; a group is expanded while the sweep runs and collapsed once it
    ended, unless ``toggle_sweep`` (enter on the group row) said otherwise.

    Opens on :func:`focus_run` (the running run, else the latest). Home/End go to the first/last row;
    ← → are left to the screen (they scroll the log sideways); enter posts ``RowSelected`` (the app
    shows the run in full, or collapses/expands a group).
    """

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "scroll_top", "First run", show=False),
        Binding("end,ctrl+end", "scroll_bottom", "Last run", show=False),
        Binding("enter", "select_cursor", "Details", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._runs: dict[str, Run] = {}
        self._sweeps: dict[str, SweepStatus] = {}  # the sweeps shown as groups, by id (``s1``)
        self._collapsed: dict[str, bool] = {}  # a group the user collapsed (True) or expanded (False) with enter
        self._rows: dict[str, tuple[str, ...]] = {}
        self._cells: dict[str, tuple[object, tuple[str, ...]]] = {}  # per row: what its cells were made from
        self._columns: list[tuple[str, str, int]] = []
        self._shape: tuple[int, int] = (0, 0)  # (longest nickname, largest id) the columns were fitted to
        self._focused_once = False
        self.marked: frozenset[int] = frozenset()  # runs marked for compare: ● before the id

    def on_resize(self, event: Resize) -> None:
        # The columns are made here, at the first size, not at mount (at a guessed width, then again).
        self._fit(event.size.width)
        # A shorter table (a taller detail, a smaller terminal) must not hide the selected row.
        self.call_after_refresh(self._keep_cursor_in_view)

    def _keep_cursor_in_view(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.cursor_row, scroll=True)

    @property
    def column_keys(self) -> list[str]:
        """The keys of the columns shown now (tests, the narrow layouts)."""
        return [key for key, _, _ in self._columns]

    def _fit(self, width: int) -> None:
        columns = layout_columns(width, *self._shape_of(self._runs.values()))
        if columns == self._columns:
            return
        selected = self.selected_key
        self._columns = columns
        self.clear(columns=True)
        for key, label, col_width in columns:
            self.add_column(label, key=key, width=col_width)
        self._rows, self._cells = {}, {}
        self._render_rows(selected)

    @staticmethod
    def _shape_of(runs) -> tuple[int, int]:
        runs = list(runs)
        return (max((cell_len(run.nickname) for run in runs), default=20), max((run.id for run in runs), default=99))

    @property
    def selected_key(self) -> str | None:
        """The row key under the cursor: a run id, or a sweep's id on its group row; None when empty."""
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    @property
    def selected_run_id(self) -> int | None:
        """The id of the run under the cursor; None when the queue is empty or the cursor is on a group row."""
        key = self.selected_key
        return int(key) if key is not None and key.isdigit() else None

    @property
    def selected_sweep(self) -> SweepStatus | None:
        """The sweep whose group row is under the cursor, or None."""
        key = self.selected_key
        return self._sweeps.get(key) if key is not None else None

    @property
    def shown_run_id(self) -> int | None:
        """The run the log and progress panels follow: the selected run; on a group row, the sweep's
        running run, else the one that started or ended last (:func:`focus_run` of its runs)."""
        sweep = self.selected_sweep
        if sweep is None:
            return self.selected_run_id
        return focus_run([run for run in self._runs.values() if run.sweep == sweep.id])

    def is_collapsed(self, sweep: SweepStatus) -> bool:
        """Whether ``sweep``'s group shows its group row alone: as the user left it with enter, else
        collapsed once the sweep ended."""
        return self._collapsed.get(sweep.id, sweep.ended)

    def toggle_sweep(self, sweep_id: str) -> bool:
        """Collapse or expand a sweep's group (the cursor stays on its group row); returns True when collapsed."""
        sweep = self._sweeps.get(sweep_id)
        if sweep is None:
            return False
        collapsed = self._collapsed[sweep_id] = not self.is_collapsed(sweep)
        self._render_rows(sweep_id)
        return collapsed

    def show_runs(self, runs: Sequence[Run], sweeps: Sequence[SweepStatus] = ()) -> None:
        """Render ``runs`` (and ``sweeps`` as groups), touching only the cells that changed and keeping the
        cursor on its row; the first time there are runs, the cursor goes to :func:`focus_run` (to its
        group row when that run is in a collapsed group)."""
        self._runs = {str(run.id): run for run in runs}
        present = {run.sweep for run in runs if run.sweep}
        self._sweeps = {sweep.id: sweep for sweep in sweeps if sweep.id in present}
        shape = self._shape_of(runs)
        first = not self._focused_once and bool(runs)
        selected = str(focus_run(runs)) if first else self.selected_key
        self._focused_once = self._focused_once or first
        if shape != self._shape:  # the model and id columns follow the longest nickname and the largest id
            self._shape, self._columns = shape, []
            self._fit(self.size.width or 80)
        else:
            self._render_rows(selected)
        if first and selected is not None:
            where = self._visible(selected)
            if where is not None:
                self.move_cursor(row=self.get_row_index(where), scroll=True)

    def _visible(self, key: str) -> str | None:
        """The row that stands for ``key`` now: itself, its group row when its group is collapsed, or None."""
        if key in self._rows:
            return key
        run = self._runs.get(key)
        return run.sweep if run is not None and run.sweep in self._rows else None

    def _layout(self) -> list[tuple[str, object]]:
        """``(row key, what it shows)`` in display order: a run alone, or a group row (its sweep) where
        the sweep's first run stands with the sweep's runs under it unless collapsed (``ls``'s order)."""
        members: dict[str, list[tuple[str, Run]]] = {}
        for rid, run in self._runs.items():
            if run.sweep in self._sweeps:
                members.setdefault(run.sweep, []).append((rid, run))
        out: list[tuple[str, object]] = []
        for rid, run in self._runs.items():
            sweep = self._sweeps.get(run.sweep) if run.sweep else None
            if sweep is None:
                out.append((rid, run))
                continue
            group = members.pop(sweep.id, None)
            if group is None:
                continue  # under its group row already
            out.append((sweep.id, sweep))
            if not self.is_collapsed(sweep):
                out += [(mid, (member, sweep)) for mid, member in group]
        return out

    def _render_rows(self, selected: str | None) -> None:
        keys = self.column_keys
        rows = {rid: self._row(rid, shown, keys) for rid, shown in self._layout()}
        if list(rows) == list(self._rows):
            for rid, cells in rows.items():
                old_cells = self._rows[rid]
                if old_cells is cells:
                    continue
                for key, old, new in zip(keys, old_cells, cells):
                    if old != new:
                        self.update_cell(rid, key, new)
            self._rows = rows
        else:
            self.clear()
            for rid, cells in rows.items():
                self.add_row(*cells, key=rid)
            self._rows = rows
            # The cursor stays on its row; a run folded into its group leaves it on the group row.
            where = self._visible(selected) if selected is not None else None
            if where is not None:
                self.move_cursor(row=self.get_row_index(where))

    def _row(self, rid: str, shown: object, keys: list[str]) -> tuple[str, ...]:
        """The row's cells, made again only when what it shows changed (a 1,000-run queue redraws one row a second)."""
        source: object = (shown, self.is_collapsed(shown)) if rid in self._sweeps else shown
        cached = self._cells.get(rid)
        if cached is not None and cached[0] == source:
            return cached[1]
        if rid in self._sweeps:
            cells = self._group_cells(shown, keys)  # type: ignore[arg-type]
        elif isinstance(shown, tuple):
            cells = self._make_cells(shown[0], keys, member_name(shown[1], shown[0]))
        else:
            cells = self._make_cells(shown, keys)  # type: ignore[arg-type]
        self._cells[rid] = (source, cells)
        return cells

    def _make_cells(self, run: Run, keys: list[str], name: str | None = None) -> tuple[str, ...]:
        cells = run_cells(run)
        if name is not None:
            cells["model"] = name
        if run.id in self.marked:
            cells["id"] = f"{MARK}{cells['id']}"
        widths = {k: w for k, _, w in self._columns}
        if "state" in keys and widths["state"] <= 2:
            cells["state"] = cells["state"][:1]
        # A cell cut by its column ends in "…", so a cut note never reads as the whole story (the
        # detail line under the table has it in full).
        return tuple(fit_cell(cells[key], widths[key]) for key in keys)

    def _group_cells(self, sweep: SweepStatus, keys: list[str]) -> tuple[str, ...]:
        cells = sweep_cells(sweep, self.is_collapsed(sweep))
        widths = {k: w for k, _, w in self._columns}
        if "state" in keys and widths["state"] <= 2:  # the icon alone: the progress leads the note
            cells["state"] = SWEEP_ICONS.get(sweep.state, "")
            cells["note"] = f"{sweep.done}/{sweep.total} done · {cells['note']}"
        return tuple(fit_cell(cells[key], widths[key]) for key in keys)

    def set_marked(self, run_ids: list[int]) -> None:
        """Show ● before the ids of ``run_ids`` (and only those)."""
        self.marked = frozenset(run_ids)
        self._cells = {}
        self._render_rows(self.selected_key)
