"""Tests for engine.synthetic: determinism, schema, lengths, and that summaries are derivable."""

from __future__ import annotations

import csv
import re
import statistics
import string
import subprocess
import sys
from pathlib import Path

from engine import synthetic
from engine.synthetic import generate, write_dataset
from engine.synthetic_scenarios import SCENARIOS, particle

REPO = Path(__file__).resolve().parents[2]


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = write_dataset(tmp_path / "a", n_train=30, n_dev=8, n_test=8, seed=3)
    b = write_dataset(tmp_path / "b", n_train=30, n_dev=8, n_test=8, seed=3)
    c = write_dataset(tmp_path / "c", n_train=30, n_dev=8, n_test=8, seed=4)
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes()
    assert a["train"].read_bytes() != c["train"].read_bytes()


def test_schema_fnames_and_gap(tmp_path):
    paths = write_dataset(tmp_path, n_train=20, n_dev=10, n_test=10, seed=0)
    train, dev, test = (_read(paths[s]) for s in ("train", "dev", "test"))
    assert list(train[0]) == ["fname", "dialogue", "summary", "topic"]
    assert list(dev[0]) == ["fname", "dialogue", "summary", "topic"]
    assert list(test[0]) == ["fname", "dialogue"]
    assert [r["fname"] for r in train] == [f"train_{i}" for i in range(20)]
    for split, rows in (("dev", dev), ("test", test)):
        numbers = [int(r["fname"].removeprefix(f"{split}_")) for r in rows]
        assert len(rows) == 10 and numbers == sorted(numbers)
        assert numbers[-1] == len(rows), f"{split} should skip exactly one fname like the real data"
    refs = _read(paths["test_references"])
    assert [r["fname"] for r in refs] == [r["fname"] for r in test]
    assert all(r["summary"] and r["summary1"] and r["summary2"] for r in refs)


def test_dialogue_shape_speakers_and_masks():
    rows = generate(300, 0, 0, seed=1)["train"]
    speaker_counts = set()
    for row in rows:
        lines = row["dialogue"].split("\n")
        assert all(re.match(r"#Person[1-7]#: \S", line) for line in lines), row["fname"]
        speakers = {line.split(":")[0] for line in lines}
        speaker_counts.add(len(speakers))
        assert "#Person1#" in row["summary"]
        # Every masked entity a summary names must be in the dialogue: it is copied, not invented.
        for mask in re.findall(r"#\w+#", row["summary"]):
            assert mask in row["dialogue"], (row["fname"], mask)
    assert min(speaker_counts) == 2 and max(speaker_counts) > 2
    assert speaker_counts <= set(range(2, 8))


def test_summary_slots_are_all_said_in_the_dialogue():
    fields = string.Formatter()
    for scenario in SCENARIOS:
        said = {name for _, tpl in scenario.turns for _, name, _, _ in fields.parse(tpl) if name}
        for summary in scenario.summaries:
            used = {name for _, name, _, _ in fields.parse(summary) if name}
            assert used <= said, (scenario.topics[0], used - said)


def test_particles_follow_the_final_consonant():
    assert particle("사과", "을") == "사과를"
    assert particle("수박", "를") == "수박을"
    assert particle("#Person1#", "는") == "#Person1#은"
    assert particle("#Person2#", "은") == "#Person2#는"
    assert particle("서울", "으로") == "서울로"
    assert particle("부산", "로") == "부산으로"


def test_competition_profile_is_longer_with_a_tail():
    demo = generate(200, 0, 0, seed=0, profile="demo")["train"]
    comp = generate(200, 0, 0, seed=0, profile="competition")["train"]
    demo_len = [len(r["dialogue"]) for r in demo]
    comp_len = [len(r["dialogue"]) for r in comp]
    assert statistics.mean(comp_len) > statistics.mean(demo_len)
    assert max(comp_len) > 2 * statistics.mean(comp_len)
    assert statistics.mean(len(r["summary"]) for r in comp) > statistics.mean(len(r["summary"]) for r in demo)


def test_cli_writes_files_and_rejects_bad_input(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "engine", "synth", "--out", str(tmp_path / "d"), "--train", "5",
                         "--dev", "3", "--test", "3", "--profile", "competition"],
                        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert len(_read(tmp_path / "d" / "train.csv")) == 5
    bad = subprocess.run([sys.executable, "-m", "engine", "synth", "--out", str(tmp_path / "e"), "--train", "-1"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--train" in bad.stdout
    (tmp_path / "file").write_text("x")
    clash = synthetic.main(type("A", (), {"out": str(tmp_path / "file"), "train": 1, "dev": 1, "test": 1,
                                          "seed": 0, "profile": "demo"})())
    assert clash == 2
