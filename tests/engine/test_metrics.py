"""Tests for engine.metrics: hand-checked Korean ROUGE, the rouge==1.0.1 oracle, CSV input and the CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rouge import Rouge

from engine import evaluate, metrics
from engine.__main__ import main as engine_main
from engine.artifacts import read_events
from engine.evaluate import score_files
from engine.metrics import (
    MetricInputError,
    Scores,
    baseline_pair,
    score,
    tokenize,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "metrics"
REPO = Path(__file__).resolve().parents[2]


def f1(overlap: int, n_pred: int, n_ref: int) -> float:
    """F1 from counts: 2PR/(P+R) = 2*overlap/(n_pred+n_ref)."""
    return 2 * overlap / (n_pred + n_ref)


# --- tokenizers ---------------------------------------------------------------------------------


def test_mecab_tokens_are_every_morpheme_surface_with_punctuation_and_case_kept():
    assert tokenize("#Person1#은 내일 병원에 간다.") == ["#", "Person", "1", "#", "은", "내일", "병원", "에", "간다", "."]
    assert tokenize("Tom은 회의에 늦었다.") == ["Tom", "은", "회의", "에", "늦", "었", "다", "."]
    assert tokenize("") == [] and tokenize(" \n ") == []


def test_whitespace_and_char_tokenizers():
    assert tokenize("친구와  영화를\n보기로", "whitespace") == ["친구와", "영화를", "보기로"]
    assert tokenize("친구와 영화.", "char") == ["친", "구", "와", "영", "화", "."]
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe'"):
        tokenize("x", "bpe")


def test_mecab_tagger_is_shared_and_safe_across_threads():
    text = "#Person2#는 호텔 방을 예약했다."
    expected = tokenize(text)
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.extend(tokenize(text) for _ in range(20))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 80
    assert metrics._mecab_tagger() is metrics._mecab_tagger()


def test_rouge_score_default_tokenizer_deletes_hangul_which_is_why_we_pass_our_own():
    from rouge_score import rouge_scorer

    text = "#Person1#은 내일 병원에 간다."
    default = rouge_scorer.RougeScorer(["rouge1"]).score("오늘 병원에 간다", "내일 병원에 간다")
    assert default["rouge1"].fmeasure == 0.0  # every Hangul token is deleted
    assert score([text], [[text]]).rouge1 == 1.0


# --- hand-checked pairs (competition scorer, Mecab) ---------------------------------------------

# Each case: prediction, reference, the Mecab tokens of both, and (overlap, n_pred, n_ref) counted
# by hand for ROUGE-1 (clipped unigram counts), ROUGE-2 (clipped bigram counts) and ROUGE-L (LCS).
HAND_CHECKED = [
    pytest.param(
        "#Person1#은 내일 병원에 간다.",
        "#Person1#은 오늘 병원에 간다.",
        ["#", "Person", "1", "#", "은", "내일", "병원", "에", "간다", "."],
        ["#", "Person", "1", "#", "은", "오늘", "병원", "에", "간다", "."],
        # 내일/오늘 differ: 9 of 10 unigrams; bigrams (은,내일),(내일,병원) lost: 7 of 9; LCS skips one: 9.
        {"rouge1": (9, 10, 10), "rouge2": (7, 9, 9), "rougeL": (9, 10, 10)},
        id="one-word-swapped",
    ),
    pytest.param(
        "#Person2#는 호텔 방을 예약했다.",
        "#Person2#는 방을 예약하지 않았다.",
        ["#", "Person", "2", "#", "는", "호텔", "방", "을", "예약", "했", "다", "."],
        ["#", "Person", "2", "#", "는", "방", "을", "예약", "하", "지", "않", "았", "다", "."],
        # shared: # # Person 2 는 방 을 예약 다 . = 10; bigrams (#,Person)(Person,2)(2,#)(#,는)(방,을)(을,예약)(다,.) = 7;
        # LCS = # Person 2 # 는 방 을 예약 다 . = 10.
        {"rouge1": (10, 12, 14), "rouge2": (7, 11, 13), "rougeL": (10, 12, 14)},
        id="negation-changes-meaning",
    ),
    pytest.param(
        "친구와 영화를 보기로 했다.",
        "영화를 친구와 보기로 했다.",
        ["친구", "와", "영화", "를", "보", "기", "로", "했", "다", "."],
        ["영화", "를", "친구", "와", "보", "기", "로", "했", "다", "."],
        # same bag of morphemes: 10 of 10; bigrams across the swap (와,영화)/(를,보) vs (를,친구)/(와,보) lost: 7 of 9;
        # LCS keeps one of the two swapped phrases: 친구 와 보 기 로 했 다 . = 8.
        {"rouge1": (10, 10, 10), "rouge2": (7, 9, 9), "rougeL": (8, 10, 10)},
        id="word-order-swapped",
    ),
]


@pytest.mark.parametrize(("prediction", "reference", "pred_tokens", "ref_tokens", "counts"), HAND_CHECKED)
def test_hand_checked_korean_pairs(prediction, reference, pred_tokens, ref_tokens, counts):
    assert tokenize(prediction) == pred_tokens
    assert tokenize(reference) == ref_tokens
    scores = score([prediction], [[reference]])
    for key, (overlap, n_pred, n_ref) in counts.items():
        assert getattr(scores, key) == pytest.approx(f1(overlap, n_pred, n_ref)), key
    assert (scores.tokenizer, scores.scorer, scores.n, scores.refs_per_item) == ("mecab", "competition", 1, 1.0)


def test_multi_reference_is_the_mean_over_references_then_over_items():
    pred = "#Person1#은 내일 병원에 간다."
    refs = ["#Person1#은 오늘 병원에 간다.", pred, "#Person1#은 병원에 간다."]
    # vs refs[2] (9 morphemes, drops 내일): unigrams 9 of 10/9, bigrams 7 of 9/8, LCS 9.
    per_ref_r1 = [f1(9, 10, 10), 1.0, f1(9, 10, 9)]
    per_ref_r2 = [f1(7, 9, 9), 1.0, f1(7, 9, 8)]
    single = score([pred], [refs])
    assert single.rouge1 == pytest.approx(sum(per_ref_r1) / 3)
    assert single.rouge2 == pytest.approx(sum(per_ref_r2) / 3)
    assert single.refs_per_item == 3.0
    # A second item with one reference: the aggregate is the plain mean of the two item means.
    both = score([pred, pred], [refs, [pred]])
    assert both.rouge1 == pytest.approx((sum(per_ref_r1) / 3 + 1.0) / 2)
    assert both.refs_per_item == 2.0


def test_final_is_the_leaderboard_mean_and_sum_is_the_team_sum():
    # competition.md: leaderboard rows 0.5660/0.3675/0.4719 -> 46.8487 and 0.5494/0.3461/0.4594 -> 45.1643.
    # The board shows F1s rounded to 4 places, which moves the mean by up to 0.005.
    for r1, r2, rl, board in ((0.5660, 0.3675, 0.4719, 46.8487), (0.5494, 0.3461, 0.4594, 45.1643)):
        scores = Scores(r1, r2, rl, tokenizer="mecab", scorer="competition", n=499, refs_per_item=3.0)
        assert scores.final == pytest.approx(board, abs=0.005)
    assert scores.sum == pytest.approx(3 * scores.final)
    assert list(scores.to_dict()) == [
        "rouge1", "rouge2", "rougeL", "final", "sum", "tokenizer", "scorer", "n", "refs_per_item", "empty_predictions",
    ]


@pytest.mark.parametrize("scorer", ["competition", "baseline"])
def test_empty_predictions_score_zero_and_are_counted(scorer):
    ref = "#Person1#은 오늘 병원에 간다."
    scores = score(["", "   ", "#Person1#은 오늘 병원에 간다."], [[ref], [ref], [ref]], scorer=scorer)
    assert scores.empty_predictions == 2
    assert scores.rouge1 == pytest.approx(1 / 3, abs=1e-7)  # two zeros and one perfect match
    only_dots = score(["..."], [[ref]], scorer=scorer)  # rouge 1.0.1 raises here; we score 0
    assert (only_dots.rouge1, only_dots.rouge2, only_dots.rougeL) == (0.0, 0.0, 0.0)


def test_score_rejects_bad_arguments_with_the_fix():
    with pytest.raises(ValueError, match="unknown scorer"):
        score(["a"], [["a"]], scorer="bleu")
    with pytest.raises(ValueError, match="2 predictions but 1 reference lists"):
        score(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="items 1 have no reference"):
        score(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="no predictions"):
        score([], [])


def test_char_tokens_score_far_higher_than_mecab_so_tables_must_say_which():
    mecab = score_files(FIXTURES / "predictions.csv", FIXTURES / "references.csv", tokenizer="mecab")
    char = score_files(FIXTURES / "predictions.csv", FIXTURES / "references.csv", tokenizer="char")
    assert (mecab.tokenizer, char.tokenizer) == ("mecab", "char")
    assert char.final > mecab.final


# --- baseline scorer against the rouge==1.0.1 package -------------------------------------------

_VOCAB = ["#Person1#은", "#Person2#가", "내일", "병원에", "간다", "예약을", "했다", "호텔", "방", "Tom", "tom", "회의",
          "영화를", "보기로", "친구와", "the", "meeting", "3시", "!", "?", ",", "예약을"]
_SEPARATORS = [" ", " ", " ", "  ", ". ", ".", " . ", "\n", "..", " .  . "]


def _join(rng: random.Random, words: list[str]) -> str:
    text = words[0]
    for word in words[1:]:
        text += rng.choice(_SEPARATORS) + word
    return text + rng.choice(["", ".", " ", ". "])


def _random_pair(rng: random.Random) -> tuple[str, str]:
    """A reference and a prediction that is either unrelated or an edited copy (so LCS ties occur)."""
    if rng.random() < 0.04:
        return rng.choice(["", " ", ".", ". .", "  "]), _join(rng, [rng.choice(_VOCAB)])
    ref = [rng.choice(_VOCAB) for _ in range(rng.randint(1, 16))]
    hyp = list(ref) if rng.random() < 0.7 else [rng.choice(_VOCAB) for _ in range(rng.randint(1, 16))]
    for _ in range(rng.randint(0, 4)):  # drop, insert or swap words
        edit, i = rng.random(), rng.randrange(len(hyp))
        if edit < 0.3 and len(hyp) > 1:
            del hyp[i]
        elif edit < 0.6:
            hyp.insert(i, rng.choice(_VOCAB))
        else:
            j = rng.randrange(len(hyp))
            hyp[i], hyp[j] = hyp[j], hyp[i]
    return _join(rng, hyp), _join(rng, ref)


def _package_f1(hyp: str, ref: str) -> tuple[float, float, float]:
    try:
        result = Rouge().get_scores(hyp, ref)[0]
    except ValueError:  # the package raises on an empty side; we define that as 0
        return 0.0, 0.0, 0.0
    return result["rouge-1"]["f"], result["rouge-2"]["f"], result["rouge-l"]["f"]


def test_baseline_matches_rouge_1_0_1_bit_for_bit_on_random_pairs():
    rng = random.Random(20251006)
    pairs = [_random_pair(rng) for _ in range(400)]
    pairs += [("...", "내일 간다."), ("내일 간다.", ""), ("내일 간다.", " . ")]
    mismatches = [(hyp, ref) for hyp, ref in pairs if baseline_pair(hyp, ref) != _package_f1(hyp, ref)]
    assert mismatches == []


def test_baseline_average_matches_the_package_average():
    rng = random.Random(7)
    pairs = [(hyp + " 간다", ref + " 간다") for hyp, ref in (_random_pair(rng) for _ in range(120))]
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    expected = Rouge().get_scores(hyps, refs, avg=True)
    ours = score(hyps, [[r] for r in refs], scorer="baseline")
    assert (ours.rouge1, ours.rouge2, ours.rougeL) == (
        expected["rouge-1"]["f"], expected["rouge-2"]["f"], expected["rouge-l"]["f"],
    )
    assert ours.tokenizer == "whitespace"


# --- CSV input ----------------------------------------------------------------------------------


def test_score_files_joins_on_fname_reads_bom_and_several_reference_columns():
    references = evaluate.read_references(FIXTURES / "references.csv")
    assert list(references) == ["dev_0", "dev_1", "dev_2"]  # the BOM did not eat the fname header
    assert [len(refs) for refs in references.values()] == [3, 1, 2]  # empty summaryN cells are not references
    scores = score_files(FIXTURES / "predictions.csv", FIXTURES / "references.csv")
    assert scores.n == 3 and scores.refs_per_item == pytest.approx(2.0)
    # Same numbers as scoring the joined lists directly: predictions.csv lists the fnames in another order.
    predictions = evaluate.read_predictions(FIXTURES / "predictions.csv")
    direct = score([predictions[f] for f in references], list(references.values()))
    assert scores == direct


def test_indexed_submission_with_an_empty_summary_is_read_and_scores_zero_there():
    scores = score_files(FIXTURES / "predictions_indexed.csv", FIXTURES / "references.csv")
    assert scores.empty_predictions == 1 and scores.n == 3


def test_fname_mismatch_names_missing_and_extra_fnames():
    with pytest.raises(MetricInputError) as err:
        score_files(FIXTURES / "predictions_mismatch.csv", FIXTURES / "references.csv")
    message = str(err.value)
    assert "dev_2" in message and "test_9" in message and "predictions_mismatch.csv" in message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("predictions_duplicate.csv", "duplicate fname(s) dev_0"),
        ("predictions_no_summary.csv", "no 'summary' column (columns: fname, prediction)"),
        ("id,summary\n1,요약\n".encode(), "no 'fname' column"),
        (b"fname,summary\ndev_0,\xff\xfe\n", "neither UTF-8 nor cp949"),
        (b"fname,summary\ndev_0,a\n,b\n", "empty fname on line(s) 3"),
    ],
)
def test_bad_prediction_files_name_the_file_and_the_fix(tmp_path, source, expected):
    """``source`` is a fixture name, or the bytes of a file written for the test."""
    if isinstance(source, bytes):
        path = tmp_path / "predictions.csv"
        path.write_bytes(source)
    else:
        path = FIXTURES / source
    with pytest.raises(MetricInputError) as err:
        evaluate.read_predictions(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_missing_file_and_reference_rows_without_text(tmp_path):
    with pytest.raises(MetricInputError, match="does not exist"):
        evaluate.read_predictions(tmp_path / "nope.csv")
    refs = tmp_path / "refs.csv"
    refs.write_text("fname,summary,summary1\ndev_0,요약,\ndev_1, ,\n", encoding="utf-8")
    with pytest.raises(MetricInputError, match=r"line 3 \(fname dev_1\): no reference summary"):
        evaluate.read_references(refs)


def test_cp949_predictions_are_read_like_the_shared_reader_reads_data(tmp_path):
    path = tmp_path / "cp949.csv"
    path.write_bytes("fname,summary\ndev_0,요약입니다\n".encode("cp949"))
    assert evaluate.read_predictions(path) == {"dev_0": "요약입니다"}


# --- the evaluate command -----------------------------------------------------------------------


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "evaluate", *args], cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def test_cli_json_prints_exactly_the_documented_keys():
    proc = _run_cli("--predictions", str(FIXTURES / "predictions.csv"), "--references", str(FIXTURES / "references.csv"), "--json")
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert set(body) == {"rouge1", "rouge2", "rougeL", "final", "sum", "tokenizer", "scorer", "n", "refs_per_item"}
    expected = score_files(FIXTURES / "predictions.csv", FIXTURES / "references.csv")
    assert body["final"] == pytest.approx(expected.final) and body["n"] == 3


def test_cli_bad_input_exits_2_and_names_the_fnames():
    proc = _run_cli("--predictions", str(FIXTURES / "predictions_mismatch.csv"), "--references", str(FIXTURES / "references.csv"))
    assert proc.returncode == 2
    assert "dev_2" in proc.stderr and "test_9" in proc.stderr and proc.stdout == ""


def test_cli_human_table_names_tokenizer_and_aggregate(capsys):
    code = engine_main(["evaluate", "--predictions", str(FIXTURES / "predictions_indexed.csv"),
                        "--references", str(FIXTURES / "references.csv"), "--tokenizer", "char"])
    out = capsys.readouterr().out
    assert code == 0
    assert "tokenizer  char" in out and "final = mean(R1,R2,RL)×100" in out and "1 empty prediction" in out


def test_cli_baseline_refuses_a_tokenizer_it_would_ignore(capsys):
    code = engine_main(["evaluate", "--predictions", str(FIXTURES / "predictions.csv"),
                        "--references", str(FIXTURES / "references.csv"), "--scorer", "baseline", "--tokenizer", "char"])
    assert code == 2 and "competition scorer only" in capsys.readouterr().err


def test_cli_run_dir_records_eval_metrics_json_and_a_verdict_like_train_and_infer(tmp_path):
    # A subprocess: with --run-dir the command installs SIGINT/SIGTERM handlers (engine.runtime).
    run_dir = tmp_path / "run"
    proc = _run_cli("--predictions", str(FIXTURES / "predictions_indexed.csv"), "--references", str(FIXTURES / "references.csv"),
                    "--run-dir", str(run_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    events = read_events(run_dir / "events.jsonl")
    assert {e["command"] for e in events} == {"evaluate"}
    assert [e["event"] for e in events] == ["started", "phase", "eval", "warning", "artifact", "finished"]
    evaluated = next(e for e in events if e["event"] == "eval")
    assert evaluated["split"] == "dev"
    for key in ("rouge1", "rouge2", "rougeL", "final", "sum", "tokenizer", "scorer", "n"):
        assert evaluated[key] == printed[key]
    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert saved["final"] == printed["final"] and saved["empty_predictions"] == 1
    assert next(e for e in events if e["event"] == "artifact")["path"] == str(run_dir / "metrics.json")


def test_cli_run_dir_bad_input_records_a_data_failure_and_exits_2(tmp_path):
    run_dir = tmp_path / "run"
    proc = _run_cli("--predictions", str(FIXTURES / "predictions_mismatch.csv"), "--references", str(FIXTURES / "references.csv"),
                    "--run-dir", str(run_dir))
    assert proc.returncode == 2 and "test_9" in proc.stderr
    failed = [e for e in read_events(run_dir / "events.jsonl") if e["event"] == "failed"]
    assert len(failed) == 1 and failed[0]["kind"] == "data" and "dev_2" in failed[0]["message"]
    assert not (run_dir / "metrics.json").exists()


def test_importing_the_metric_loads_neither_mecab_nor_rouge_score():
    code = "import sys, engine.metrics; print(sorted({'mecab_ko', 'rouge_score', 'nltk', 'torch'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
