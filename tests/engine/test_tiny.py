"""Tests for engine.tiny: the tiny models load offline and their tokenizers keep the masked entities."""

from __future__ import annotations

import json
from pathlib import Path

from support import engine_cli


def test_tiny_bart_loads_offline_and_round_trips_korean(tiny_bart_dir: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from engine.prompts import MASK_TOKENS

    tokenizer = AutoTokenizer.from_pretrained(tiny_bart_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_bart_dir)
    text = "#Person1#: 안녕하세요, 예약하려고요.\n#Person2#: 네, #PhoneNumber# 맞으세요?"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=False) == f"{tokenizer.bos_token}{text}{tokenizer.eos_token}"
    # Each masked entity is one token, never split into pieces.
    for token in MASK_TOKENS:
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(token)]
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert model.config.d_model <= 128


def test_tiny_llama_has_chat_template_and_was_pretrained(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": "요약"}, {"role": "user", "content": "대화"}], tokenize=False, add_generation_prompt=True
    )
    assert "요약" in prompt and "대화" in prompt and prompt.endswith("assistant\n")
    summary = json.loads((tiny_llama_dir / "tiny_model.json").read_text())
    assert summary["pretrain_steps"] > 0
    assert summary["pretrain_loss_last"] < summary["pretrain_loss_first"]


def test_tiny_qwen3_and_t5_build(synth_data_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoConfig

    for arch, model_type in (("qwen3", "qwen3"), ("t5", "t5")):
        result = engine_cli("tiny-model", "--arch", arch, "--data", str(synth_data_dir), "--out", str(tmp_path / arch))
        assert result.returncode == 0, result.stderr[-2000:]
        assert AutoConfig.from_pretrained(tmp_path / arch).model_type == model_type


def test_tiny_model_bad_data_dir_exits_2(tmp_path: Path) -> None:
    result = engine_cli("tiny-model", "--arch", "bart", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "m"))
    assert result.returncode == 2
    assert "missing" in result.stderr
