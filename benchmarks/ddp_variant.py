"""Provides the engine entry point the multi-GPU benchmark uses to try DDP knobs: ``python -m engine``
with the Trainer's ``ddp_*`` arguments (find_unused_parameters, bucket_cap_mb, static_graph,
broadcast_buffers) taken from ``$DIALSUM_BENCH_DDP`` (JSON), so a variant can be measured through
the worker's own accelerate launch before the engine adopts it.

    DIALSUM_BENCH_DDP='{"ddp_find_unused_parameters": false}' python benchmarks/ddp_variant.py train ...
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KNOBS_ENV = "DIALSUM_BENCH_DDP"
ALLOWED = {"ddp_find_unused_parameters", "ddp_bucket_cap_mb", "ddp_static_graph", "ddp_broadcast_buffers"}


def knobs() -> dict:
    """The ddp_* overrides from the environment; an unknown key stops the run with a clear message."""
    values = json.loads(os.environ.get(KNOBS_ENV) or "{}")
    unknown = set(values) - ALLOWED
    if unknown:
        raise SystemExit(f"${KNOBS_ENV}: unknown key(s) {sorted(unknown)}; allowed: {sorted(ALLOWED)}")
    return values


def install(values: dict) -> None:
    """Apply ``values`` to every TrainingArguments (SFTConfig calls the base __post_init__)."""
    from transformers import TrainingArguments

    original = TrainingArguments.__post_init__

    def post_init(self) -> None:
        for key, value in values.items():
            setattr(self, key, value)
        original(self)

    TrainingArguments.__post_init__ = post_init


if __name__ == "__main__":
    overrides = knobs()
    if overrides:
        install(overrides)
    from engine.__main__ import main

    sys.exit(main())
