"""Provides the manager's settings as validated models: the workspace's ``.dialsum/settings.yaml``
(:class:`Settings`) and the ``DIALSUM_*`` environment variables (:class:`EnvSettings`).

Both are read at the edge and validated once; a typo or a bad value is an error that names the key
(or variable), the file and what it takes. The disk quota is stated here and nowhere else: the
manager measures against it and hands the engine its limit (``disk.engine_disk_args``).
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from dialsum_tui.manager.errors import DialsumError
from dialsum_tui.manager.workspace.sections import NotifySettings, SlurmSettings, SlurmSettingsError, parse_settings


class SettingsError(DialsumError):
    """A settings file or variable is wrong; the message names it and says what to do."""


class Settings(BaseModel):
    """Per-workspace knobs, read from ``.dialsum/settings.yaml`` (every key optional)."""

    # YAML reads `.inf` and `.nan` as numbers: a quota of infinity passed `gt=0` and crashed `check`
    # and `worker status` later, while `add` still queued. Every number here must be finite.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    quota_gb: float = Field(
        150.0, gt=0, description="Hard limit of the quota'd tree in decimal GB: the server is reset above it."
    )
    quota_path: str = Field(".", description="Tree measured like du against the quota (relative = inside the workspace).")
    safe_gb: float = Field(110.0, ge=0, description="Where the team aimed to stay; shown as the 'safe' line.")
    margin_gb: float = Field(
        5.0, ge=0,
        description="Admission, the running-disk watch and the engine's in-run guard all stop this far below the quota "
        "(a margin at or above the quota stops everything: tests use that to simulate a full disk).",
    )
    min_free_gb: float = Field(
        1.0, ge=0,
        description="Room every filesystem a run writes to must keep besides what its stage will write (statvfs: "
        "other users on the same volume count here, not in the quota); a read-only filesystem admits nothing.",
    )
    gpu_idle_margin_mib: int = Field(
        300, ge=0, description="A GPU counts as released at its idle baseline + this many MiB (never at 0)."
    )
    gpu_samples: int = Field(3, ge=1, description="Consecutive good GPU samples before a run is admitted.")
    gpu_grace_s: float = Field(
        20.0, ge=0, description="After a launch its memory may not be visible yet: wait this long before judging the next."
    )
    gpu_sharing: bool = Field(
        False, description="Let a stage start on a GPU that runs only this workspace's stages when the memory left "
        "(theirs counted at their expected peaks) minus gpu_share_margin_gib covers its measured, else predicted, peak; "
        "other users' processes still block. Off: a stage starts only on an idle GPU (docs/memory.md).",
    )
    gpu_share_margin_gib: float = Field(
        2.0, ge=0, description="With gpu_sharing: GiB kept free beside the peaks of the stages sharing a GPU "
        "(the prediction is within ~10%; fragmentation and late growth need room)."
    )
    hf_cache_dirs: list[str] = Field(
        default_factory=lambda: ["~/.cache/huggingface/hub", "~/.cache/huggingface/xet"],
        description="HF caches shown in the disk breakdown and offered to prune.",
    )
    disk_refresh_s: float = Field(60.0, gt=0, description="du is slow: the worker re-measures in the background this often.")
    pause_after_failures: int = Field(
        3, ge=0, description="Pause the runs that share a failure's cause (its data dir for a data error, its GPUs for "
        "an OOM, its model for a config or dtype error, everything for a full disk or a kill) after this many of them "
        "in a row failed within early_failure_s of their start for the same kind of reason; `dialsum-tui resume` "
        "lifts it. 0 = off (docs/sweeps.md).",
    )
    early_failure_s: float = Field(
        600.0, gt=0, description="'Within its first minutes' for pause_after_failures: seconds from a run's start "
        "(started_at) to its failure; a run failed before it started (the preflight at admission) counts as 0.",
    )
    notify: NotifySettings = Field(
        default_factory=NotifySettings,
        description="A command run when a run ends or stays blocked (argv list, no shell; docs/notify.md).",
    )
    share_group: str | None = Field(
        None, min_length=1,
        description="A Unix group whose members share this workspace's queue (set by `dialsum-tui init --share-group "
        "NAME`); unset = private to its owner. Never world-accessible either way.",
    )
    allow_outside_quota: bool = Field(
        False, description="Accept configs whose paths.checkpoints/submissions lie outside quota_path (the disk guard "
        "and prune then do not see those files)."
    )
    backend: Literal["local", "slurm"] = Field(
        "local", description="Who runs a stage: 'local' (processes on this host) or 'slurm' (one sbatch job per stage)."
    )
    slurm: SlurmSettings = Field(
        default_factory=SlurmSettings, description="Partition, account, time limit… for backend: slurm (docs/slurm.md)."
    )



def _format_error(err: ValidationError, source: Path | str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            known = ", ".join(Settings.model_fields)
            lines.append(f"{source}: unknown key '{loc}' (typo? known: {known})")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {loc}: {msg} (got {e.get('input')!r})")
    return "\n".join(lines)


SETTLE_S = 0.3  # an editor's save ends well within this; a file changed more recently may be half-written
SETTLE_TRIES = 10


def read_settled(path: Path) -> str:
    """The file's text once it has not changed for ``SETTLE_S``.

    Editors save settings.yaml by truncating and rewriting it in place, and the worker re-reads it
    every pass: a read in between would see a short file that is still valid YAML and silently
    fall back to defaults (a 150 GB quota where the user wrote 100). Waiting until the last write
    is ``SETTLE_S`` old costs nothing for a file nobody is saving. Bounded, for a file that never
    stops changing.

    Never sleeps on a wall-clock difference it cannot trust: a modification time in the future
    (the clock stepped back, or the file came from a host whose clock is ahead) says nothing about
    a save in progress, so the file is read at once instead of waiting out the jump.
    """
    for _ in range(SETTLE_TRIES):
        age = time.time() - path.stat().st_mtime
        if not 0 <= age < SETTLE_S:
            break
        time.sleep(SETTLE_S - age)
    return path.read_text(encoding="utf-8")


def load_settings(path: Path) -> Settings:
    """Read and validate a settings file; a missing or empty file means all defaults.

    Raises:
        SettingsError: naming the file and the key when the YAML or a value is wrong.
    """
    try:
        text = read_settled(path)
    except FileNotFoundError:
        return Settings()
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SettingsError(f"{path}: invalid YAML ({err}); fix or delete the file") from None
    if tree is None:
        return Settings()
    if not isinstance(tree, dict):
        raise SettingsError(f"{path}: expected a mapping such as 'quota_gb: 150'")
    if "slurm" in tree:  # its own validator names each slurm.<key> and the options dialsum-tui owns
        try:
            tree = {**tree, "slurm": parse_settings(tree["slurm"], path)}
        except SlurmSettingsError as err:
            raise SettingsError(str(err)) from None
    try:
        return Settings.model_validate(tree)
    except ValidationError as err:
        raise SettingsError(_format_error(err, path)) from None


def settings_as_dict(settings: Settings) -> dict[str, Any]:
    """Plain mapping of the settings (for ``check --json``)."""
    return settings.model_dump()


# --- environment -------------------------------------------------------------------------------


def _grace(value: Any) -> Any:
    # "sigint_s,sigterm_s": seconds to wait after SIGINT, then after SIGTERM, before escalating.
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        return tuple(parts)
    return value


ENV_PREFIX = "DIALSUM_"  # every variable the manager reads is this prefix + a field of EnvSettings


class EnvSettings(BaseSettings):
    """The ``DIALSUM_*`` variables the manager reads, validated once (:func:`env_settings`):
    each is ``DIALSUM_`` + a field name in capitals (pydantic-settings' ``env_prefix``).

    Every field is None (or its default) when its variable is unset or blank.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True, allow_inf_nan=False)

    workspace: Path | None = Field(None, description="DIALSUM_WORKSPACE: the workspace when --workspace is not given.")
    engine: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None, description="DIALSUM_ENGINE: a shlex-split stand-in for `python -m engine` (tests, the fake engine)."
    )
    worker_poll_s: float = Field(0.5, gt=0, description="DIALSUM_WORKER_POLL_S: seconds between the worker's ticks.")
    cpu_procs: int = Field(
        1, ge=1, description="DIALSUM_CPU_PROCS: train ranks on a CPU-only host (CI, demo); >= 2 runs accelerate/gloo."
    )
    fake_gpu: Path | None = Field(
        None, description="DIALSUM_FAKE_GPU: a scripted GPU JSON (tests/demo) instead of NVML."
    )
    demo_pretrain_steps: int = Field(
        200, ge=0, description="DIALSUM_DEMO_PRETRAIN_STEPS: LM pre-training steps of the demo's tiny causal base."
    )
    stop_grace: Annotated[tuple[float, ...] | None, NoDecode] = Field(
        None, description="DIALSUM_STOP_GRACE: 'sigint_s,sigterm_s' to wait before escalating a stop."
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v.strip() if isinstance(v, str) else v for k, v in data.items()
                    if not (isinstance(v, str) and not v.strip())}
        return data

    @field_validator("engine", mode="before")
    @classmethod
    def _split_engine(cls, value: Any) -> Any:
        return tuple(shlex.split(value)) if isinstance(value, str) else value

    @field_validator("stop_grace", mode="before")
    @classmethod
    def _split_grace(cls, value: Any) -> Any:
        return _grace(value)

    @field_validator("stop_grace")
    @classmethod
    def _grace_pair(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and not 1 <= len(value) <= 2:
            raise ValueError("expected 'sigint_s' or 'sigint_s,sigterm_s'")
        return value


def env_var(field: str) -> str:
    """The variable a field of :class:`EnvSettings` is read from, e.g. ``cpu_procs`` → ``DIALSUM_CPU_PROCS``."""
    return ENV_PREFIX + field.upper()


# field -> variable, derived from the model (the names are never written out by hand).
ENV_VARS: dict[str, str] = {field: env_var(field) for field in EnvSettings.model_fields}


def env_settings() -> EnvSettings:
    """Read and validate the ``DIALSUM_*`` variables of this process's environment.

    Read each time it is called (tests set variables per test); cheap.

    Raises:
        SettingsError: e.g. "$DIALSUM_CPU_PROCS='abc': expected a whole number ... ; fix or unset it".
    """
    try:
        return EnvSettings()
    except ValidationError as err:
        lines = []
        for e in err.errors():
            field = str(e["loc"][0]) if e["loc"] else ""
            var = env_var(field)
            what = EnvSettings.model_fields[field].description or "" if field in EnvSettings.model_fields else ""
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"${var}={os.environ.get(var)!r}: {msg} ({what.split(': ', 1)[-1]}); fix or unset it")
        raise SettingsError("\n".join(lines)) from None
