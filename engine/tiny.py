"""Provides ``python -m engine tiny-model``: a tiny random-init BART/T5/Llama/Qwen3 with a tokenizer
trained locally on train.csv, saved so ``from_pretrained(out)`` works offline (demo and tests).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.contract import ExitCode

# Sizes are chosen so a CPU trains a few hundred steps per minute yet the model can still learn the
# synthetic summaries; they are not meant to be good at anything else.
TINY_DIM = 128
TINY_LAYERS = 2
TINY_HEADS = 4
TINY_FFN = 256
TINY_VOCAB = 3000
TINY_MAX_POSITIONS = 2048

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
# ChatML markers: the causal tokenizers' chat template frames system/user/assistant turns with them.
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SEQ2SEQ_ARCHS = ("bart", "t5")
CAUSAL_ARCHS = ("llama", "qwen3")


def corpus_texts(data_dir: Path) -> list[str]:
    """Return every dialogue and summary of ``train.csv`` (normalised like training sees them)."""
    from engine.data import load_split

    samples, _report = load_split(data_dir, "train")
    texts = []
    for sample in samples:
        texts.append(sample.dialogue)
        if sample.summary:
            texts.append(sample.summary)
    return texts


def train_tokenizer(texts: list[str], arch: str, vocab_size: int = TINY_VOCAB):
    """Train a byte-level BPE tokenizer (no unknown characters, spaces and newlines round-trip).

    Args:
        texts: the corpus.
        arch: decides the special-token framing (BART ``<s> x </s>``, T5 ``x </s>``, causal: chat template).
        vocab_size: BPE vocabulary size including special tokens.

    Returns:
        A ``transformers`` fast tokenizer with MASK_TOKENS as special tokens.
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    from engine.prompts import MASK_TOKENS

    causal = arch in CAUSAL_ARCHS
    control = [PAD, BOS, EOS, UNK] + ([IM_START, IM_END] if causal else [])
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=control + list(MASK_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    if arch == "bart":
        backend.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A {EOS}", special_tokens=[(BOS, backend.token_to_id(BOS)), (EOS, backend.token_to_id(EOS))]
        )
    elif arch == "t5":
        backend.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, backend.token_to_id(EOS))])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        # Causal models end the assistant turn with <|im_end|>, so generation stops there.
        eos_token=IM_END if causal else EOS,
        unk_token=UNK,
        extra_special_tokens=list(MASK_TOKENS),
        model_max_length=TINY_MAX_POSITIONS,
    )
    if causal:
        tokenizer.chat_template = CHAT_TEMPLATE
        tokenizer.padding_side = "left"
    return tokenizer


def build_config(arch: str, tokenizer):  # -> transformers.PretrainedConfig
    """Return a tiny random-init config for ``arch`` sized to ``tokenizer``."""
    from transformers import BartConfig, LlamaConfig, Qwen3Config, T5Config

    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    vocab = len(tokenizer)
    if arch == "bart":
        return BartConfig(
            vocab_size=vocab, d_model=TINY_DIM, encoder_layers=TINY_LAYERS, decoder_layers=TINY_LAYERS,
            encoder_attention_heads=TINY_HEADS, decoder_attention_heads=TINY_HEADS, encoder_ffn_dim=TINY_FFN,
            decoder_ffn_dim=TINY_FFN, max_position_embeddings=TINY_MAX_POSITIONS, dropout=0.1,
            decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id, **ids,
        )
    if arch == "t5":
        return T5Config(
            vocab_size=vocab, d_model=TINY_DIM, d_kv=TINY_DIM // TINY_HEADS, d_ff=TINY_FFN, num_layers=TINY_LAYERS,
            num_decoder_layers=TINY_LAYERS, num_heads=TINY_HEADS, dropout_rate=0.1,
            decoder_start_token_id=tokenizer.pad_token_id, **ids,
        )
    common = dict(
        vocab_size=vocab, hidden_size=TINY_DIM, intermediate_size=TINY_FFN, num_hidden_layers=TINY_LAYERS,
        num_attention_heads=TINY_HEADS, num_key_value_heads=TINY_HEADS // 2, head_dim=TINY_DIM // TINY_HEADS,
        max_position_embeddings=TINY_MAX_POSITIONS, tie_word_embeddings=True, **ids,
    )
    if arch == "llama":
        return LlamaConfig(**common)
    return Qwen3Config(**common)


def build_model(arch: str, tokenizer, seed: int):  # -> transformers.PreTrainedModel
    """Random-init the tiny model for ``arch`` (seeded)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    torch.manual_seed(seed)
    config = build_config(arch, tokenizer)
    auto = AutoModelForSeq2SeqLM if arch in SEQ2SEQ_ARCHS else AutoModelForCausalLM
    model = auto.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    if arch in SEQ2SEQ_ARCHS:
        model.generation_config.decoder_start_token_id = config.decoder_start_token_id
    return model


def lm_blocks(texts: list[str], tokenizer, block: int) -> list[list[int]]:
    """Concatenate ``texts`` (separated by EOS) and cut them into ``block``-token chunks for LM training."""
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        stream.append(tokenizer.eos_token_id)
    return [stream[i : i + block] for i in range(0, len(stream) - block + 1, block)]


def pretrain_lm(model, tokenizer, texts: list[str], steps: int, seed: int, block: int = 128, batch_size: int = 16) -> list[float]:
    """Full-weight causal LM pre-training for ``steps`` steps, so a LoRA on top has something to adapt.

    Returns:
        The loss of every step (the caller reports first and last).
    """
    import torch

    blocks = lm_blocks(texts, tokenizer, block)
    if not blocks:
        raise ValueError(f"corpus too small for one {block}-token block; add rows to train.csv")
    data = torch.tensor(blocks)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        batch = data[torch.randint(len(data), (batch_size,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


def build_tiny(arch: str, data_dir: Path, out: Path, pretrain_steps: int = 0, seed: int = 0) -> dict:
    """Build, optionally pre-train, and save a tiny model + tokenizer into ``out``.

    Returns:
        A summary (arch, vocab, parameters, pre-training losses) also written to ``out/tiny_model.json``.
    """
    if arch not in SEQ2SEQ_ARCHS + CAUSAL_ARCHS:
        raise ValueError(f"--arch {arch!r}: expected one of {', '.join(SEQ2SEQ_ARCHS + CAUSAL_ARCHS)}")
    if pretrain_steps and arch not in CAUSAL_ARCHS:
        raise ValueError("--pretrain-steps: only causal archs (llama, qwen3) are pre-trained")
    texts = corpus_texts(data_dir)
    tokenizer = train_tokenizer(texts, arch)
    model = build_model(arch, tokenizer, seed)
    losses = pretrain_lm(model, tokenizer, texts, pretrain_steps, seed) if pretrain_steps else []
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    summary = {
        "arch": arch,
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "pretrain_steps": pretrain_steps,
        "pretrain_loss_first": losses[0] if losses else None,
        "pretrain_loss_last": losses[-1] if losses else None,
        "seed": seed,
    }
    (out / "tiny_model.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def main(args: argparse.Namespace) -> int:
    """CLI entry: ``python -m engine tiny-model``; exit 2 on bad input."""
    from engine.data import DataError

    try:
        summary = build_tiny(args.arch, Path(args.data), Path(args.out), args.pretrain_steps, args.seed)
    except (DataError, ValueError) as exc:
        print(f"tiny-model: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    print(json.dumps(summary))
    return ExitCode.OK
