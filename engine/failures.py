"""Provides the failure signatures seen in the wild: text (an exception, a log tail) → failure kind.

Torch-free and shared: the engine classifies the exception it caught (``failed`` event), the
manager classifies a process that died without saying (exit status + log tail). One table, so both
sides always agree on what a message means; the hint of each kind is the contract's
(:attr:`engine.contract.FailureKind.hint`), never spelled here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.contract import FailureKind


@dataclass(frozen=True)
class Failure:
    """A verdict: the kind, the line that shows it, and the advice (``kind.hint`` unless a caller knows better)."""

    kind: FailureKind
    message: str
    hint: str

    @classmethod
    def of(cls, kind: FailureKind, message: str) -> Failure:
        """A failure with its kind's one hint."""
        return cls(kind, message, kind.hint)


_PATTERNS: tuple[tuple[FailureKind, str], ...] = (
    (FailureKind.OOM, r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|out of memory"),
    (
        FailureKind.DTYPE,
        r"expected scalar type \w+ but found \w+|mat1 and mat2 must have the same dtype"
        r"|_amp_foreach_non_finite_check_and_unscale_cuda\" not implemented for 'BFloat16'"
        r"|not implemented for 'BFloat16'|Attempting to unscale FP16 gradients"
        r"|Input type \(\w+\) and weight type \(\w+\) should be the same",
    ),
    (
        FailureKind.DISK,
        r"No space left on device|StorageFull|Disk quota exceeded|MetadataIncompleteBuffer"
        r"|disk quota guard|unexpected EOF",
    ),
    (FailureKind.DATA, r"DataError|data error|KeyError: 'dialogue'|KeyError: 'summary'|UnicodeDecodeError|ParserError"),
    (
        FailureKind.CONFIG,
        r"ConfigError|config error|unknown key|OSError: .* is not a local folder and is not a valid model identifier"
        r"|We couldn't connect to 'https://huggingface.co'|Can't load tokenizer"
        # model.kind against the checkpoint (a Llama under AutoModelForSeq2SeqLM, a T5 under AutoModelForCausalLM),
        # a causal prompt on a tokenizer without a chat template (ours, then transformers' own words), and LoRA
        # targets the model does not have: mistakes engine/model_check.py finds at `add` when the model is on disk.
        r"|Unrecognized configuration class .* for this kind of AutoModel"
        r"|has no chat template; model\.kind: causal|tokenizer\.chat_template is not set"
        r"|Target modules .* not found in the base model",
    ),
    (FailureKind.INTERRUPTED, r"KeyboardInterrupt|interrupted by user|received SIGINT|received SIGTERM"),
)

# (kind, pattern, hint) — first match wins, so the specific signatures come before the general ones.
# The hint is the kind's own (kept in the tuple for callers that unpack three items).
SIGNATURES: tuple[tuple[FailureKind, re.Pattern[str], str], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE), kind.hint) for kind, pattern in _PATTERNS
)


def match_text(text: str) -> Failure | None:
    """Return the first known signature found in ``text`` (an exception message or a log tail)."""
    for kind, pattern, _hint in SIGNATURES:
        m = pattern.search(text)
        if m:
            line = next((ln.strip() for ln in text.splitlines() if pattern.search(ln)), m.group(0))
            return Failure.of(kind, line[:500])
    return None


def classify_exception(exc: BaseException) -> Failure:
    """Classify an exception the engine caught."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return Failure.of(FailureKind.INTERRUPTED, "interrupted by user (SIGINT)")
    known = match_text(text)
    if known:
        return Failure.of(known.kind, text[:500])
    return Failure.of(FailureKind.UNKNOWN, text[:500])
