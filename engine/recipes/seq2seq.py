"""Provides the seq2seq (BART/T5) recipe: tokenized datasets with -100-padded labels and a
``Seq2SeqTrainer``.
"""

from __future__ import annotations

import random
from typing import Any

from engine.config import RunConfig
from engine.recipes import report_truncations, training_arguments
from engine.recipes.speed import apply_speed_levers


def tokenize_cut(tokenizer, texts: list[str], max_length: int, side: str, target: bool = False) -> tuple[list[list[int]], int]:
    """Token ids of ``texts`` (with the model's special tokens) cut to ``max_length`` from ``side``.

    Everything is tokenized once; only the few rows that are too long (about 1% of the competition's
    dialogues) are tokenized again with the tokenizer's own truncation, which keeps the special
    tokens right. Tokenizing all of them twice (once to count the cuts, once cut) took as long as
    the rest of the train stage's set-up.

    Returns:
        (ids, how many rows were cut)
    """
    encode = (lambda batch, **kw: tokenizer(text_target=batch, **kw)) if target else tokenizer
    ids = encode(texts)["input_ids"]
    long = [i for i, row in enumerate(ids) if len(row) > max_length]
    if long:
        tokenizer.truncation_side = side
        cut = encode([texts[i] for i in long], truncation=True, max_length=max_length)["input_ids"]
        for i, row in zip(long, cut, strict=True):
            ids[i] = row
    return ids, len(long)


def preprocess_seq2seq(sources: list[str], summaries: list[str], tokenizer, max_source: int,
                       max_target: int) -> tuple[dict[str, list], int, int]:
    """Tokenize sources (cut from the left: the end of a dialogue holds its conclusion) and
    summaries (cut from the right) into ``input_ids``/``attention_mask``/``labels``.

    Returns:
        (columns, sources truncated, summaries truncated)
    """
    input_ids, src_cut = tokenize_cut(tokenizer, sources, max_source, "left")
    labels, tgt_cut = tokenize_cut(tokenizer, summaries, max_target, "right", target=True)
    tokenizer.truncation_side = "left"
    columns = {"input_ids": input_ids, "attention_mask": [[1] * len(row) for row in input_ids], "labels": labels}
    return columns, src_cut, tgt_cut


def build_dataset(samples: list, cfg: RunConfig, tokenizer, rng: random.Random | None, split: str, events) -> Any:
    """A ``datasets.Dataset`` for ``samples``; truncations are reported as ``warning`` events."""
    from datasets import Dataset

    from engine.prompts import model_inputs

    columns, src_cut, tgt_cut = preprocess_seq2seq(
        model_inputs(samples, cfg.prompt, "seq2seq", rng=rng), [s.summary or "" for s in samples], tokenizer,
        cfg.prompt.max_source_length, cfg.prompt.max_target_length,
    )
    report_truncations(events, split, len(samples), [(src_cut, "dialogue", "prompt.max_source_length"),
                                                     (tgt_cut, "summary", "prompt.max_target_length")])
    return Dataset.from_dict(columns)


def build_trainer(cfg: RunConfig, loaded, train_ds, eval_ds, output_dir, device: str, callbacks: list):
    """A ``Seq2SeqTrainer`` whose collator pads labels with -100 (ignored by the loss)."""
    from transformers import (
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
    )

    args = Seq2SeqTrainingArguments(**training_arguments(cfg, output_dir, device, with_eval=eval_ds is not None))
    collator = DataCollatorForSeq2Seq(loaded.tokenizer, model=loaded.model, label_pad_token_id=-100,
                                      pad_to_multiple_of=cfg.train.pad_to_multiple_of)
    trainer = Seq2SeqTrainer(
        model=loaded.model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collator,
        processing_class=loaded.tokenizer, callbacks=callbacks,
    )
    apply_speed_levers(cfg, trainer.model)
    return trainer
