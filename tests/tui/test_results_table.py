"""The results table's cells: one line each, whatever the evidence holds, and R1/R2/RL beside the final."""

from __future__ import annotations

from dialsum_tui.manager.insights.results import ResultRow
from dialsum_tui.widgets.results_table import result_cells


def test_a_multi_line_failure_shows_every_problem_on_its_one_line() -> None:
    row = ResultRow(nickname="broken-data", status="❌ 실패 (data)", final=None, tokenizer=None, rouge1=None, rouge2=None,
                    rougeL=None, run_id=2, evidence="run 2 train failed (data: preflight before train:\n"
                    "  - data/dev.csv: line 73: broken CSV\n  - data/train.csv: no summary column)",
                    hint="fix the CSV rows named")
    evidence = result_cells(row)[-1].plain

    assert "\n" not in evidence
    assert "line 73: broken CSV" in evidence and "no summary column" in evidence and evidence.endswith("fix the CSV rows named")


def test_a_scored_row_shows_its_three_rouge_parts() -> None:
    row = ResultRow(nickname="koBART", status="✅ 완료", final=44.47, tokenizer="mecab", rouge1=0.523, rouge2=0.331,
                    rougeL=0.482, run_id=1, evidence="final_model complete", hint=None)

    assert result_cells(row)[2] == row.parts_text == "52.30/33.10/48.20"


def test_a_64_character_korean_nickname_leaves_the_scores_on_an_80_column_screen() -> None:
    from rich.cells import cell_len

    nickname = "아주긴한국어별명" * 8  # 64 characters, 128 cells
    row = ResultRow(nickname=nickname, status="✅ 완료", final=50.0, tokenizer="mecab", rouge1=55.0, rouge2=40.0,
                    rougeL=55.0, run_id=1, evidence="final ROUGE", hint=None)
    model = result_cells(row)[0]
    assert cell_len(model) <= 32 and model.endswith("…") and nickname.startswith(model[:-1])


async def test_a_queued_rerun_leaves_a_finished_model_done_with_the_rerun_beside_it(workspace, manager) -> None:
    # Issue 25: a retrain queued on a finished model turned its 상태 into "⏸ 대기" (results, the TUI, HANDOFF.md).
    import csv

    from dialsum_tui.app import make_app
    from dialsum_tui.manager.insights.results import STATUS_DONE, STATUS_RERUN_QUEUED
    from dialsum_tui.manager.runs.identity import model_key, predictions_key
    from dialsum_tui.manager.runs.models import RunState
    from dialsum_tui.screens.results import ResultsScreen
    from engine.artifacts import EventWriter, final_model_dir, submission_path, write_final_model_meta

    from tui_support import scripted_gpu, wait_for, write_config

    manager.pause()
    run = manager.add(str(write_config(workspace, "한국어-요약-koBART")))
    manager.store.transition(run.id, RunState.RUNNING, stage="evaluate")
    with EventWriter(workspace.run_dir(run.id) / "events.jsonl", command="evaluate") as events:
        events.emit("eval", rouge1=0.56, rouge2=0.37, rougeL=0.47, final=46.67, tokenizer="mecab", split="dev")
    manager.store.transition(run.id, RunState.SUCCEEDED, exit_code=0)
    model = final_model_dir(workspace.checkpoints_dir, model_key(run))
    model.mkdir(parents=True)
    write_final_model_meta(model, {"nickname": run.nickname})
    with open(workspace.data_dir / "test.csv", encoding="utf-8") as fh:
        fnames = [row["fname"] for row in csv.DictReader(fh)]
    with open(submission_path(workspace.submissions_dir, predictions_key(run)), "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["fname", "summary"])
        writer.writerows([f, "요약"] for f in fnames)
    assert manager.results()[0].status == STATUS_DONE
    rerun = manager.retry(run.id)  # queued (paused): the model is still done, its re-run waits beside it

    row = manager.results()[0]
    assert row.status == f"{STATUS_DONE} · {STATUS_RERUN_QUEUED}" and row.rerun_queued == rerun.id
    assert row.final == 46.67 and f"re-run {rerun.id} queued" in row.evidence
    assert "✅ 완료 · 재실행 대기" in manager.handoff()
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(120, 24)) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen), what="the results screen")
        table = app.screen.query_one("#results-table")
        await wait_for(pilot, lambda: table.row_count == 1)
        assert str(table.get_row_at(0)[3]) == "✅ 완료 · 재실행 대기"
