"""Provides the causal recipe: prompt–completion samples tokenized with the prompt masked out of
the labels (loss on the summary only, no assistant-header search) and TRL's ``SFTTrainer``.
"""

from __future__ import annotations

import random
from typing import Any

from engine.config import RunConfig
from engine.recipes import report_truncations, training_arguments
from engine.recipes.speed import apply_speed_levers


def prompt_completion_rows(prompts: list[str], completions: list[str], tokenizer, max_source: int,
                           max_target: int) -> tuple[dict[str, list[list[int]]], int, int]:
    """Tokenize prompt–completion pairs for completion-only loss: ``input_ids`` and ``labels``
    (-100 over the prompt, so the loss is on the summary only).

    Each prompt is cut from the left (as at inference, the question and assistant header at its end
    survive); each completion is cut from the right and always ends with EOS so the model learns to
    stop. Tokenizing the two parts separately makes the completion boundary exact; tokenizing each
    part as one list makes two calls into the Rust tokenizer instead of two per sample (25k calls
    for the competition's training set, most of the stage's set-up; docs/benchmarks.md).

    Returns:
        (columns, prompts truncated, completions truncated)
    """
    eos = tokenizer.eos_token_id
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    columns: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    prompt_cut = completion_cut = 0
    for prompt, completion in zip(prompt_ids, completion_ids, strict=True):
        completion = completion + [eos]
        if len(prompt) > max_source:
            prompt, prompt_cut = prompt[-max_source:], prompt_cut + 1
        if len(completion) > max_target:
            completion, completion_cut = completion[: max_target - 1] + [eos], completion_cut + 1
        columns["input_ids"].append(prompt + completion)
        columns["labels"].append([-100] * len(prompt) + completion)
    return columns, prompt_cut, completion_cut


def build_dataset(samples: list, cfg: RunConfig, tokenizer, rng: random.Random | None, split: str, events) -> Any:
    """A trainer-ready ``datasets.Dataset`` (``input_ids`` + ``labels``); TRL's own preparation is skipped."""
    from datasets import Dataset

    from engine.prompts import model_inputs

    prompts = model_inputs(samples, cfg.prompt, "causal", tokenizer, rng)
    columns, prompt_cut, completion_cut = prompt_completion_rows(
        prompts, [s.summary or "" for s in samples], tokenizer, cfg.prompt.max_source_length,
        cfg.prompt.max_target_length,
    )
    report_truncations(events, split, len(samples), [(prompt_cut, "prompt", "prompt.max_source_length"),
                                                     (completion_cut, "summary", "prompt.max_target_length")])
    return Dataset.from_dict(columns)


def build_trainer(cfg: RunConfig, loaded, train_ds, eval_ds, output_dir, device: str, callbacks: list):
    """TRL ``SFTTrainer`` on the trainer-ready data of :func:`build_dataset`.

    TRL's dataset preparation is skipped: on already tokenized rows it would only rebuild the labels
    we made and truncate to ``max_length``, which every sample already fits — 6 s of ``datasets.map``
    over the training set before the first step.
    """
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        **training_arguments(cfg, output_dir, device, with_eval=eval_ds is not None),
        max_length=cfg.prompt.max_source_length + cfg.prompt.max_target_length,
        packing=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        # Padding is on the right and labels of pads are -100: the loss and positions are unchanged.
        pad_to_multiple_of=cfg.train.pad_to_multiple_of,
    )
    trainer = SFTTrainer(
        model=loaded.model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
        processing_class=loaded.tokenizer, callbacks=callbacks,
    )
    apply_speed_levers(cfg, trainer.model)
    return trainer
