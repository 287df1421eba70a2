"""A sweep in the TUI's queue (issue 26 point 2): its runs under one group row placed where its first run
stands (the sweep's id, ``kobart ×2``, ``0/2 done``), each named by its variant as ``ls`` names it; enter
on the group row collapses and expands it; ``c`` there compares the whole sweep; the run-level keys there
ask for a run of the sweep. The queue is paused and no worker runs: nothing changes under the test."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from dialsum_tui.app import make_app
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.screens.compare import CompareScreen
from dialsum_tui.screens.main import MainScreen
from dialsum_tui.widgets.queue_table import QueueTable

from tui_support import scripted_gpu, wait_for, write_config


def _keys(app) -> list[str]:
    return [str(key.value) for key in app.main.query_one(QueueTable).rows]


def _row(app, key: str) -> list[str]:
    table = app.main.query_one(QueueTable)
    return [str(cell) for cell in table.get_row(key)]


def _notices(app) -> str:
    return "\n".join(f"{n.title}: {n.message}" for n in app._notifications)


def _detail(app) -> str:
    return str(app.main.query_one("#queue-detail", Static).render())


def _queue(workspace, manager) -> tuple[int, list[int], int]:
    """A plain run, a 2-variant sweep ``s1`` (``kobart`` at two learning rates), then another plain run."""
    manager.pause()
    before = manager.add(str(write_config(workspace, "solo-before"))).id
    sweep, runs = manager.add_sweep(str(write_config(workspace, "kobart")), axes=["train.learning_rate=1e-4,2e-4"])
    assert sweep.id == "s1"
    after = manager.add(str(write_config(workspace, "solo-after"))).id
    return before, [run.id for run in runs], after


async def test_a_sweep_is_one_group_row_with_its_variants_under_it(workspace, manager) -> None:
    before, (a, b), after = _queue(workspace, manager)
    sid = "s1"
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(120, 36)) as pilot:
        expanded = [str(before), sid, str(a), str(b), str(after)]
        await wait_for(pilot, lambda: _keys(app) == expanded, what="the group row where its first run stands")
        table = app.main.query_one(QueueTable)
        columns = table.column_keys
        group = dict(zip(columns, _row(app, sid)))
        assert group["id"] == sid and group["state"].startswith("0/2") and group["state"] == "0/2 done"
        assert "kobart ×2" in group["model"] and group["model"].startswith("▾")
        assert "sweep of lr" in group["note"]
        members = [dict(zip(columns, _row(app, str(run_id)))) for run_id in (a, b)]
        assert [m["model"] for m in members] == ["  lr1e-4", "  lr2e-4"]  # indented, named by the variant

        # On the group row: its detail, the log follows one of its runs, run-level keys ask for a run.
        table.move_cursor(row=table.get_row_index(sid))
        await wait_for(pilot, lambda: f"sweep {sid}" in _detail(app), what="the sweep's detail line")
        assert "0/2 done" in _detail(app) and "enter collapses" in _detail(app)
        await wait_for(pilot, lambda: app.selected_run_id in (a, b), what="the log on a run of the sweep")
        await pilot.press("x")
        await wait_for(pilot, lambda: f"select a run of sweep {sid}" in _notices(app), what="the hint")
        assert isinstance(app.screen, MainScreen)
        await pilot.press("m")
        assert app.marks.ids == []

        # enter folds the group to its row alone (the cursor stays on it), and unfolds it again.
        await pilot.press("enter")
        await wait_for(pilot, lambda: _keys(app) == [str(before), sid, str(after)], what="the group collapsed")
        assert table.selected_key == sid and _row(app, sid)[columns.index("model")].startswith("▸")
        assert isinstance(app.screen, MainScreen)  # no run detail opened
        await pilot.pause(0.3)  # refreshed boards keep it as the user left it
        assert _keys(app) == [str(before), sid, str(after)]
        await pilot.press("enter")
        await wait_for(pilot, lambda: _keys(app) == expanded, what="the group expanded")
        assert table.selected_key == sid

        # A member row is an ordinary run for the other keys.
        await pilot.press("down")
        await wait_for(pilot, lambda: app.selected_run_id == a and table.selected_run_id == a, what="the first variant")
        await pilot.press("m")
        assert app.marks.ids == [a]


async def test_c_on_the_group_row_compares_the_whole_sweep(workspace, manager) -> None:
    _before, (a, b), _after = _queue(workspace, manager)
    sid = "s1"
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: sid in _keys(app), what="the group row")
        table = app.main.query_one(QueueTable)
        table.move_cursor(row=table.get_row_index(sid))
        await wait_for(pilot, lambda: app.main.selected_sweep_id == sid)
        await pilot.press("c")  # nothing marked: the group row is what c compares
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), what="the compare screen")
        screen = app.screen
        legend = str(screen.query_one("#compare-legend", Static).render())
        assert f"kobart-lr1e-4 #{a}" in legend and f"kobart-lr2e-4 #{b}" in legend
        diff = screen.query_one("#compare-diff", DataTable)
        assert [str(diff.get_row_at(i)[0]) for i in range(diff.row_count)] == ["train.learning_rate"]  # swept keys only


async def test_an_ended_sweep_opens_collapsed(workspace, manager) -> None:
    before, (a, b), after = _queue(workspace, manager)
    for run_id in (a, b):
        manager.store.transition(run_id, RunState.CANCELLED, reason="test")
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        sid = "s1"
        await wait_for(pilot, lambda: _keys(app) == [str(before), sid, str(after)], what="the ended sweep collapsed")
        table = app.main.query_one(QueueTable)
        assert dict(zip(table.column_keys, _row(app, sid)))["state"].startswith("2/2 done")
        table.move_cursor(row=table.get_row_index(sid))
        await pilot.press("enter")
        await wait_for(pilot, lambda: _keys(app) == [str(before), sid, str(a), str(b), str(after)], what="expanded")
