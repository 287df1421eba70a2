"""Provides ``python -m engine infer`` and the batched generation it shares with in-training
evaluation: length-sorted batches, left padding/truncation for causal models, order restored.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

from engine.artifacts import (
    EventWriter,
    atomic_write_text,
    dev_predictions_path,
    final_model_dir,
    safe_name,
    stage_key,
    submission_path,
)
from engine.config import GenerationConfig, RunConfig, load_config, resolve_path
from engine.contract import ArtifactKind, Event, Phase, Stage
from engine.runtime import raise_if_stopped, resolve_device, run_command


def control_token_ids(tokenizer) -> set[int]:
    """Special ids to drop from generated text: pad/bos/eos/chat markers, but never the masked
    entities (#Person1#, ...), which are special tokens too yet belong in the summary."""
    from engine.prompts import MASK_TOKENS

    keep = set(tokenizer.convert_tokens_to_ids(list(MASK_TOKENS)))
    return {i for i in tokenizer.all_special_ids if i not in keep}


def decode_summary(tokenizer, ids: list[int], drop: set[int]) -> str:
    """Decode generated ids to a summary, keeping masked-entity tokens and stripping control tokens."""
    kept = [i for i in ids if i not in drop]
    return tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False).strip()


def cache_for(gen: GenerationConfig, device_type: str) -> str | None:
    """The KV cache to generate with on ``device_type``: ``static`` only on CUDA.

    A static cache is what lets transformers compile the decoding step (CUDA graphs); on the CPU
    nothing is compiled and pre-allocating the whole length only costs memory, so it falls back to
    the default dynamic cache there.
    """
    if gen.cache_implementation == "static" and device_type != "cuda":
        return None
    return gen.cache_implementation


def attention_for(gen: GenerationConfig, kind: str, device_type: str) -> str | None:
    """The decode attention the ``infer`` command puts a model on (``generation.attention``), or None
    to leave it as loaded.

    Only causal models on CUDA: their grouped KV heads are what transformers' compiled SDPA path
    repeats (engine/attention.py says why it costs); seq2seq models (KoBART) have no grouped heads,
    and on the CPU transformers already folds the heads for one query token.
    """
    if kind != "causal" or device_type != "cuda":
        return None
    return gen.attention


def fill_batch(texts: list[str], size: int) -> list[str]:
    """``texts`` padded to ``size`` rows by repeating its last text (outputs of the copies are dropped).

    With a static cache every ``generate()`` call must have the same batch shape, or the compiled
    decoding step is compiled again for the short last batch (tens of seconds for a 3B model).
    """
    return texts + [texts[-1]] * (size - len(texts)) if texts else texts


def generation_kwargs(gen: GenerationConfig, tokenizer, device_type: str = "cuda") -> dict[str, Any]:
    """``generate()`` keyword arguments from the config's generation section."""
    kwargs: dict[str, Any] = {
        "num_beams": gen.num_beams,
        "max_new_tokens": gen.max_new_tokens,
        "no_repeat_ngram_size": gen.no_repeat_ngram_size,
        "length_penalty": gen.length_penalty,
        "do_sample": gen.do_sample,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if gen.num_beams > 1:
        kwargs["early_stopping"] = gen.early_stopping
    cache = cache_for(gen, device_type)
    if cache:
        kwargs["cache_implementation"] = cache
    return kwargs


def generate_summaries(model, tokenizer, sources: list[str], kind: str, gen: GenerationConfig,
                       max_source_length: int, batch_size: int, events: EventWriter | None = None) -> list[str]:
    """Generate one summary per source, in the order of ``sources``.

    Sources are sorted by length (longest first, so an out-of-memory shows in the first batch) to
    keep padding small; causal prompts are padded and truncated on the left so every prompt ends
    where generation begins.

    Args:
        model: a transformers (or PEFT) model in eval mode.
        tokenizer: its tokenizer (``padding_side``/``truncation_side`` already left for causal).
        sources: encoder texts or chat-templated prompts.
        kind: ``seq2seq`` or ``causal``.
        gen: generation settings.
        max_source_length: inputs longer than this are cut from the left.
        batch_size: sources per ``generate()`` call.
        events: if given, a ``progress`` event per batch.
    """
    import torch

    from engine.ngram import summary_only_ban

    if not sources:
        return []
    tokenizer.truncation_side = "left"
    if kind == "causal":
        tokenizer.padding_side = "left"
    # Chat templates already contain their special tokens; adding bos again would double it.
    add_special = kind != "causal"
    lengths = [len(ids) for ids in tokenizer(sources, add_special_tokens=add_special)["input_ids"]]
    order = sorted(range(len(sources)), key=lambda i: -lengths[i])
    drop = control_token_ids(tokenizer)
    device = next(model.parameters()).device
    kwargs = generation_kwargs(gen, tokenizer, device.type)
    # Longest first: the first batch sizes the static cache, and transformers keeps that length for
    # the later (shorter) batches, so the cache shape never changes either.
    static = kwargs.get("cache_implementation") == "static" and len(order) > batch_size
    out: list[str] = [""] * len(sources)
    for start in range(0, len(order), batch_size):
        raise_if_stopped()
        chunk = order[start : start + batch_size]
        texts = [sources[i] for i in chunk]
        batch = tokenizer(
            fill_batch(texts, batch_size) if static else texts, padding=True, truncation=True,
            max_length=max_source_length, add_special_tokens=add_special, return_tensors="pt",
        ).to(device)
        ban = summary_only_ban(gen.no_repeat_ngram_size, kind, batch["input_ids"].shape[1])
        with torch.inference_mode():
            generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs | ban)
        if kind == "causal":
            generated = generated[:, batch["input_ids"].shape[1] :]
        generated = generated[: len(chunk)]
        for i, ids in zip(chunk, generated.tolist(), strict=True):
            out[i] = decode_summary(tokenizer, ids, drop)
        if events is not None:
            events.emit(Event.PROGRESS, step=min(start + batch_size, len(order)), total=len(order), epoch=None,
                        eta_s=None, tokens_per_s=None, samples_per_s=None)
    return out


def predictions_csv(fnames: list[str], summaries: list[str]) -> str:
    """CSV text ``fname,summary`` with proper quoting (summaries hold commas, quotes, newlines)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["fname", "summary"])
    writer.writerows(zip(fnames, summaries, strict=True))
    return buffer.getvalue()


def predict_split(split: str, cfg: RunConfig, loaded, events: EventWriter, key: str | None = None) -> tuple[Path, int, int]:
    """Generate for one split and write its CSV atomically.

    Returns:
        (path written, rows, empty generations)
    """
    from engine.data import load_split
    from engine.prompts import model_inputs, prompt_mismatch_warning

    events.emit(Event.PHASE, name=Phase.LOAD_DATA, split=split)
    samples, _report = load_split(resolve_path(cfg.data.dir), split, normalize=cfg.data.normalize)
    if split == "test":
        mismatch = prompt_mismatch_warning(cfg.prompt, inference_has_topic=any(s.topic for s in samples))
        if mismatch:
            events.emit(Event.WARNING, message=mismatch)
    sources = model_inputs(samples, cfg.prompt, loaded.kind, loaded.tokenizer)
    events.emit(Event.PHASE, name=Phase.GENERATE, split=split, n=len(sources))
    summaries = generate_summaries(loaded.model, loaded.tokenizer, sources, loaded.kind,
                                   cfg.generation, cfg.prompt.max_source_length,
                                   cfg.generation.batch_size, events)
    empty = sum(1 for s in summaries if not s.strip())
    if empty:
        events.emit(Event.WARNING, message=f"{split}: {empty} of {len(summaries)} generations are empty; kept as empty summaries",
                    count=empty)
    events.emit(Event.PHASE, name=Phase.WRITE, split=split)
    submissions = resolve_path(cfg.paths.submissions)
    key = key or safe_name(cfg.model.nickname)
    path = (submission_path if split == "test" else dev_predictions_path)(submissions, key)
    atomic_write_text(path, predictions_csv([s.fname for s in samples], summaries))
    events.emit(Event.ARTIFACT, kind=ArtifactKind.SUBMISSION if split == "test" else ArtifactKind.DEV_PREDICTIONS, path=str(path),
                bytes=path.stat().st_size)
    return path, len(summaries), empty


def infer(args: argparse.Namespace, events: EventWriter) -> dict[str, Any]:
    """The ``infer`` command body (run inside :func:`engine.runtime.run_command`)."""
    from engine.modeling import load_for_inference

    cfg = load_config(args.config, args.set)
    device = resolve_device(cfg, str(args.config))
    key = stage_key(getattr(args, "artifact_key", None), cfg.model.nickname)
    # An infer-only run loads the model of the run that trained it (--model-key) and writes its own files.
    model_key = getattr(args, "model_key", None) or key
    directory = Path(args.checkpoint) if args.checkpoint else final_model_dir(resolve_path(cfg.paths.checkpoints), model_key)
    events.emit(Event.STARTED, nickname=cfg.model.nickname, model=str(directory), config_hash=cfg.hash(), device=device,
                dtype=cfg.model.dtype, split=args.split)
    events.emit(Event.PHASE, name=Phase.LOAD_MODEL)
    loaded = load_for_inference(directory, device)
    metrics: dict[str, Any] = {"dtype": loaded.dtype}
    choice = attention_for(cfg.generation, loaded.kind, device)
    if choice:
        from engine.attention import use_attention

        metrics["attention"] = use_attention(loaded.model, choice)
    splits = ["dev", "test"] if args.split == "both" else [args.split]
    for split in splits:
        path, rows, empty = predict_split(split, cfg, loaded, events, key)
        metrics[f"{split}_rows"] = rows
        metrics[f"{split}_empty"] = empty
        metrics[f"{split}_path"] = str(path)
    return metrics


def main(args: argparse.Namespace) -> int:
    """CLI entry: ``python -m engine infer``."""
    return run_command(Stage.INFER, args, infer)
