"""End-to-end causal LoRA in bf16: SFT a tiny Llama with completion-only loss, then generate from the
saved adapter in a NEW process — the hand-off's "expected scalar type BFloat16 but found Float" must
not come back."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from engine.artifacts import FINAL_MODEL_META

from support import engine_cli, read_event_lines, write_run_config


def llama_config(model_dir: Path) -> dict:
    return {
        "model": {"name_or_path": str(model_dir), "nickname": "tiny-llama-bf16", "kind": "causal", "dtype": "bfloat16"},
        "data": {"dir": "data", "max_train_samples": 48, "max_eval_samples": 4},
        "prompt": {"max_source_length": 256, "max_target_length": 48, "topic": "dropout"},
        "lora": {"enabled": True, "r": 8, "alpha": 16, "dropout": 0.0},
        "train": {"epochs": 1, "max_steps": 6, "learning_rate": 3e-3, "batch_size": 8, "precision": "bf16",
                  "eval_strategy": "steps", "eval_steps": 6, "save_strategy": "no", "logging_steps": 1,
                  "warmup_ratio": 0.0},
        "generation": {"batch_size": 8, "num_beams": 1, "max_new_tokens": 24},
    }


@pytest.mark.slow  # ~20 s: bf16 matmuls are emulated on most CPUs
def test_causal_lora_bf16_train_then_infer_in_new_process(tmp_path: Path, synth_data_dir: Path, tiny_llama_dir: Path) -> None:
    from safetensors.torch import load_file

    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copytree(synth_data_dir, ws / "data")
    config = write_run_config(ws, llama_config(tiny_llama_dir))
    run_dir = ws / "runs" / "7"

    train = engine_cli("train", "--config", str(config), "--run-dir", str(run_dir), cwd=ws)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "FutureWarning" not in train.stderr  # run.log shows what a user can act on, not libraries' notices
    final = ws / "checkpoints" / "tiny-llama-bf16" / "final_model"
    meta = json.loads((final / FINAL_MODEL_META).read_text())
    assert meta["adapter"] and meta["dtype"] == "bfloat16" and meta["kind"] == "causal"
    assert (final / "adapter_config.json").exists() and (final / "tokenizer_config.json").exists()
    # LoRA B starts at zero: any non-zero B means the adapter actually trained.
    weights = load_file(final / "adapter_model.safetensors")
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)

    events = read_event_lines(run_dir / "events.jsonl")
    assert events[0]["event"] == "started" and events[0]["dtype"] == "bfloat16"
    losses = [e["loss"] for e in events if e["event"] == "train_log"]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert [e["step"] for e in events if e["event"] == "eval"] == [6]
    assert events[-1]["event"] == "finished"

    infer = engine_cli("infer", "--config", str(config), "--run-dir", str(run_dir), "--split", "test", cwd=ws)
    assert infer.returncode == 0, infer.stderr[-3000:]
    assert "BFloat16" not in infer.stderr
    with open(ws / "submissions" / "tiny-llama-bf16_submission.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(ws / "data" / "test.csv", newline="", encoding="utf-8") as fh:
        assert [r["fname"] for r in rows] == [r["fname"] for r in csv.DictReader(fh)]
    infer_events = [e for e in read_event_lines(run_dir / "events.jsonl") if e.get("command") == "infer"]
    assert infer_events[-1]["event"] == "finished" and infer_events[-1]["metrics"]["dtype"] == "bfloat16"
    # Generations may be empty for so short a training run, but then they are counted, never dropped.
    empty = sum(1 for r in rows if not r["summary"].strip())
    assert infer_events[-1]["metrics"]["test_empty"] == empty


def test_labels_cover_only_the_summary(tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    from engine.recipes.sft import prompt_completion_rows

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "#Person1#: 안녕하세요."}], tokenize=False,
                                           add_generation_prompt=True)
    rows, prompt_cut, completion_cut = prompt_completion_rows(
        [prompt, prompt * 20], ["#Person1#이 인사합니다.", "요약 " * 50], tokenizer, 40, 20)
    whole, cut = ({key: rows[key][i] for key in rows} for i in (0, 1))
    assert (prompt_cut, completion_cut) == (1, 1)  # only the second pair is cut
    # The first pair fits: the labels are exactly the summary plus EOS, the prompt is masked.
    summary = [t for t in whole["labels"] if t != -100]
    assert tokenizer.decode(summary, skip_special_tokens=False) == "#Person1#이 인사합니다." + tokenizer.eos_token
    assert whole["input_ids"][-len(summary):] == summary
    # The second keeps the prompt's end (40 tokens, where the question is) and a summary that still ends in EOS.
    assert cut["labels"].count(-100) == 40 and len(cut["input_ids"]) == 40 + 20
    assert cut["input_ids"][:40] == tokenizer(prompt * 20, add_special_tokens=False)["input_ids"][-40:]
    assert cut["labels"][-1] == cut["input_ids"][-1] == tokenizer.eos_token_id
