"""Provides the failure signatures seen in the wild, each mapped to a kind and a one-line hint.

Torch-free and shared: the engine classifies the exception it caught (``failed`` event), the
manager classifies a process that died without saying (exit status + log tail). One table, so both
sides always agree on what a message means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    kind: str
    message: str
    hint: str


# (kind, pattern, hint) — first match wins, so the specific signatures come before the general ones.
SIGNATURES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE), hint)
    for kind, pattern, hint in (
        (
            "oom",
            r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|out of memory",
            "GPU memory ran out: lower train.batch_size (raise grad_accum), enable gradient_checkpointing or 4-bit, "
            "or check that no earlier process still holds the GPU",
        ),
        (
            "dtype",
            r"expected scalar type \w+ but found \w+|mat1 and mat2 must have the same dtype"
            r"|_amp_foreach_non_finite_check_and_unscale_cuda\" not implemented for 'BFloat16'"
            r"|not implemented for 'BFloat16'|Attempting to unscale FP16 gradients"
            r"|Input type \(\w+\) and weight type \(\w+\) should be the same",
            "dtype mismatch between weights, adapter, AMP and inputs: keep model.dtype, quantization.compute_dtype "
            "and train.precision consistent (bf16 model → precision bf16)",
        ),
        (
            "disk",
            r"No space left on device|StorageFull|Disk quota exceeded|MetadataIncompleteBuffer"
            r"|disk quota guard|unexpected EOF",
            "disk full or quota reached: run `dialsum-tui prune` (old checkpoints, HF caches) and retry",
        ),
        (
            "data",
            r"DataError|data error|KeyError: 'dialogue'|KeyError: 'summary'|UnicodeDecodeError|ParserError",
            "the data files are not in the competition schema: run `python -m engine check-data DIR` and fix what it lists",
        ),
        (
            "config",
            r"ConfigError|config error|unknown key|OSError: .* is not a local folder and is not a valid model identifier"
            r"|We couldn't connect to 'https://huggingface.co'|Can't load tokenizer",
            "the config or the model path is wrong: fix the key named above (or download the model) and retry",
        ),
        (
            "interrupted",
            r"KeyboardInterrupt|interrupted by user|received SIGINT|received SIGTERM",
            "stopped on request; retry to continue",
        ),
    )
)

HOST_OOM_HINT = (
    "killed by SIGKILL with nothing in the log: most likely the host OOM killer (check `dmesg`); "
    "lower dataloader workers/batch size or the data kept in memory"
)


def match_text(text: str) -> Failure | None:
    """Return the first known signature found in ``text`` (an exception message or a log tail)."""
    for kind, pattern, hint in SIGNATURES:
        m = pattern.search(text)
        if m:
            line = next((ln.strip() for ln in text.splitlines() if pattern.search(ln)), m.group(0))
            return Failure(kind, line[:500], hint)
    return None


def classify_exception(exc: BaseException) -> Failure:
    """Classify an exception the engine caught."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return Failure("interrupted", "interrupted by user (SIGINT)", "stopped on request; retry to continue")
    known = match_text(text)
    if known:
        return Failure(known.kind, text[:500], known.hint)
    return Failure("unknown", text[:500], "see run.log for the traceback")
