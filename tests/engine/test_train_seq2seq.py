"""End-to-end seq2seq: train a tiny BART → final_model → infer → submission → evaluate, all through
the real CLI in subprocesses with a workspace as CWD; plus config errors, SIGINT and the disk guard."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.artifacts import FINAL_MODEL_META, is_complete_model
from engine.contract import FailureKind
from engine.du import tree_size
from engine.units import disk_stop_bytes

from support import REPO, engine_cli, read_event_lines, write_run_config


def bart_config(model_dir: Path, **train: object) -> dict:
    """A quick CPU config; data and outputs are relative to the workspace."""
    return {
        "model": {"name_or_path": str(model_dir), "nickname": "tiny-bart", "kind": "seq2seq"},
        "data": {"dir": "data", "max_eval_samples": 8},
        "prompt": {"max_source_length": 256, "max_target_length": 64},
        "train": {"epochs": 1, "max_steps": 24, "learning_rate": 1e-3, "batch_size": 16, "eval_strategy": "steps",
                  "eval_steps": 12, "save_strategy": "steps", "save_steps": 12, "save_total_limit": 1,
                  "logging_steps": 4, "warmup_ratio": 0.05, **train},
        "generation": {"batch_size": 16, "num_beams": 1, "max_new_tokens": 32},
    }


def make_workspace(tmp_path: Path, data_dir: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    shutil.copytree(data_dir, workspace / "data")
    return workspace


def test_seq2seq_train_infer_evaluate(tmp_path: Path, synth_data_dir: Path, tiny_bart_dir: Path) -> None:
    ws = make_workspace(tmp_path, synth_data_dir)
    config = write_run_config(ws, bart_config(tiny_bart_dir))
    run_dir = ws / "runs" / "1"

    # The guard is on (as under the manager) with a limit far above what the run writes.
    train = engine_cli("train", "--config", str(config), "--run-dir", str(run_dir), "--disk-root", ".",
                       "--disk-stop-bytes", str(disk_stop_bytes(100.0, 0.0)), cwd=ws)
    assert train.returncode == 0, train.stderr[-3000:]
    final = ws / "checkpoints" / "tiny-bart" / "final_model"
    assert is_complete_model(final)
    meta = json.loads((final / FINAL_MODEL_META).read_text())
    assert meta["kind"] == "seq2seq" and meta["dtype"] == "float32" and not meta["adapter"]
    assert meta["base_model"] == str(tiny_bart_dir)
    # save_total_limit=1 keeps only the newest intermediate checkpoint.
    assert len(list((ws / "checkpoints" / "tiny-bart" / "trainer").glob("checkpoint-*"))) == 1
    assert (run_dir / "config.yaml").read_text().startswith("model:")

    events = read_event_lines(run_dir / "events.jsonl")
    names = [e["event"] for e in events]
    assert names[0] == "started" and names[-1] == "finished"
    phases = [e["name"] for e in events if e["event"] == "phase"]
    assert phases == ["load_data", "load_model", "train", "save"]
    losses = [e["loss"] for e in events if e["event"] == "train_log"]
    assert len(losses) >= 3 and losses[-1] < losses[0]
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [12, 24]
    assert all(0 <= e["rouge1"] <= 1 and e["tokenizer"] == "mecab" for e in evals)
    artifacts = {e["kind"] for e in events if e["event"] == "artifact"}
    assert artifacts == {"checkpoint", "final_model"}
    assert names.index("finished") > max(i for i, n in enumerate(names) if n == "artifact")

    infer = engine_cli("infer", "--config", str(config), "--run-dir", str(run_dir), cwd=ws)
    assert infer.returncode == 0, infer.stderr[-3000:]
    with open(ws / "submissions" / "tiny-bart_submission.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(ws / "data" / "test.csv", newline="", encoding="utf-8") as fh:
        test_fnames = [r["fname"] for r in csv.DictReader(fh)]
    assert [r["fname"] for r in rows] == test_fnames
    assert set(rows[0]) == {"fname", "summary"}
    dev_predictions = ws / "submissions" / "tiny-bart_dev_predictions.csv"
    infer_events = [e for e in read_event_lines(run_dir / "events.jsonl") if e.get("command") == "infer"]
    assert [e["kind"] for e in infer_events if e["event"] == "artifact"] == ["dev_predictions", "submission"]
    assert infer_events[-1]["event"] == "finished"

    evaluate = engine_cli("evaluate", "--predictions", str(dev_predictions), "--references", "data/dev.csv", "--json", cwd=ws)
    assert evaluate.returncode == 0, evaluate.stderr[-2000:]
    scores = json.loads(evaluate.stdout)
    assert scores["n"] == 24 and 0 <= scores["final"] <= 100


def test_config_error_exits_2_naming_the_key(tmp_path: Path, synth_data_dir: Path, tiny_bart_dir: Path) -> None:
    ws = make_workspace(tmp_path, synth_data_dir)
    config = write_run_config(ws, bart_config(tiny_bart_dir))
    run_dir = ws / "runs" / "1"
    result = engine_cli("train", "--config", str(config), "--run-dir", str(run_dir), "--set", "train.bacth_size=4", cwd=ws)
    assert result.returncode == 2
    assert "train.bacth_size" in result.stderr
    failed = read_event_lines(run_dir / "events.jsonl")[-1]
    assert failed["event"] == "failed" and failed["kind"] == "config" and "train.bacth_size" in failed["message"]
    assert failed["hint"] == FailureKind.CONFIG.hint


def test_missing_data_exits_2_with_data_event(tmp_path: Path, tiny_bart_dir: Path) -> None:
    ws = tmp_path / "ws"
    config = write_run_config(ws, bart_config(tiny_bart_dir))
    result = engine_cli("train", "--config", str(config), "--run-dir", str(ws / "run"), cwd=ws)
    assert result.returncode == 2
    failed = read_event_lines(ws / "run" / "events.jsonl")[-1]
    assert failed["kind"] == "data" and "data" in failed["message"]
    assert failed["hint"] == FailureKind.DATA.hint


def test_sigint_mid_training_exits_130(tmp_path: Path, synth_data_dir: Path, tiny_bart_dir: Path) -> None:
    ws = make_workspace(tmp_path, synth_data_dir)
    config = write_run_config(ws, bart_config(tiny_bart_dir, max_steps=5000, logging_steps=1, eval_strategy="no",
                                              save_strategy="no"))
    run_dir = ws / "runs" / "1"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "engine", "train", "--config", str(config), "--run-dir", str(run_dir)],
                            cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    events_file = run_dir / "events.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and '"train_log"' not in (events_file.read_text() if events_file.exists() else ""):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    events = read_event_lines(events_file)
    assert events[-1]["event"] == "failed" and events[-1]["kind"] == "interrupted"
    steps = [e["step"] for e in events if e["event"] == "train_log"]
    assert steps and max(steps) < 5000
    assert not (ws / "checkpoints" / "tiny-bart" / "final_model").exists()


def test_disk_guard_stops_training(tmp_path: Path, synth_data_dir: Path, tiny_bart_dir: Path) -> None:
    ws = make_workspace(tmp_path, synth_data_dir)
    tree = bart_config(tiny_bart_dir)
    used = tree_size(ws)
    # The limit is just above what the workspace holds now: the first checkpoint cannot fit.
    config = write_run_config(ws, tree)
    result = engine_cli("train", "--config", str(config), "--run-dir", str(ws / "run"), "--disk-root", ".",
                        "--disk-stop-bytes", str(used + 500_000), cwd=ws)
    assert result.returncode == 1, result.stderr[-2000:]
    failed = read_event_lines(ws / "run" / "events.jsonl")[-1]
    assert failed["event"] == "failed" and failed["kind"] == "disk" and "quota_gb" in failed["message"]
    assert failed["hint"] == FailureKind.DISK.hint
    assert not list((ws / "checkpoints" / "tiny-bart" / "trainer").glob("checkpoint-*"))
    assert not (ws / "checkpoints" / "tiny-bart" / "final_model").exists()


def test_cut_sources_and_summaries_match_the_tokenizers_own_truncation(tiny_bart_dir: Path) -> None:
    """Only over-long rows are tokenized again, yet every row equals what the tokenizer's own
    truncation gives: sources keep their end, summaries their start, both their special tokens."""
    from transformers import AutoTokenizer

    from engine.recipes.seq2seq import preprocess_seq2seq

    tokenizer = AutoTokenizer.from_pretrained(tiny_bart_dir)
    sources = ["#Person1#: 안녕하세요. " * n for n in (1, 3, 40)]
    summaries = ["인사.", "인사를 나눈다. " * 30, "인사를 나눈다."]
    columns, src_cut, tgt_cut = preprocess_seq2seq(sources, summaries, tokenizer, 48, 16)
    assert (src_cut, tgt_cut) == (1, 1)
    tokenizer.truncation_side = "left"
    assert columns["input_ids"] == tokenizer(sources, truncation=True, max_length=48)["input_ids"]
    tokenizer.truncation_side = "right"
    assert columns["labels"] == tokenizer(text_target=summaries, truncation=True, max_length=16)["input_ids"]
    assert columns["attention_mask"] == [[1] * len(ids) for ids in columns["input_ids"]]
