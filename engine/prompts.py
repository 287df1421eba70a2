"""Provides model inputs built from a sample: the Korean_DCS_2024 chat prompt for causal models, the
seq2seq encoder source, and the topic policy that decides when either carries the topic.

The topic policy exists because test.csv has no topic: a model trained only on prompts with a topic
sees a different prompt at test time (the hand-off team's unnoticed mismatch). Torch-free; the
tokenizer is passed in.
"""

from __future__ import annotations

import random
import re
from typing import Any

from engine.config import PromptConfig
from engine.data import MASK_TOKENS, Sample

__all__ = [
    "MASK_TOKENS",
    "causal_messages",
    "causal_prompt",
    "prompt_mismatch_warning",
    "relabel_speakers",
    "seq2seq_source",
    "use_topic_at_inference",
    "use_topic_in_training",
]

# Only the marker that opens a line is a speaker label; "#Person2#" inside the text is a mention.
_LEADING_SPEAKER = re.compile(r"^#Person(\d+)#:", re.MULTILINE)
QUESTION_WITH_TOPIC = "위 {topic} 주제에 대한 대화를 요약해주세요."
QUESTION = "위 대화를 요약해주세요."
SEQ2SEQ_TOPIC_PREFIX = "주제: {topic}\n"


def relabel_speakers(dialogue: str, label: str = "화자") -> str:
    """Turn each line-leading ``#PersonN#:`` into ``<label>N:``; mentions inside the text stay.

    Args:
        dialogue: turns separated by newlines.
        label: the speaker word (``cfg.prompt.speaker_label``).

    Returns:
        The relabelled dialogue.
    """
    return _LEADING_SPEAKER.sub(lambda m: f"{label}{m.group(1)}:", dialogue)


def _question(sample: Sample, with_topic: bool) -> str:
    if with_topic and sample.topic:
        return QUESTION_WITH_TOPIC.format(topic=sample.topic)
    return QUESTION


def causal_messages(sample: Sample, prompt: PromptConfig, with_topic: bool) -> list[dict[str, str]]:
    """System and user messages in the Korean_DCS_2024 format.

    Args:
        sample: the dialogue (its topic is used only when ``with_topic`` and present).
        prompt: ``cfg.prompt`` (system message, speaker label).
        with_topic: ask about the topic (see :func:`use_topic_in_training`, :func:`use_topic_at_inference`).

    Returns:
        ``[{"role": "system", ...}, {"role": "user", ...}]``.
    """
    user = (
        "[Conversation]\n"
        f"{relabel_speakers(sample.dialogue, prompt.speaker_label)}\n"
        "\n"
        "[Question]\n"
        f"{_question(sample, with_topic)}"
    )
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": user}]


def causal_prompt(tokenizer: Any, sample: Sample, prompt: PromptConfig, with_topic: bool) -> str:
    """Render :func:`causal_messages` with the tokenizer's chat template, ending where the answer starts.

    Raises:
        ValueError: the tokenizer has no chat template (a base model rather than an instruct one).
    """
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ValueError(
            f"tokenizer {name} has no chat template; model.kind: causal needs an instruct/chat model "
            "(or set tokenizer.chat_template when building it)"
        )
    return tokenizer.apply_chat_template(
        causal_messages(sample, prompt, with_topic), tokenize=False, add_generation_prompt=True
    )


def seq2seq_source(sample: Sample, prompt: PromptConfig, with_topic: bool) -> str:
    """Encoder input for BART/T5: the dialogue, prefixed with ``주제: <topic>`` when ``with_topic``.

    Speaker markers stay ``#PersonN#`` because seq2seq summaries copy them.
    """
    if with_topic and sample.topic:
        return SEQ2SEQ_TOPIC_PREFIX.format(topic=sample.topic) + sample.dialogue
    return sample.dialogue


def use_topic_in_training(prompt: PromptConfig, rng: random.Random) -> bool:
    """Whether one training sample carries its topic: never, always, or with probability 1 - topic_dropout.

    Draws from ``rng`` only for ``dropout`` so the other policies do not shift a seeded sequence.
    """
    if prompt.topic == "dropout":
        return rng.random() >= prompt.topic_dropout
    return prompt.topic == "always"


def use_topic_at_inference(prompt: PromptConfig, sample: Sample) -> bool:
    """At inference the topic is used when the policy allows it and the sample has one (test has none)."""
    if prompt.topic == "never" or (prompt.topic == "dropout" and prompt.topic_dropout >= 1.0):
        return False
    return bool(sample.topic)


def prompt_mismatch_warning(prompt: PromptConfig, inference_has_topic: bool) -> str | None:
    """A warning when every training prompt had a topic but inference prompts will not.

    Args:
        prompt: ``cfg.prompt``.
        inference_has_topic: whether the split being predicted has topics (test.csv does not).

    Returns:
        The message, or None when training and inference prompts match in kind.
    """
    if prompt.topic == "always" and not inference_has_topic:
        return (
            "prompt.topic: always trains every prompt with a topic, but these inference samples have none "
            "(test.csv has no topic), so the model sees a prompt shape it never trained on; "
            "set prompt.topic: dropout (or never) and retrain"
        )
    if prompt.topic == "dropout" and prompt.topic_dropout == 0.0 and not inference_has_topic:
        return (
            "prompt.topic_dropout: 0.0 means every training prompt had a topic, but these inference samples have "
            "none; raise prompt.topic_dropout (e.g. 0.5)"
        )
    return None


def model_inputs(samples: list[Sample], prompt: PromptConfig, kind: str, tokenizer=None,
                 rng: random.Random | None = None) -> list[str]:
    """The text each sample feeds the model: the chat-templated prompt (causal) or the encoder text.

    Args:
        samples: the rows.
        prompt: the prompt section of the config.
        kind: ``causal`` or ``seq2seq``.
        tokenizer: needed for causal models (its chat template).
        rng: given while training: the topic follows the training policy (e.g. dropout);
            without it, the inference policy (a topic only where the row has one).
    """
    out = []
    for sample in samples:
        with_topic = use_topic_in_training(prompt, rng) if rng is not None else use_topic_at_inference(prompt, sample)
        if kind == "causal":
            out.append(causal_prompt(tokenizer, sample, prompt, with_topic))
        else:
            out.append(seq2seq_source(sample, prompt, with_topic))
    return out
