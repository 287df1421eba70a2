"""Provides the nested sections of ``.dialsum/settings.yaml`` that belong to one feature each:
``notify:`` (the run-end ping, :mod:`~dialsum_tui.manager.worker.notify`) and ``slurm:`` (the Slurm
backend, :mod:`~dialsum_tui.manager.backends.slurm`). They live here, beside the settings that embed
them, so reading the settings never imports the worker or a backend.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dialsum_tui.manager.errors import DialsumError


class NotifySettings(BaseModel):
    """The ``notify:`` section of ``.dialsum/settings.yaml``; off while ``command`` is empty."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .inf/.nan: refused, named

    command: list[str] = Field(default_factory=list, description="argv, run without a shell; [] = off")
    timeout_s: float = Field(default=30.0, gt=0, description="killed (its whole process group) after this")
    blocked_after_s: float = Field(default=3600.0, gt=0, description="ping once when a guard holds a run this long")

    @field_validator("command", mode="before")
    @classmethod
    def _argv_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                "notify.command must be a list of arguments, e.g. [notify-send, dialsum-tui, '{message}']; "
                "it runs without a shell, so write each argument as its own item (or use [sh, -c, '...'])"
            )
        if isinstance(value, list) and value and not (isinstance(value[0], str) and value[0].strip()):
            raise ValueError("notify.command[0] must name the program to run")
        return value


# --- settings -----------------------------------------------------------------------------------

# sbatch's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (or no limit).
_TIME = re.compile(r"^(?:\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2}"
                   r"|UNLIMITED|INFINITE)$")
_NAME = re.compile(r"^[A-Za-z0-9_.,+@-]+$")
# Options the settings or the backend set themselves: in sbatch_options they would fight ours.
_OWNED = {
    "-o": "the log is run.log", "--output": "the log is run.log", "-e": "the log is run.log",
    "--error": "the log is run.log", "-J": "the job name is dialsum-<run>-<stage>",
    "--job-name": "the job name is dialsum-<run>-<stage>", "--parsable": "always set", "--wrap": "the stage is the command",
    "--open-mode": "always append", "-D": "the workspace is the directory", "--chdir": "the workspace is the directory",
    "--export": "the worker's environment is exported", "--signal": "use slurm.warn_s",
    "-d": "stages chain themselves", "--dependency": "stages chain themselves", "--gres": "use slurm.gpus_per_stage",
    "-G": "use slurm.gpus_per_stage", "--gpus": "use slurm.gpus_per_stage", "-t": "use slurm.time_limit",
    "--time": "use slurm.time_limit", "-p": "use slurm.partition", "--partition": "use slurm.partition",
    "-A": "use slurm.account", "--account": "use slurm.account", "-c": "use slurm.cpus_per_task",
    "--cpus-per-task": "use slurm.cpus_per_task",
    "--comment": "the comment marks the job as this workspace's run and stage",
}


class SlurmSettings(BaseModel):
    """The ``slurm:`` section of ``.dialsum/settings.yaml`` (used when ``backend: slurm``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .inf/.nan: refused, named

    partition: str | None = Field(None, description="sbatch --partition; none = the cluster's default")
    account: str | None = Field(None, description="sbatch --account; none = your default account")
    time_limit: str = Field("1-00:00:00", description="per stage, sbatch --time (M, H:M:S, D-H:M:S); "
                            "longer waits longer in the queue, shorter risks a TIMEOUT")
    gpus_per_stage: int = Field(1, ge=0, le=64, description="--gres=gpu:N per stage; 0 = CPU stages, no --gres")
    cpus_per_task: int | None = Field(None, ge=1, description="sbatch --cpus-per-task (dataloader workers)")
    warn_s: int = Field(60, ge=0, le=3600, description="SIGINT this long before the time limit, so the engine "
                        "saves and stops cleanly; 0 = none")
    sbatch_options: list[str] = Field(default_factory=list, description="more sbatch options as an argv list, "
                                      "e.g. ['--qos=high', '--constraint', 'a100']; never one shell string")

    @field_validator("partition", "account")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("expected a plain Slurm name (letters, digits, _ . , + @ -), e.g. 'gpu'")
        return value

    @field_validator("time_limit")
    @classmethod
    def _time(cls, value: str) -> str:
        if not _TIME.match(value.strip()):
            raise ValueError("expected sbatch's --time format: minutes, H:M:S or D-H:M:S, e.g. '12:00:00'")
        return value.strip()

    @field_validator("sbatch_options")
    @classmethod
    def _options(cls, value: list[str]) -> list[str]:
        if value and not value[0].startswith("-"):
            raise ValueError(f"the first item {value[0]!r} is not an option; write e.g. ['--qos=high']")
        for item in value:
            if "\n" in item or "\0" in item:
                raise ValueError(f"{item!r} contains a line break")
            if item.startswith("-") and (" " in item.split("=", 1)[0] or re.search(r"\s--?[A-Za-z]", item)):
                raise ValueError(f"{item!r} looks like several options in one string: give each its own item")
            name = item.split("=", 1)[0]
            if name in _OWNED:
                raise ValueError(f"{name} is set by dialsum-tui ({_OWNED[name]})")
        return value


class SlurmSettingsError(DialsumError, ValueError):
    """The ``slurm:`` settings do not validate; the message names the file and each key."""


def parse_settings(tree: Any, source: str | Path = "settings.yaml") -> SlurmSettings:
    """Validate the ``slurm:`` mapping of a settings file.

    Raises:
        SlurmSettingsError: one line per problem, ``<source>: slurm.<key>: <what> (got …)``.
    """
    if tree is None:
        return SlurmSettings()
    if not isinstance(tree, dict):
        raise SlurmSettingsError(f"{source}: slurm: expected a mapping such as 'partition: gpu' (got {tree!r})")
    try:
        return SlurmSettings.model_validate(tree)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"])
            what = "unknown key (known: " + ", ".join(SlurmSettings.model_fields) + ")" \
                if e["type"] == "extra_forbidden" else e["msg"]
            lines.append(f"{source}: slurm.{key}: {what} (got {e.get('input')!r})")
        raise SlurmSettingsError("\n".join(lines)) from None
