"""Drives marking, CompareScreen, SamplesScreen and the results' ★/LB with Pilot, on two finished runs
written as real files (tests/insights_support.py), and snapshots both screens at 80×24 and 160×48."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from dialsum_tui.app import make_app
from dialsum_tui.manager.insights.compare import compare_runs
from dialsum_tui.manager.insights.leaderboard import record_score
from dialsum_tui.manager.insights.samples import load_samples
from dialsum_tui.screens.compare import CompareScreen
from dialsum_tui.screens.results import ResultsScreen
from dialsum_tui.screens.samples import SamplesScreen
from dialsum_tui.widgets.queue_table import QueueTable

from insights_support import NICK_A, NICK_B, make_insight_runs
from tui_support import scripted_gpu, wait_for


def _app(workspace, manager):
    return make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)


def _notices(app) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


async def _queue_ready(pilot: Pilot, count: int = 2) -> None:
    await wait_for(pilot, lambda: pilot.app.main.query_one(QueueTable).row_count == count, what="the runs in the queue")
    # The queue opens on the run that ended last; these tests start from the first.
    await pilot.press("home")
    await wait_for(pilot, lambda: pilot.app.selected_run_id == pilot.app.board.runs[0].id, what="the first run")


def _cell(table: DataTable, row: int, column: int) -> str:
    return str(table.get_row_at(row)[column])


async def test_mark_two_runs_and_compare_them(workspace, manager) -> None:
    made = make_insight_runs(manager)
    app = _app(workspace, manager)
    async with app.run_test(size=(80, 24)) as pilot:
        await _queue_ready(pilot)
        await pilot.press("c")
        await wait_for(pilot, lambda: "mark two or more runs with m first" in _notices(app), what="the hint")
        await pilot.press("m", "down", "m")
        queue = app.main.query_one(QueueTable)
        assert app.marks.ids == [made.a, made.b]
        assert [_cell(queue, i, 0) for i in range(2)] == [f"●{made.a}", f"●{made.b}"]
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), what="the compare screen")
        screen = app.screen
        metrics, diff = screen.query_one("#compare-metrics", DataTable), screen.query_one("#compare-diff", DataTable)
        assert metrics.row_count == 2 and _cell(metrics, 0, 4) == "74.69 ★" and _cell(metrics, 0, 1) == "78.13"
        assert [_cell(diff, i, 0) for i in range(diff.row_count)] == [
            "train.learning_rate", "generation.num_beams", "generation.no_repeat_ngram_size"]
        legend = str(screen.query_one("#compare-legend", Static).render())
        assert f"{NICK_A} #{made.a}" in legend and f"{NICK_B} #{made.b}" in legend
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main, what="back on the dashboard")
        await pilot.press("m")  # unmark the selected run (the second)
        assert app.marks.ids == [made.a] and _cell(queue, 1, 0) == str(made.b)


async def test_samples_side_by_side_sort_and_filter(workspace, manager) -> None:
    made = make_insight_runs(manager)
    app = _app(workspace, manager)
    async with app.run_test(size=(80, 24)) as pilot:
        await _queue_ready(pilot)
        await pilot.press("down", "m", "up")  # mark B, select A: samples of A beside B
        await wait_for(pilot, lambda: app.selected_run_id == made.a, what="run A selected")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SamplesScreen), what="the samples screen")
        screen = app.screen
        table = screen.query_one("#samples-list", DataTable)
        assert [r["id"] for r in screen.sample_set.runs] == [made.a, made.b]
        assert screen.sort == "diff" and table.row_count == 6 and _cell(table, 0, 0) == "dev_1"
        detail = str(screen.query_one("#samples-text", Static).render())
        assert "(empty output)" in detail and "토요일" in detail
        await pilot.press("down")
        await wait_for(pilot, lambda: "dev_4" in str(screen.query_one("#samples-text", Static).render()),
                       what="the highlighted sample's detail")
        await pilot.press("s")
        assert screen.sort == "worst" and _cell(table, 0, 0) == min(
            screen.sample_set.samples, key=lambda s: s.scores[0].final).fname
        await pilot.press("f")
        assert screen.filter == "empty" and table.row_count == 1
        await pilot.press("f")
        assert screen.filter == "foreign" and sorted(_cell(table, i, 0) for i in range(2)) == ["dev_3", "dev_4"]
        assert "foreign 2" in str(screen.query_one("#samples-head", Static).render())


async def test_samples_of_a_run_without_predictions_say_what_to_do(workspace, manager) -> None:
    made = make_insight_runs(manager)
    made.predictions_a.unlink()
    app = _app(workspace, manager)
    async with app.run_test(size=(80, 24)) as pilot:
        await _queue_ready(pilot)
        await pilot.press("s")
        await wait_for(pilot, lambda: "no dev predictions" in _notices(app), what="the error notice")
        assert f"retry {made.a} --action infer" in _notices(app) and app.screen is app.main


async def test_results_mark_the_best_run_and_show_the_leaderboard_score(workspace, manager) -> None:
    made = make_insight_runs(manager)
    record_score(workspace, manager.get(made.a), "47.52")
    app = _app(workspace, manager)
    async with app.run_test(size=(120, 24)) as pilot:
        await _queue_ready(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen), what="the results screen")
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        cells = {_cell(table, i, 0): _cell(table, i, 1) for i in range(2)}
        assert cells == {NICK_A: "74.69 (mecab) ★ · LB 47.52", NICK_B: "62.94 (mecab)"}


# --- snapshots ---------------------------------------------------------------------------------


def _compare_snapshot(workspace, manager, snap_compare, size) -> bool:
    made = make_insight_runs(manager)
    comparison = compare_runs(workspace, [manager.get(made.a), manager.get(made.b)])

    async def open_compare(pilot: Pilot) -> None:
        await _queue_ready(pilot)
        await pilot.app.push_screen(CompareScreen(comparison))
        await pilot.pause(0.2)

    return snap_compare(_app(workspace, manager), terminal_size=size, run_before=open_compare)


def _samples_snapshot(workspace, manager, snap_compare, size) -> bool:
    made = make_insight_runs(manager)
    sample_set = load_samples(workspace, manager.get(made.a), manager.get(made.b))

    async def open_samples(pilot: Pilot) -> None:
        await _queue_ready(pilot)
        await pilot.app.push_screen(SamplesScreen(sample_set))
        await pilot.press("down", "down", "down")  # dev_3: B's Latin leak, a long Korean line that wraps
        await pilot.pause(0.2)

    return snap_compare(_app(workspace, manager), terminal_size=size, run_before=open_samples)


def test_compare_screen_80x24(workspace, manager, snap_compare) -> None:
    assert _compare_snapshot(workspace, manager, snap_compare, (80, 24))


def test_compare_screen_160x48(workspace, manager, snap_compare) -> None:
    assert _compare_snapshot(workspace, manager, snap_compare, (160, 48))


def test_samples_screen_80x24(workspace, manager, snap_compare) -> None:
    assert _samples_snapshot(workspace, manager, snap_compare, (80, 24))


def test_samples_screen_160x48(workspace, manager, snap_compare) -> None:
    assert _samples_snapshot(workspace, manager, snap_compare, (160, 48))
