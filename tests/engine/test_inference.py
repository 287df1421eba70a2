"""Tests for engine.inference: incomplete models refused, order restored after length sorting,
masked entities kept in decoded summaries, CSV quoting."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from engine.config import GenerationConfig

from support import engine_cli, read_event_lines, write_run_config


def test_incomplete_final_model_is_refused(tmp_path: Path, synth_data_dir: Path, tiny_bart_dir: Path) -> None:
    ws = tmp_path / "ws"
    final = ws / "checkpoints" / "half" / "final_model"
    final.mkdir(parents=True)
    # A half-written save: weights present, completeness marker missing.
    (final / "config.json").write_text((tiny_bart_dir / "config.json").read_text())
    config = write_run_config(ws, {
        "model": {"name_or_path": str(tiny_bart_dir), "nickname": "half", "kind": "seq2seq"},
        "data": {"dir": str(synth_data_dir)},
    })
    result = engine_cli("infer", "--config", str(config), "--run-dir", str(ws / "run"), cwd=ws)
    assert result.returncode == 2
    assert "incomplete final_model" in result.stderr and str(final) in result.stderr
    failed = read_event_lines(ws / "run" / "events.jsonl")[-1]
    assert failed["event"] == "failed" and failed["kind"] == "config"
    assert not (ws / "submissions").exists()


def test_generation_restores_input_order(tiny_bart_dir: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from engine.inference import generate_summaries

    tokenizer = AutoTokenizer.from_pretrained(tiny_bart_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_bart_dir).eval()
    short, long_ = "#Person1#: 네.", "#Person1#: 안녕하세요, 예약하려고 전화했어요. 내일 저녁 일곱 시에 네 명이요.\n#Person2#: 네, 가능합니다."
    sources = [long_, short, long_, short]
    gen = GenerationConfig(batch_size=2, num_beams=1, max_new_tokens=8)
    batched = generate_summaries(model, tokenizer, sources, "seq2seq", gen, 128, batch_size=2)
    one_by_one = [generate_summaries(model, tokenizer, [s], "seq2seq", gen, 128, batch_size=1)[0] for s in sources]
    assert len(batched) == 4
    assert batched[0] == batched[2] and batched[1] == batched[3]
    assert batched == one_by_one


def test_decode_keeps_masked_entities_and_drops_control_tokens(tiny_bart_dir: Path) -> None:
    from transformers import AutoTokenizer

    from engine.inference import control_token_ids, decode_summary

    tokenizer = AutoTokenizer.from_pretrained(tiny_bart_dir)
    drop = control_token_ids(tokenizer)
    ids = tokenizer("#Person1#은 #PhoneNumber#로 전화합니다.")["input_ids"] + [tokenizer.pad_token_id]
    assert decode_summary(tokenizer, ids, drop) == "#Person1#은 #PhoneNumber#로 전화합니다."
    # A generation that is only control tokens is an empty summary (kept and counted, not dropped).
    assert decode_summary(tokenizer, [tokenizer.bos_token_id, tokenizer.eos_token_id], drop) == ""


def test_predictions_csv_quotes_commas_quotes_and_newlines() -> None:
    from engine.inference import predictions_csv

    summaries = ['#Person1#은 "네, 좋아요"라고 말합니다.', "두 줄\n요약", ""]
    text = predictions_csv(["test_0", "test_1", "test_2"], summaries)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["summary"] for r in rows] == summaries
    assert [r["fname"] for r in rows] == ["test_0", "test_1", "test_2"]


def test_static_cache_is_cuda_only_and_keeps_one_batch_shape() -> None:
    from engine.inference import cache_for, fill_batch, generation_kwargs

    static = GenerationConfig(num_beams=1, cache_implementation="static")
    assert cache_for(static, "cuda") == "static"
    assert cache_for(static, "cpu") is None  # nothing is compiled on the CPU: the dynamic cache is cheaper
    assert "cache_implementation" not in generation_kwargs(static, _Pad(), "cpu")
    assert fill_batch(["a", "b"], 4) == ["a", "b", "b", "b"] and fill_batch(["a"], 1) == ["a"]


class _Pad:
    pad_token_id = 0


def test_static_cache_config_generates_what_the_default_does(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.inference import generate_summaries

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    sources = ["#Person1#: 네.", "#Person1#: 안녕하세요, 예약하려고 전화했어요.\n#Person2#: 네, 가능합니다.", "#Person1#: 좋아요."]
    default = generate_summaries(model, tokenizer, sources, "causal", GenerationConfig(num_beams=1, max_new_tokens=6), 64, 2)
    static = generate_summaries(model, tokenizer, sources, "causal",
                                GenerationConfig(num_beams=1, max_new_tokens=6, cache_implementation="static"), 64, 2)
    assert static == default and len(default) == 3


def test_static_cache_path_matches_the_dynamic_one_in_float32(tiny_llama_dir: Path, monkeypatch) -> None:
    """The CUDA path (static cache, last batch filled to the batch shape, fillers' outputs dropped)
    run on the CPU in float32: same summaries as the dynamic cache. On an H100 in bf16 a random-init
    3B model's near-tied logits make some greedy tokens differ (docs/benchmarks.md); here they must not."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import engine.inference as inference

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    sources = ["#Person1#: 네.", "#Person1#: 안녕하세요, 예약하려고 전화했어요.\n#Person2#: 네, 가능합니다.", "#Person1#: 좋아요.",
               "#Person1#: 내일 봐요.\n#Person2#: 네."]
    gen = GenerationConfig(num_beams=1, max_new_tokens=6, cache_implementation="static")
    dynamic = inference.generate_summaries(model, tokenizer, sources, "causal", gen, 64, 3)
    seen: list[int] = []
    real_generate = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: seen.append(kw["input_ids"].shape[0]) or real_generate(**kw))
    monkeypatch.setattr(inference, "cache_for", lambda g, device_type: g.cache_implementation)
    static = inference.generate_summaries(model, tokenizer, sources, "causal", gen, 64, 3)
    assert seen == [3, 3]  # the last batch (1 source) was filled to the batch shape
    assert static == dynamic

