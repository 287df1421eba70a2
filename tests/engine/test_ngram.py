"""Tests for ``generation.no_repeat_ngram_size``: a generated summary never repeats one of its own
n-grams (seq2seq and causal alike; a causal summary may still quote the dialogue), and transformers'
vectorized processor, which the engine relies on for it, bans exactly what the rule says."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from engine.config import GenerationConfig

SOURCES = [
    "#Person1#: 안녕하세요, 예약하려고 전화했어요. 내일 저녁 일곱 시에 네 명이요.\n#Person2#: 네, 가능합니다.",
    "#Person1#: 네.\n#Person2#: 좋아요, 내일 봐요.",
    "#Person1#: 회의는 몇 시에 시작해요?\n#Person2#: 오후 두 시요. 자료는 제가 준비할게요.",
    "#Person1#: 배가 고파요.\n#Person2#: 그럼 점심 먹으러 가요. 김치찌개 어때요?",
]


def ngrams_repeated(ids: list[int], n: int, from_position: int = 0) -> list[tuple[int, ...]]:
    """The n-grams of ``ids`` that end at or after ``from_position`` and occurred earlier in ``ids``."""
    seen: set[tuple[int, ...]] = set()
    repeated = []
    for end in range(n, len(ids) + 1):
        gram = tuple(ids[end - n : end])
        if gram in seen and end - 1 >= from_position:
            repeated.append(gram)
        seen.add(gram)
    return repeated


def until_finished(row: list[int], tokenizer, start: int = 0) -> list[int]:
    """``row`` up to its first eos or pad at or after ``start``: a finished row is padded, and the
    pads are no generated n-grams."""
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    return row[: next((i + 1 for i in range(start, len(row)) if row[i] in stops), len(row))]


def generate_ids(model, tokenizer, sources: list[str], gen: GenerationConfig, **extra):
    """The engine's ``generate()`` call (its keyword arguments, plus ``extra``) on one batch;
    returns the batch's input ids and the generated rows."""
    import torch

    from engine.inference import generation_kwargs

    batch = tokenizer(sources, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, **generation_kwargs(gen, tokenizer, "cpu") | extra)
    return batch["input_ids"], out


@pytest.mark.parametrize("num_beams", [1, 3])
def test_a_seq2seq_summary_never_repeats_an_ngram(tiny_bart_dir: Path, num_beams: int) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bart_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_bart_dir).eval()
    free = GenerationConfig(num_beams=num_beams, max_new_tokens=24, no_repeat_ngram_size=0)
    # The tiny model's greedy search would end at once; 16 tokens at least give it room to repeat.
    _, looping = generate_ids(model, tokenizer, SOURCES, free, min_new_tokens=16)
    # Without the ban it repeats itself, so the assertions below have work to check.
    assert any(ngrams_repeated(until_finished(row, tokenizer, 1), 3) for row in looping.tolist())
    for n in (2, 3):
        _, out = generate_ids(model, tokenizer, SOURCES, free.model_copy(update={"no_repeat_ngram_size": n}),
                              min_new_tokens=16)
        # From 1: the decoder starts with its start token, which may be the eos id (BART).
        assert [ngrams_repeated(until_finished(row, tokenizer, 1), n) for row in out.tolist()] == [[]] * len(SOURCES)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_a_causal_summary_repeats_no_ngram_of_its_own(tiny_llama_dir: Path, num_beams: int) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.ngram import summary_only_ban

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    free = GenerationConfig(num_beams=num_beams, max_new_tokens=24, no_repeat_ngram_size=0)
    prompts, looping = generate_ids(model, tokenizer, SOURCES, free)
    width = prompts.shape[1]
    # Without the ban it loops, so the assertions below have work to check.
    assert any(ngrams_repeated(until_finished(row, tokenizer, width)[width:], 3) for row in looping.tolist())
    for n in (2, 3):
        gen = free.model_copy(update={"no_repeat_ngram_size": n})
        # The engine's call: left padding ends every prompt at ``width``; the ban reads what follows.
        _, out = generate_ids(model, tokenizer, SOURCES, gen, **summary_only_ban(n, "causal", width))
        assert [ngrams_repeated(until_finished(row, tokenizer, width)[width:], n) for row in out.tolist()] == [[]] * len(SOURCES)


def test_a_causal_summary_may_quote_the_dialogue_but_not_itself() -> None:
    """transformers' own ban would read the prompt too: a summary could never quote a 3-token run of
    the dialogue. The engine's ban counts only the generated columns."""
    import torch
    from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

    from engine.ngram import SummaryNoRepeatNGram

    # prompt: 5 6 7 8 | summary so far: 5 6 9 5 6 — the next 7 would quote the prompt, the next 9
    # would repeat the summary's own "5 6 9".
    ids = torch.tensor([[5, 6, 7, 8, 5, 6, 9, 5, 6]])
    scores = torch.zeros(1, 12)
    everything = NoRepeatNGramLogitsProcessor(3)(ids, scores.clone())
    summary_only = SummaryNoRepeatNGram(3, prompt_width=4)(ids, scores.clone())

    assert torch.isinf(everything[0, [7, 9]]).all()
    assert torch.isinf(summary_only[0, 9]) and summary_only[0, 7] == 0
    assert torch.isinf(summary_only[0]).sum() == 1


def test_seq2seq_models_and_no_ban_keep_transformers_arguments() -> None:
    from engine.ngram import summary_only_ban

    assert summary_only_ban(3, "seq2seq", 40) == {} and summary_only_ban(0, "causal", 40) == {}
    assert summary_only_ban(3, "causal", 40)["no_repeat_ngram_size"] == 0


def banned_by_the_rule(row: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already in ``row``: the last token of every earlier
    n-gram whose first n-1 tokens are ``row``'s last n-1 (for n=1: every token seen)."""
    if len(row) < n:
        return set()
    prefix = row[len(row) - n + 1 :] if n > 1 else []
    return {row[i + n - 1] for i in range(len(row) - n + 1) if row[i : i + n - 1] == prefix}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_transformers_processor_bans_exactly_what_the_rule_says(n: int) -> None:
    """Few distinct ids, so windows share prefixes and ban the same token several times (the
    duplicate scatter targets a vectorized ban must get right); leading pad ids like a left-padded
    causal batch; rows shorter than n ban nothing."""
    import torch
    from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

    rng = random.Random(n)
    vocab = 12
    for length in (n - 1, n, 9, 40):
        rows = [[0] * rng.randrange(0, length // 2 + 1) for _ in range(5)]  # 0 stands for the pad id
        rows = [pads + [rng.randrange(1, 6) for _ in range(length - len(pads))] for pads in rows]
        ids = torch.tensor(rows, dtype=torch.long).reshape(len(rows), length)
        scores = torch.randn(len(rows), vocab)
        expected = scores.clone()
        for r, row in enumerate(rows):
            expected[r, sorted(banned_by_the_rule(row, n))] = -float("inf")
        assert torch.equal(NoRepeatNGramLogitsProcessor(n)(ids, scores.clone()), expected)
