"""Compare, per-sample insights, best run, submit and leaderboard scores on two finished runs written
as real files (tests/insights_support.py); per-item ROUGE is checked against the real engine CLI."""

from __future__ import annotations

import json

import pytest

from dialsum_tui.manager.insights.compare import InsightsError, compare_runs
from dialsum_tui.manager.insights.leaderboard import (
    LEADERBOARD_FILE,
    best_runs,
    record_score,
    submit,
    validate_submission,
)
from dialsum_tui.manager.insights.results import format_results, result_rows
from dialsum_tui.manager.insights.samples import flag_prediction, load_samples
from dialsum_tui.manager.service import Manager
from engine.artifacts import artifact_key, atomic_directory, final_model_dir, write_final_model_meta
from engine.contract import TEST_CSV
from engine.evaluate import read_predictions, read_references
from engine.item_scores import mean_scores, score_items

from insights_support import FIXTURES, NICK_A, NICK_B, _finish, make_insight_runs
from support import engine_cli


@pytest.fixture
def runs(workspace):
    manager = Manager.open(workspace)
    return manager, make_insight_runs(manager)


@pytest.mark.parametrize(("tokenizer", "scorer"), [("mecab", "competition"), ("char", "competition"),
                                                   ("mecab", "baseline")])
def test_per_item_rouge_averages_to_engine_evaluate(runs, tokenizer, scorer) -> None:
    _manager, made = runs
    args = ["evaluate", "--predictions", str(made.predictions_b), "--references", str(made.dev_csv), "--json",
            "--scorer", scorer] + (["--tokenizer", tokenizer] if scorer == "competition" else [])
    done = engine_cli(*args)
    assert done.returncode == 0, done.stderr
    expected = json.loads(done.stdout)
    refs = read_references(made.dev_csv)
    predicted = read_predictions(made.predictions_b)
    items = score_items([predicted[f] for f in refs], list(refs.values()), tokenizer, scorer)
    assert mean_scores(items) == (expected["rouge1"], expected["rouge2"], expected["rougeL"])  # to the last bit
    assert sum(item.final for item in items) / len(items) == pytest.approx(expected["final"], abs=1e-9)


def test_samples_mean_equals_the_runs_evaluate_final(runs) -> None:
    manager, made = runs
    sample_set = load_samples(manager.workspace, manager.get(made.a), manager.get(made.b))
    finals = [m["final"] for m in compare_runs(manager.workspace, [manager.get(made.a), manager.get(made.b)]).metrics]
    assert sample_set.means() == pytest.approx(finals, abs=1e-9)
    assert (sample_set.tokenizer, sample_set.scorer) == ("mecab", "competition")


def test_compare_shows_metrics_only_differing_keys_and_curves(runs) -> None:
    manager, made = runs
    comparison = compare_runs(manager.workspace, [manager.get(made.a), manager.get(made.b)])
    body = comparison.to_json()
    assert list(body) == ["runs", "metrics", "config_diff", "curves"]
    assert [r["nickname"] for r in body["runs"]] == [NICK_A, NICK_B]
    assert {row["key"]: row["values"] for row in body["config_diff"]} == {
        "train.learning_rate": [2e-5, 1e-4], "generation.num_beams": [4, 1], "generation.no_repeat_ngram_size": [0, 3]}
    assert [m["stage"] for m in body["metrics"]] == ["evaluate", "evaluate"]
    assert body["metrics"][0]["final"] > body["metrics"][1]["final"]
    assert [len(c["loss"]) for c in body["curves"]] == [6, 6]
    assert [[p[1] for p in c["rouge"]] for c in body["curves"]] == [[31.0, 38.5], [28.0, 35.0, 41.0]]


def test_compare_refuses_a_single_run(runs) -> None:
    manager, made = runs
    with pytest.raises(InsightsError, match="two or more"):
        compare_runs(manager.workspace, [manager.get(made.a), manager.get(made.a)])


def test_filters_count_empty_foreign_and_length(runs) -> None:
    manager, made = runs
    sample_set = load_samples(manager.workspace, manager.get(made.a), manager.get(made.b))
    assert sample_set.counts() == {"empty": [0, 1], "foreign": [0, 2], "length": [0, 1]}
    assert [s.fname for s in sample_set.view("worst", "foreign")] == ["dev_3", "dev_4"]  # by A, the first run
    flags = {s.fname: s.flags[1] for s in sample_set.samples}
    assert flags["dev_3"]["foreign"] == "Latin sleep"
    assert flags["dev_4"]["foreign"] == "CJK 资料"
    assert "foreign" not in flags["dev_2"]  # "PC" is in the dialogue: not leakage
    assert sample_set.view("diff")[0].fname == "dev_1"  # B's empty output: the largest drop
    assert sample_set.view("best", limit=1)[0].scores[0].final == max(s.scores[0].final for s in sample_set.samples)


def test_flag_rules_for_kana_masks_and_length() -> None:
    refs = ["#Person1#은 호텔을 예약한다."]
    assert flag_prediction("#Person1#은 ホテル을 예약한다.", "#Person1#: 호텔 예약", refs) == {"foreign": "kana ホテル"}
    assert flag_prediction("#Person1#은 호텔을 예약한다.", "#Person1#: 호텔 예약", refs) == {}
    assert "length" in flag_prediction("예약.", "#Person1#: 호텔 예약", refs)
    assert flag_prediction("  ", "#Person1#: 호텔 예약", refs) == {"empty": "empty output"}


def test_samples_of_a_run_without_dev_predictions_say_what_to_do(runs) -> None:
    manager, made = runs
    made.predictions_a.unlink()
    with pytest.raises(InsightsError, match=rf"run {made.a} .* no dev predictions .* retry {made.a} --action infer"):
        load_samples(manager.workspace, manager.get(made.a))


def test_best_run_is_chosen_among_numbers_made_the_same_way(runs) -> None:
    manager, made = runs
    # A char-level score is far higher than a Mecab one for the same outputs: it must not win over A.
    c = _finish(manager, "글자-단위", {}, "a", [1.0], [10.0], eval_tokenizer="char")
    best = best_runs(manager.workspace, manager.runs())
    assert best == {("mecab", "competition"): made.a, ("char", "competition"): c}
    rows = {row.nickname: row for row in result_rows(manager.workspace, manager.runs())}
    assert rows[NICK_A].best and not rows[NICK_B].best and rows["글자-단위"].best
    assert rows["글자-단위"].final > rows[NICK_A].final


def test_submit_copies_a_valid_submission_with_model_run_and_date(runs, tmp_path) -> None:
    manager, made = runs
    done = submit(manager.workspace, manager.get(made.a))
    assert done.rows == 3 and done.target.parent == manager.workspace.submissions_dir
    assert done.target.name.startswith(f"koBART-요약_run{made.a}_") and not done.target.name.endswith("_submission.csv")
    assert done.target.read_text(encoding="utf-8") == (FIXTURES / "submission_a.csv").read_text(encoding="utf-8")
    recorded = json.loads((manager.workspace.run_dir(made.a) / LEADERBOARD_FILE).read_text(encoding="utf-8"))
    # recorded relative to the workspace, so a copied or moved workspace names its own file
    assert recorded["submissions"][0]["target"] == str(done.target.relative_to(manager.workspace.root))
    with pytest.raises(InsightsError, match="already exists"):
        submit(manager.workspace, manager.get(made.a), done.target)
    with pytest.raises(InsightsError, match="1 empty summary"):
        submit(manager.workspace, manager.get(made.b), tmp_path)


def test_submission_must_follow_test_order_and_count(runs, tmp_path) -> None:
    manager, _made = runs
    test_csv = manager.workspace.data_dir / TEST_CSV
    lines = (FIXTURES / "submission_a.csv").read_text(encoding="utf-8").splitlines()
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("\n".join([lines[0], lines[2], lines[1], lines[3]]) + "\n", encoding="utf-8")
    with pytest.raises(InsightsError, match="row 2: fname 'test_1' where .* has 'test_0'"):
        validate_submission(swapped, test_csv)
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    with pytest.raises(InsightsError, match="has 2 rows but .* has 3"):
        validate_submission(short, test_csv)
    indexed = tmp_path / "indexed.csv"  # sample_submission.csv's layout: a leading unnamed index column
    indexed.write_text(",fname,summary\n" + "".join(f"{i},{line}\n" for i, line in enumerate(lines[1:])), encoding="utf-8")
    assert validate_submission(indexed, test_csv) == 3


def test_leaderboard_score_is_kept_next_to_the_run_and_shown_beside_dev_rouge(runs) -> None:
    manager, made = runs
    entry = record_score(manager.workspace, manager.get(made.a), "47.52")
    assert entry["score"] == 47.52 and entry["dev_final"] == pytest.approx(74.69, abs=0.01)
    stored = json.loads((manager.workspace.run_dir(made.a) / LEADERBOARD_FILE).read_text(encoding="utf-8"))
    assert stored["scores"][-1]["score"] == 47.52
    for bad in ("abc", "120", "nan", ""):
        with pytest.raises(InsightsError, match="score"):
            record_score(manager.workspace, manager.get(made.a), bad)
    markdown = format_results(result_rows(manager.workspace, manager.runs()), "markdown")
    row = next(line for line in markdown.splitlines() if NICK_A in line)
    assert "74.69 (mecab) ★ · LB 47.52" in row
    with atomic_directory(final_model_dir(manager.workspace.checkpoints_dir, artifact_key(NICK_A, made.a))) as tmp:
        write_final_model_meta(tmp, {"nickname": NICK_A})  # now A is ✅ 완료: the hand-off says how to submit it
    handoff = manager.handoff()
    assert "LB 47.52" in handoff and f"`dialsum-tui submit {made.a}`" in handoff

