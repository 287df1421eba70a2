"""Provides the engine's own environment variables, ``DIALSUM_TORCH_PROFILE*``: profile a few
optimizer steps of a training (``benchmarks/train_throughput.py --profile``), validated at the edge
with a message that names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.config import ConfigError


class ProfileSettings(BaseModel):
    """``DIALSUM_TORCH_PROFILE*``: profile a few optimizer steps (benchmarks/train_throughput.py --profile)."""

    model_config = ConfigDict(frozen=True)

    out_dir: Path | None = Field(
        None, description="DIALSUM_TORCH_PROFILE: write profile.txt and kernels.json here; unset = no profiling."
    )
    start: int = Field(5, ge=0, description="DIALSUM_TORCH_PROFILE_START: first profiled optimizer step.")


PROFILE_ENV = {"out_dir": "DIALSUM_TORCH_PROFILE", "start": "DIALSUM_TORCH_PROFILE_START"}


def profile_settings(environ: Mapping[str, str] | None = None) -> ProfileSettings:
    """Read and validate the profiling variables (``os.environ`` by default).

    Raises:
        ConfigError: a variable has a bad value; the message names it and says what it takes.
    """
    env = os.environ if environ is None else environ
    raw = {field: env[var] for field, var in PROFILE_ENV.items() if env.get(var, "").strip()}
    try:
        return ProfileSettings.model_validate(raw)
    except ValidationError as err:
        e = err.errors()[0]
        var = PROFILE_ENV.get(str(e["loc"][0]), str(e["loc"][0]))
        raise ConfigError(f"${var}={e.get('input')!r}: {e['msg']}; fix or unset it") from None
