"""Tests for engine.data: real bad CSV fixtures, normalisation counts, references and the check-data command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.data import MASK_TOKENS, DataError, load_references, load_split
from engine.synthetic import write_dataset

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures" / "data"


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", "check-data", str(path), "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_good_split_loads_samples_in_order():
    train, report = load_split(FIX / "good", "train")
    test, _ = load_split(FIX / "good", "test")
    assert [s.fname for s in train] == ["train_0", "train_1", "train_2"]
    assert all(s.summary and s.topic for s in train)
    assert report.rows == len(train) and report.encoding == "UTF-8" and not report.warnings
    assert [s.fname for s in test] == ["test_0", "test_2"]
    assert all(s.summary is None and s.topic is None for s in test)


@pytest.mark.parametrize("case", ["bom", "cp949", "crlf", "literal_newline", "br"])
def test_noisy_files_normalise_to_the_clean_text(case):
    clean, _ = load_split(FIX / "good", "train")
    noisy, report = load_split(FIX / case, "train")
    by_name = {s.fname: s for s in clean}
    for sample in noisy:
        assert sample == by_name[sample.fname]
    counts = {"crlf": report.crlf, "literal_newline": report.literal_newlines, "br": report.br_tags}
    if case in counts:
        assert counts[case] > 0
    assert report.encoding == {"bom": "UTF-8 with BOM", "cp949": "cp949"}.get(case, "UTF-8")
    if case == "cp949":
        assert any("cp949" in w and "UTF-8" in w for w in report.warnings)


def test_normalize_false_keeps_the_raw_text_but_still_counts():
    raw, report = load_split(FIX / "literal_newline", "train", normalize=False)
    assert "\\n" in raw[0].dialogue and report.literal_newlines > 0


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("dup_fname", ["line 10", "train_1", "duplicate", "line 5"]),
        ("missing_column", ["line 1", "summary", "missing"]),
        ("broken_quote", ["line 5", "train_1", "quote"]),
        ("empty_summary", ["line 5", "train_1", "'summary'", "empty"]),
        ("empty_fname", ["line 5", "'fname'"]),
        ("bad_bytes", ["line 2", "UTF-8"]),
    ],
)
def test_bad_files_raise_a_message_naming_file_row_and_field(case, expected):
    with pytest.raises(DataError) as err:
        load_split(FIX / case, "train")
    message = str(err.value)
    assert str(FIX / case / "train.csv") in message
    for part in expected:
        assert part in message, (part, message)


def test_missing_file_and_unknown_split():
    with pytest.raises(DataError, match="not found"):
        load_split(FIX / "bom", "dev")
    with pytest.raises(DataError, match="unknown split"):
        load_split(FIX / "good", "validation")


def test_unknown_masks_are_counted():
    _, report = load_split(FIX / "unknown_mask", "train")
    assert set(report.unknown_masks) == {"#Name#", "#CarPlate#"}
    assert not set(report.unknown_masks) & set(MASK_TOKENS)
    assert any("#Name#" in line for line in report.summary_lines())


def test_load_references_multi_column_and_index_column():
    refs = load_references(FIX / "references.csv")
    assert refs == {"test_0": ["요약 하나", "요약 둘"], "test_2": ["요약 셋", "요약 넷"]}
    assert load_references(FIX / "references_index.csv") == {"test_0": ["요약 하나"], "test_2": ["요약 셋"]}
    with pytest.raises(DataError, match="summary"):
        load_references(FIX / "good" / "test.csv")


def test_synthetic_set_passes_every_check(tmp_path):
    write_dataset(tmp_path, n_train=40, n_dev=10, n_test=10, seed=0, profile="competition")
    for split in ("train", "dev", "test"):
        samples, report = load_split(tmp_path, split)
        assert len(samples) == report.rows > 0
        assert not report.unknown_masks and not report.warnings, report.summary_lines()


def test_check_data_command_exit_codes(tmp_path):
    ok = _check(FIX / "good")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert [r["split"] for r in json.loads(ok.stdout)] == ["train", "dev", "test"]
    bad = tmp_path / "bad"
    bad.mkdir()
    for split in ("train", "dev", "test"):
        (bad / f"{split}.csv").write_bytes((FIX / "good" / f"{split}.csv").read_bytes())
    (bad / "train.csv").write_bytes((FIX / "broken_quote" / "train.csv").read_bytes())
    result = _check(bad)
    assert result.returncode == 2
    errors = [r for r in json.loads(result.stdout) if not r["ok"]]
    assert [r["split"] for r in errors] == ["train"] and "line 5" in errors[0]["error"]
    text = subprocess.run([sys.executable, "-m", "engine", "check-data", str(bad)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == 2 and "ERROR" in text.stdout and "dev.csv: 3 rows" in text.stdout
