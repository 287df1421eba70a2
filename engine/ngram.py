"""Provides the n-gram ban of decoder-only generation, counted within the summary only.

``generation.no_repeat_ngram_size`` is meant as "the summary never repeats itself". transformers'
``NoRepeatNGramLogitsProcessor`` reads every id ``generate()`` holds: for a seq2seq model that is the
summary alone, but for a decoder-only model it is the prompt too — so with a ban of 3 a causal
summary could never quote any 3-token run of the dialogue ("#Person1# 은 #Person2#에게"). On the
synthetic dev set 143 of 200 reference summaries contain such a run. Here the same processor reads
only what was generated: a causal batch is left-padded, so every prompt ends at the same column.
"""

from __future__ import annotations

from typing import Any

from transformers import LogitsProcessor
from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor


class SummaryNoRepeatNGram(LogitsProcessor):
    """transformers' vectorized n-gram ban applied to the ids after column ``prompt_width``."""

    def __init__(self, ngram_size: int, prompt_width: int):
        self.ban = NoRepeatNGramLogitsProcessor(ngram_size)
        self.prompt_width = prompt_width

    def __call__(self, input_ids, scores):
        return self.ban(input_ids[:, self.prompt_width :], scores)


def summary_only_ban(ngram_size: int, kind: str, prompt_width: int) -> dict[str, Any]:
    """``generate()`` arguments that replace transformers' ban for a causal batch whose prompts are
    ``prompt_width`` columns wide; nothing for seq2seq models (their ban already reads the summary
    alone) or when no ban is configured."""
    if kind != "causal" or not ngram_size:
        return {}
    from transformers import LogitsProcessorList

    return {"no_repeat_ngram_size": 0, "logits_processor": LogitsProcessorList([SummaryNoRepeatNGram(ngram_size, prompt_width)])}
