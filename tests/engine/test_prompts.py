"""Tests for engine.prompts: the Korean_DCS_2024 prompt through a real chat template, and the topic policy."""

from __future__ import annotations

import random

import pytest

from engine.config import PromptConfig
from engine.data import Sample
from engine.prompts import (
    MASK_TOKENS,
    causal_messages,
    causal_prompt,
    prompt_mismatch_warning,
    relabel_speakers,
    seq2seq_source,
    use_topic_at_inference,
    use_topic_in_training,
)

DIALOGUE = "#Person1#: #Person2#, 내일 시간 있어?\n#Person2#: 응, 있어.\n#Person3#: #Person1#, 나도 갈게."
WITH_TOPIC = Sample("train_0", DIALOGUE, "#Person1#은 약속을 잡습니다.", "약속 잡기")
NO_TOPIC = Sample("test_0", DIALOGUE)
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "<|im_end|>": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="<|im_end|>")
    tok.chat_template = CHATML
    return tok


def test_relabel_only_leading_markers():
    out = relabel_speakers(DIALOGUE)
    assert out.split("\n") == ["화자1: #Person2#, 내일 시간 있어?", "화자2: 응, 있어.", "화자3: #Person1#, 나도 갈게."]
    assert relabel_speakers(DIALOGUE, "Speaker").startswith("Speaker1:")


def test_causal_messages_follow_the_korean_dcs_format():
    cfg = PromptConfig()
    system, user = causal_messages(WITH_TOPIC, cfg, with_topic=True)
    assert system == {"role": "system", "content": cfg.system}
    assert user["role"] == "user"
    assert user["content"] == (
        "[Conversation]\n" + relabel_speakers(DIALOGUE) + "\n\n[Question]\n위 약속 잡기 주제에 대한 대화를 요약해주세요."
    )
    without = causal_messages(WITH_TOPIC, cfg, with_topic=False)[1]["content"]
    assert without.endswith("[Question]\n위 대화를 요약해주세요.")
    # Asking for the topic of a sample that has none falls back to the plain question.
    assert causal_messages(NO_TOPIC, cfg, with_topic=True)[1]["content"] == without


def test_causal_prompt_uses_the_chat_template_and_ends_at_the_answer(tokenizer):
    cfg = PromptConfig()
    text = causal_prompt(tokenizer, WITH_TOPIC, cfg, with_topic=True)
    assert text.startswith("<|im_start|>system\n" + cfg.system)
    assert "화자1: #Person2#, 내일 시간 있어?" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_causal_prompt_without_template_says_what_to_do(tokenizer):
    bare = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, unk_token="[UNK]")
    bare.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        causal_prompt(bare, WITH_TOPIC, PromptConfig(), with_topic=False)


def test_seq2seq_source_keeps_person_markers_and_prefixes_topic():
    cfg = PromptConfig()
    assert seq2seq_source(WITH_TOPIC, cfg, with_topic=False) == DIALOGUE
    with_topic = seq2seq_source(WITH_TOPIC, cfg, with_topic=True)
    assert with_topic.startswith("주제: 약속 잡기\n") and with_topic.endswith(DIALOGUE)
    assert seq2seq_source(NO_TOPIC, cfg, with_topic=True) == DIALOGUE


def test_topic_policy_in_training():
    rng = random.Random(0)
    assert not any(use_topic_in_training(PromptConfig(topic="never"), rng) for _ in range(20))
    assert all(use_topic_in_training(PromptConfig(topic="always"), rng) for _ in range(20))
    cfg = PromptConfig(topic="dropout", topic_dropout=0.3)
    draws = [use_topic_in_training(cfg, random.Random(i)) for i in range(400)]
    share_without = draws.count(False) / len(draws)
    assert abs(share_without - cfg.topic_dropout) < 0.1
    # Same seed, same sequence: training prompts are reproducible.
    a, b = random.Random(7), random.Random(7)
    assert [use_topic_in_training(cfg, a) for _ in range(30)] == [use_topic_in_training(cfg, b) for _ in range(30)]


def test_topic_policy_at_inference_and_mismatch_warning():
    assert not use_topic_at_inference(PromptConfig(topic="never"), WITH_TOPIC)
    assert use_topic_at_inference(PromptConfig(topic="always"), WITH_TOPIC)
    assert use_topic_at_inference(PromptConfig(topic="dropout"), WITH_TOPIC)
    assert not use_topic_at_inference(PromptConfig(topic="always"), NO_TOPIC)
    assert not use_topic_at_inference(PromptConfig(topic="dropout", topic_dropout=1.0), WITH_TOPIC)
    warning = prompt_mismatch_warning(PromptConfig(topic="always"), inference_has_topic=False)
    assert warning and "prompt.topic" in warning and "dropout" in warning
    assert prompt_mismatch_warning(PromptConfig(topic="always"), inference_has_topic=True) is None
    assert prompt_mismatch_warning(PromptConfig(topic="never"), inference_has_topic=False) is None
    assert prompt_mismatch_warning(PromptConfig(topic="dropout"), inference_has_topic=False) is None
    assert prompt_mismatch_warning(PromptConfig(topic="dropout", topic_dropout=0.0), inference_has_topic=False)


def test_mask_tokens_cover_the_competition_list():
    for token in ("#Person4#", "#DateOfBirth#", "#PassportNumber#", "#SSN#", "#CardNumber#", "#CarNumber#", "#Email#"):
        assert token in MASK_TOKENS
    assert len(set(MASK_TOKENS)) == len(MASK_TOKENS)
