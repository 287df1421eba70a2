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
