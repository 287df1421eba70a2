"""Provides the causal recipe: prompt–completion samples tokenized with a completion mask (loss on
the summary only, no assistant-header search) and TRL's ``SFTTrainer``.
"""

from __future__ import annotations

import random
from typing import Any

from engine.config import RunConfig
from engine.recipes import report_truncations, training_arguments
from engine.recipes.speed import apply_speed_levers


def tokenize_prompt_completion(prompt: str, completion: str, tokenizer, max_source: int,
                               max_target: int) -> tuple[dict[str, list[int]], bool, bool]:
    """Tokenize one prompt–completion pair for completion-only loss.

    The prompt is cut from the left (as at inference, the question and assistant header at its end
    survive); the completion is cut from the right and always ends with EOS so the model learns to
    stop. Tokenizing the two parts separately makes the completion boundary exact.

    Returns:
        ({"input_ids", "completion_mask"}, prompt truncated, completion truncated)
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    prompt_cut = len(prompt_ids) > max_source
    completion_cut = len(completion_ids) > max_target
    if prompt_cut:
        prompt_ids = prompt_ids[-max_source:]
    if completion_cut:
        completion_ids = completion_ids[: max_target - 1] + [tokenizer.eos_token_id]
    row = {"input_ids": prompt_ids + completion_ids, "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids)}
    return row, prompt_cut, completion_cut


def build_dataset(samples: list, cfg: RunConfig, tokenizer, rng: random.Random | None, split: str, events) -> Any:
    """A pre-tokenized ``datasets.Dataset`` (``input_ids`` + ``completion_mask``) that TRL turns into labels."""
    from datasets import Dataset

    from engine.prompts import model_inputs

    prompts = model_inputs(samples, cfg.prompt, "causal", tokenizer, rng)
    rows, prompt_cut, completion_cut = [], 0, 0
    for prompt, sample in zip(prompts, samples, strict=True):
        row, p_cut, c_cut = tokenize_prompt_completion(
            prompt, sample.summary or "", tokenizer, cfg.prompt.max_source_length, cfg.prompt.max_target_length
        )
        rows.append(row)
        prompt_cut += p_cut
        completion_cut += c_cut
    report_truncations(events, split, len(samples), [(prompt_cut, "prompt", "prompt.max_source_length"),
                                                     (completion_cut, "summary", "prompt.max_target_length")])
    return Dataset.from_list(rows)


def build_trainer(cfg: RunConfig, loaded, train_ds, eval_ds, output_dir, device: str, callbacks: list):
    """TRL ``SFTTrainer`` on the pre-tokenized data; ``max_length`` fits every sample, so TRL never
    truncates or drops one behind our back."""
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        **training_arguments(cfg, output_dir, device, with_eval=eval_ds is not None),
        max_length=cfg.prompt.max_source_length + cfg.prompt.max_target_length,
        completion_only_loss=True,
        packing=False,
        # Padding is on the right and labels of pads are -100: the loss and positions are unchanged.
        pad_to_multiple_of=cfg.train.pad_to_multiple_of,
    )
    trainer = SFTTrainer(
        model=loaded.model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
        processing_class=loaded.tokenizer, callbacks=callbacks,
    )
    apply_speed_levers(cfg, trainer.model)
    return trainer
