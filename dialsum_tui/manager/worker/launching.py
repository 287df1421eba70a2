"""Provides how a stage is launched: its command line (the engine, wrapped in ``accelerate launch``
for a multi-rank train stage), the environment it needs, and the start itself through a
:class:`~dialsum_tui.manager.backends.protocol.Backend` (local processes by default, or Slurm) with a header
line in ``run.log``.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

from dialsum_tui.manager.backends.protocol import LAUNCH_TOKEN_ENV, Backend, BackendUnavailable, Handle
from dialsum_tui.manager.backends.protocol import LaunchError as BackendRefused
from dialsum_tui.manager.errors import DialsumError
from dialsum_tui.manager.guards.disk import engine_disk_args
from dialsum_tui.manager.runs.identity import model_key, predictions_key, run_key
from dialsum_tui.manager.runs.logs import stage_header
from dialsum_tui.manager.runs.models import Run, parse_gpus
from dialsum_tui.manager.runs.retry import resume_args
from dialsum_tui.manager.workspace import sharing
from dialsum_tui.manager.workspace.layout import Workspace
from dialsum_tui.manager.workspace.settings import ENV_VARS, SettingsError, env_settings
from engine.artifacts import dev_predictions_path
from engine.config import ConfigError, RunConfig
from engine.contract import (
    DEV_CSV,
    ENGINE_COMMAND_HINT,
    ENVIRONMENT_HINT,
    SLURM_SETTINGS_HINT,
    SNAPSHOT_HINT,
    FailureKind,
    RunFiles,
    Stage,
    load_snapshot,
)
from engine.failures import Failure

ENGINE_ENV = ENV_VARS["engine"]  # tests: a shlex-split stand-in for [python, -m, engine]
CPU_PROCS_ENV = ENV_VARS["cpu_procs"]  # CPU-only hosts (CI, demo): train runs without gpus with N gloo processes


class LaunchError(DialsumError):
    """A stage could not start; ``failure`` is what the run records (it fails before it ran)."""

    def __init__(self, failure: Failure):
        super().__init__(failure.message)
        self.failure = failure


def engine_argv() -> list[str]:
    """The command that runs an engine stage: ``$DIALSUM_ENGINE`` (shlex-split) or ``python -m engine``."""
    override = env_settings().engine
    return list(override) if override else [sys.executable, "-m", "engine"]


def cpu_processes() -> int:
    """``$DIALSUM_CPU_PROCS`` as a process count (1 when unset).

    Raises:
        SettingsError: the variable is set but not a whole number ≥ 1.
    """
    return env_settings().cpu_procs


def accelerate_argv(engine: list[str], processes: int) -> list[str]:
    """Wrap an engine command in ``accelerate launch`` (torchrun underneath) with ``processes`` ranks.

    ``--multi_gpu`` only selects accelerate's torchrun launcher: on a host without CUDA the Trainer
    then joins the ranks with gloo on the CPU (accelerate's own ``--cpu`` flag starts one process
    unless MPI is installed). Port 0 lets accelerate pick a free rendezvous port, so two multi-GPU
    runs side by side never collide.
    """
    options = ["--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    if Path(engine[0]).name.startswith("python"):
        # accelerate starts each rank with its own interpreter: run the launcher under the same one.
        return [engine[0], "-m", "accelerate.commands.launch", *options, *engine[1:]]
    return [sys.executable, "-m", "accelerate.commands.launch", *options, "--no_python", *engine]


def run_config(run: Run) -> RunConfig:
    """The validated config snapshot of a run.

    Raises:
        ConfigError: the snapshot does not validate (names the run and the key).
    """
    return load_snapshot(run.config_yaml, source=f"run {run.id} config snapshot")


def stage_args(ws: Workspace, run: Run, stage: str, cfg: RunConfig) -> list[str]:
    """Engine arguments for one stage; paths only, so no config value ever becomes a command string."""
    files = RunFiles(ws.run_dir(run.id))
    # Files are keyed by run (<slug>-r<id>); an infer/evaluate-only run reads its source run's.
    key = ["--artifact-key", run_key(run)]
    if stage == Stage.TRAIN:
        # The quota is the workspace's (settings.yaml): the engine's guard stops at the manager's byte count.
        return [Stage.TRAIN, "--config", str(files.config), "--run-dir", str(files.root), *key, *engine_disk_args(ws),
                *resume_args(files.root)]
    if stage == Stage.INFER:
        return [Stage.INFER, "--config", str(files.config), "--run-dir", str(files.root), *key,
                "--model-key", model_key(run), "--split", "both"]
    predictions = dev_predictions_path(ws.resolve(cfg.paths.submissions), predictions_key(run))
    references = ws.resolve(cfg.data.dir) / DEV_CSV
    return [Stage.EVALUATE, "--predictions", str(predictions), "--references", str(references),
            "--run-dir", str(files.root), "--json"]


def stage_command(ws: Workspace, run: Run, stage: str, cfg: RunConfig,
                  gpu_count: int | None = None) -> tuple[list[str], dict[str, str]]:
    """The argv of one stage and the environment entries it needs on top of ours.

    A train stage on N ≥ 2 GPUs (``run.gpus``, e.g. ``"0,1"``) — or, on a CPU-only host, with
    ``$DIALSUM_CPU_PROCS`` ≥ 2 — runs under ``accelerate launch`` with N ranks. Inference and
    evaluation stay single-process, on the run's first GPU. ``gpu_count`` (Slurm) replaces the
    device list: that many ranks, and no ``CUDA_VISIBLE_DEVICES`` (Slurm sets it from ``--gres``).

    Raises:
        ConfigError: ``$DIALSUM_CPU_PROCS`` is not a number.
    """
    gpus = parse_gpus(run.gpus)
    env: dict[str, str] = {}
    if gpu_count:
        processes = gpu_count
    elif gpus and gpu_count is None:
        env["CUDA_VISIBLE_DEVICES"] = run.gpus if stage == Stage.TRAIN else str(gpus[0])
        processes = len(gpus) if stage == Stage.TRAIN else 1
    else:
        processes = cpu_processes() if stage == Stage.TRAIN else 1
        if processes > 1:
            env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU switch means CPU: never pick up a GPU by accident
    argv = engine_argv()
    if processes > 1:
        argv = accelerate_argv(argv, processes)
    return argv + [str(a) for a in stage_args(ws, run, stage, cfg)], env


def launch_intent(ws: Workspace, run: Run, stage: str) -> dict[str, Any]:
    """What the store records *before* a stage is spawned: the stage, a token the process will
    carry in its environment, and where its events begin in ``events.jsonl``.

    A worker stopped (SIGSTOP, kill -9) between spawning a stage and recording its pid used to
    launch the same stage again after a restart, and to skip the events the stage wrote meanwhile.
    With the intent on record, the next worker finds the process by its token, or reads what it
    wrote from ``events_offset`` on, and launches again only a stage that never started.
    """
    try:
        offset = RunFiles(ws.run_dir(run.id)).events.stat().st_size
    except FileNotFoundError:
        offset = 0
    return {"stage": stage, "token": f"{run.id}-{stage}-{uuid.uuid4().hex[:12]}", "events_offset": offset}


def start_stage(ws: Workspace, run: Run, stage: str, backend: Backend, gpu_count: int | None = None,
                token: str | None = None) -> Handle:
    """Start one stage of ``run`` through ``backend``, its output appended to the run's ``run.log``.

    Args:
        gpu_count: the stage's GPUs as a count (Slurm, ``--gres=gpu:N``); None: ``run.gpus`` are
            local device indices.
        token: the launch intent's token (:func:`launch_intent`), put in the stage's environment.

    Returns:
        The stage's handle (a local process, or a Slurm job); ``handle.ref`` is what the store keeps.

    Raises:
        LaunchError: the config snapshot, ``$DIALSUM_CPU_PROCS``, the engine command or the
            backend's settings are unusable; its failure says what to fix.
        BackendUnavailable: the backend did not answer (Slurm's controller); nothing was started.
    """
    try:
        cfg = run_config(run)
    except ConfigError as err:
        raise LaunchError(Failure(FailureKind.CONFIG, str(err), SNAPSHOT_HINT)) from None
    files = RunFiles(ws.run_dir(run.id))
    files.root.mkdir(mode=sharing.dir_mode(), parents=True, exist_ok=True)
    try:
        argv, extra_env = stage_command(ws, run, stage, cfg, gpu_count)
    except SettingsError as err:  # a DIALSUM_* variable: the message names it
        raise LaunchError(Failure(FailureKind.CONFIG, str(err), ENVIRONMENT_HINT)) from None
    env = dict(os.environ, PYTHONUNBUFFERED="1") | extra_env | ({LAUNCH_TOKEN_ENV: token} if token else {})
    with open(os.open(files.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, sharing.file_mode()), "a", encoding="utf-8") as fh:
        fh.write(stage_header(stage, argv))
    gpus = gpu_count if gpu_count is not None else len(parse_gpus(run.gpus) or ())
    try:
        return backend.launch(run.id, stage, argv, env, cwd=ws.root, log_path=files.log, gpus=gpus)
    except BackendUnavailable:
        raise
    except BackendRefused as err:  # sbatch refused the job: its message names the setting
        raise LaunchError(Failure(FailureKind.CONFIG, str(err), SLURM_SETTINGS_HINT)) from None
    except OSError as err:
        raise LaunchError(Failure(FailureKind.CONFIG, f"cannot start {argv[0]}: {err}",
                                  ENGINE_COMMAND_HINT.format(variable=ENGINE_ENV))) from None
