"""What must stay on screen at the sizes people have over SSH (issue 25): at 80×24 five queue rows, the
selected run's progress and a loss/ROUGE curve; at every size from 60×20 the running run selected on start
and the selected row never hidden — a failed last run after End included; ids of any length in their column."""

from __future__ import annotations

import pytest
from rich.cells import cell_len
from textual.widgets import Static

from dialsum_tui.app import make_app
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.widgets.queue_table import QueueTable

from tui_support import scripted_gpu, wait_for, write_config

SIZES = [(60, 20), (80, 24), (120, 36), (200, 60)]
NICKS = ("EXAONE-3.5-2.4B-요약", "Llama-3.2-한국어-3B-bf16", "한국어-요약-koBART", "큐웬3-4B-대화요약", "koT5-요약-base",
         "Qwen3-4B-LoRA-r16", "gemma-2-한국어-9b")
PREFLIGHT = "preflight before train:\n  - data/dev.csv line 73: unescaped quote\n    fix: quote the field"


def _queue(workspace, manager, first_id: int | None = None) -> list[int]:
    """Seven runs: done, running (progress and a loss curve), queued ×4, and a failed last one."""
    if first_id is not None:  # ids are one above the highest runs/<id>: start them where the test wants
        (workspace.root / "runs" / str(first_id - 1)).mkdir(parents=True)
    ids = [manager.add(str(write_config(workspace, nick))).id for nick in NICKS]
    manager.store.transition(ids[0], RunState.RUNNING, stage="train", pid=4712)
    manager.store.transition(ids[0], RunState.SUCCEEDED, exit_code=0)
    manager.store.transition(ids[1], RunState.RUNNING, stage="train", pid=4711,
                             progress={"step": 60, "total": 780, "eta_s": 3725, "tokens_per_s": 5123})
    manager.store.transition(ids[-1], RunState.WAITING, reason="checking its files")
    manager.store.transition(ids[-1], RunState.FAILED, failure_kind="data", failed_stage="train",
                             failure_message=PREFLIGHT, failure_hint="fix the CSV")
    events = "".join(f'{{"event": "train_log", "step": {s}, "loss": {3 / s:.3f}}}\n' for s in range(1, 30))
    (workspace.run_dir(ids[1]) / "events.jsonl").write_text(events, encoding="utf-8")
    return ids


def _row_on_screen(app, run_id: int) -> bool:
    """Whether the row of ``run_id`` is drawn: inside the table's body and above the detail lines."""
    table = app.main.query_one(QueueTable)
    body = table.scrollable_content_region
    row_y = body.y + table.header_height + table.get_row_index(str(run_id)) - round(table.scroll_y)
    detail = app.main.query_one("#queue-detail").region
    return body.y + table.header_height <= row_y < min(body.bottom, detail.y)


def _visible_rows(app) -> int:
    table = app.main.query_one(QueueTable)
    detail = app.main.query_one("#queue-detail").region
    return min(table.scrollable_content_region.bottom, detail.y) - table.scrollable_content_region.y - table.header_height


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_opens_on_the_running_run_and_keeps_the_selection_on_screen(workspace, manager, size) -> None:
    manager.pause()
    ids = _queue(workspace, manager)
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.main.query_one(QueueTable).row_count == len(ids), what="the queue")
        await wait_for(pilot, lambda: app.selected_run_id == ids[1], what="the running run selected on start")
        await pilot.pause(0.2)
        assert _row_on_screen(app, ids[1])
        await pilot.press("end")  # the failed last run: two detail lines, the row still drawn above them
        await wait_for(pilot, lambda: app.selected_run_id == ids[-1], what="End selects the last run")
        await pilot.pause(0.2)
        assert _row_on_screen(app, ids[-1])
        if size == (60, 20):
            assert not _row_on_screen(app, ids[0])  # the check can fail: the first row scrolled away
        detail = app.main.query_one("#queue-detail", Static).render().plain.splitlines()
        assert detail[1].startswith("✖ data/dev.csv line 73: unescaped quote")  # the cause, not "preflight before"
        await pilot.press("home")
        await wait_for(pilot, lambda: app.selected_run_id == ids[0], what="Home selects the first run")
        await pilot.pause(0.2)
        assert _row_on_screen(app, ids[0])


async def test_80x24_shows_five_rows_the_progress_and_a_curve(workspace, manager) -> None:
    manager.pause()
    _queue(workspace, manager)
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        progress = app.main.query_one("#progress")
        await wait_for(pilot, lambda: len(progress.loss_points) == 29, what="the running run's loss curve")
        await pilot.pause(0.2)
        assert _visible_rows(app) >= 5
        lines = progress.text.plain.splitlines()
        rows = progress.content_region.height  # the panel's text is drawn from its top: these many lines show
        for needle in ("8%  60/780", "ETA 1h02m", "loss  █", "ROUGE"):
            at = next(n for n, line in enumerate(lines) if needle in line)
            assert at < rows, f"{needle!r} is on line {at} of a {rows}-row panel"  # drawn, not cut off


async def test_run_ids_over_a_thousand_fit_and_enter_shows_the_whole_failure(workspace, manager) -> None:
    manager.pause()
    ids = _queue(workspace, manager, first_id=1000)
    assert ids[0] == 1000
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.main.query_one(QueueTable)
        await wait_for(pilot, lambda: table.row_count == len(ids), what="the queue")
        assert [table.get_row(str(i))[0] for i in ids] == [str(i) for i in ids]  # "1006", never "10…"
        await pilot.press("m")  # marked for compare: "●1001" still fits
        await wait_for(pilot, lambda: table.get_row(str(ids[1]))[0] == f"●{ids[1]}", what="the mark")
        await pilot.press("end", "enter")
        from dialsum_tui.screens.run_detail import RunDetailScreen

        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen), what="the run in full")
        text = app.screen.query_one("#run-detail-text", Static).render().plain
        assert PREFLIGHT in text and "→ fix the CSV" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main, what="back to the queue")
        assert max(cell_len(str(i)) for i in ids) + 1 <= dict((k, w) for k, _, w in table._columns)["id"]
