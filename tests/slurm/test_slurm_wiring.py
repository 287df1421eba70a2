"""Tests how the Slurm backend is wired into the product without a cluster: the ``backend:`` and
``slurm:`` settings, the stage command and GPU count on Slurm, how Slurm's reason joins the worker's
verdict, the GPU panel's allocation note, and what ``ls`` and ``check`` say."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dialsum_tui.manager.backends.protocol import Exited, Gone, Pending, Running
from dialsum_tui.manager.backends.registry import poll_note
from dialsum_tui.manager.backends.slurm import SlurmBackend
from dialsum_tui.manager.guards.gpu import ScriptedGpuSource
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.snapshot import SnapshotSource
from dialsum_tui.manager.worker.launching import run_config, stage_command
from dialsum_tui.manager.worker.verdict import Outcome, with_backend_reason
from dialsum_tui.manager.workspace.layout import Workspace
from dialsum_tui.manager.workspace.sections import SlurmSettings
from dialsum_tui.manager.workspace.settings import SettingsError, load_settings
from engine.contract import ExitCode, FailureKind
from engine.failures import Failure

from support import write_config

# --- settings -----------------------------------------------------------------------------------


def test_backend_defaults_to_local_and_slurm_settings_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    assert load_settings(path).backend == "local"
    path.write_text("backend: slurm\nslurm:\n  partition: gpu\n  time_limit: '12:00:00'\n"
                    "  sbatch_options: ['--qos=high']\n", encoding="utf-8")

    settings = load_settings(path)

    assert settings.backend == "slurm"
    assert (settings.slurm.partition, settings.slurm.time_limit, settings.slurm.sbatch_options) == \
        ("gpu", "12:00:00", ["--qos=high"])


@pytest.mark.parametrize(("body", "expected"), [
    ("backend: kubernetes\n", r"settings.yaml: backend: Input should be 'local' or 'slurm'"),
    ("backend: slurm\nslurm:\n  partion: gpu\n", r"settings.yaml: slurm.partion: unknown key \(known: partition,"),
    ("slurm:\n  time_limit: 'a day'\n", r"slurm.time_limit: .*sbatch's --time format"),
    ("slurm:\n  sbatch_options: '--qos=high --exclusive'\n", r"slurm.sbatch_options: .*list"),
    ("slurm:\n  sbatch_options: ['--time=5']\n", r"--time is set by dialsum-tui \(use slurm.time_limit\)"),
    ("slurm:\n  sbatch_options: ['--comment=mine']\n", r"--comment is set by dialsum-tui \(the comment marks"),
])
def test_a_bad_slurm_setting_names_the_file_and_the_key(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(body, encoding="utf-8")

    with pytest.raises(SettingsError, match=expected):
        load_settings(path)


# --- stages on Slurm --------------------------------------------------------------------------


@pytest.mark.parametrize(("gpus", "stage", "default", "count"), [
    (None, "train", 1, 1), (None, "train", 0, 0), ("2", "train", 1, 2), ("0,1,2,3", "train", 1, 4),
    ("4", "infer", 1, 1), ("4", "evaluate", 1, 1), (None, "infer", 0, 0),
])
def test_on_slurm_gpus_are_a_count(gpus: str | None, stage: str, default: int, count: int) -> None:
    assert SlurmBackend(SlurmSettings(gpus_per_stage=default)).gpu_request(gpus, stage) == count


def test_a_multi_gpu_train_stage_on_slurm_runs_accelerate_without_device_indices(workspace: Workspace) -> None:
    workspace.settings_path.write_text("backend: slurm\n", encoding="utf-8")  # "2" is a count, not this host's GPU 2
    manager = Manager.open(workspace)
    run = manager.add(str(write_config(workspace, "ranks")), gpus="2")

    argv, env = stage_command(workspace, run, "train", run_config(run), gpu_count=2)
    infer, infer_env = stage_command(workspace, run, "infer", run_config(run), gpu_count=1)

    assert "accelerate.commands.launch" in argv and argv[argv.index("--num_processes") + 1] == "2"
    assert "CUDA_VISIBLE_DEVICES" not in env  # Slurm sets it from --gres; "2" is not a device index here
    assert "accelerate.commands.launch" not in infer and infer_env == {}


# --- verdicts -----------------------------------------------------------------------------------

INTERRUPTED = Failure(FailureKind.INTERRUPTED, "interrupted by SIGINT", "retry it")
FAILED_INTERRUPTED = Outcome(RunState.FAILED, ExitCode.INTERRUPTED, failure=INTERRUPTED)


def test_slurms_reason_explains_an_exit_the_engine_only_calls_interrupted() -> None:
    timeout = Exited(ExitCode.INTERRUPTED, FailureKind.TIMEOUT, "Slurm killed at the time limit (1:00:00)")

    outcome = with_backend_reason(FAILED_INTERRUPTED, timeout, "train")

    assert outcome.state is RunState.FAILED and outcome.failure.kind == FailureKind.TIMEOUT
    assert outcome.failure.hint == FailureKind.TIMEOUT.hint and "time limit" in outcome.failure.message
    oom = with_backend_reason(Outcome(RunState.FAILED, -9, failure=Failure("killed", "SIGKILL", "")),
                              Exited(-9, FailureKind.HOST_OOM, "Slurm: OUT_OF_MEMORY"), "infer")
    assert oom.failure.kind == FailureKind.HOST_OOM


def test_the_engines_own_explanation_and_a_users_cancel_stand() -> None:
    engine_oom = Outcome(RunState.FAILED, 1, failure=Failure(FailureKind.OOM, "CUDA out of memory", "lower the batch"))
    cancelled = Outcome(RunState.CANCELLED, ExitCode.INTERRUPTED, reason="cancelled during train")
    slurm_cancel = Exited(ExitCode.INTERRUPTED, FailureKind.INTERRUPTED, "Slurm: the job was cancelled (scancel)")

    assert with_backend_reason(engine_oom, Exited(1, FailureKind.TIMEOUT, "limit"), "train") is engine_oom
    assert with_backend_reason(cancelled, slurm_cancel, "train") is cancelled
    assert with_backend_reason(engine_oom, Exited(1), "train") is engine_oom


def test_a_job_slurm_lost_says_so() -> None:
    vanished = Outcome(RunState.INTERRUPTED, None, reason="train process 0 vanished while no worker watched it")

    outcome = with_backend_reason(vanished, Gone("Slurm: NODE_FAIL"), "train")

    assert outcome.reason == "train ended without a verdict: Slurm: NODE_FAIL; retry it"


def test_pending_and_running_notes() -> None:
    assert poll_note(Pending("Priority")) == "Slurm: Priority"
    assert poll_note(Running("Slurm: COMPLETING")) == "Slurm: COMPLETING" and poll_note(Running()) is None


# --- front ends ---------------------------------------------------------------------------------


def _slurm_workspace_with_a_job(workspace: Workspace) -> tuple[Manager, int]:
    workspace.settings_path.write_text("backend: slurm\nslurm:\n  gpus_per_stage: 0\n", encoding="utf-8")
    manager = Manager.open(workspace)
    run = manager.add(str(write_config(workspace, "슬럼")), action="train")
    manager.store.transition(run.id, RunState.RUNNING, stage="train")
    manager.store.update(run.id, backend="slurm", job_id="4242", reason="Slurm: Priority")
    return manager, run.id


def test_the_gpu_panel_shows_slurms_allocation_instead_of_this_hosts_devices(workspace: Workspace) -> None:
    manager, run_id = _slurm_workspace_with_a_job(workspace)
    source = SnapshotSource(manager, ScriptedGpuSource([[]], label="this host"))

    pending = source.board()
    manager.store.update(run_id, allocation="gpu-07: cpu=8,mem=64G,node=1,gres/gpu=2", reason=None)
    running = source.board()

    assert pending.gpus == () and "run 1 · job 4242 · Slurm: Priority" in pending.gpu_note
    assert running.gpu_note == "Slurm allocates the GPUs\nrun 1 · job 4242 · gpu-07: cpu=8,mem=64G,node=1,gres/gpu=2"


def _cli(workspace: Workspace, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"PATH": path} if path is not None else {})}
    return subprocess.run([sys.executable, "-m", "dialsum_tui", "--workspace", str(workspace.root), *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_ls_shows_the_backend_and_job_id_and_check_fails_without_slurm(workspace: Workspace, tmp_path: Path) -> None:
    _slurm_workspace_with_a_job(workspace)

    ls = _cli(workspace, "ls")
    check = _cli(workspace, "check", path=str(tmp_path / "no-slurm"))

    assert "BACKEND" in ls.stdout and "slurm 4242" in ls.stdout and "Slurm: Priority" in ls.stdout
    assert check.returncode == 1, check.stdout + check.stderr
    assert "backend: slurm — NOT usable" in check.stdout
    assert "`sbatch` not found on PATH: install the Slurm client" in check.stdout
    (workspace.settings_path).write_text("backend: local\n", encoding="utf-8")
    local = _cli(workspace, "check", path=str(tmp_path / "no-slurm"))
    # The backend is fine now; what still needs attention is the worker (down) and its disk measurement.
    assert "backend: local" in local.stdout and "NOT usable" not in local.stdout
    assert all("backend" not in line for line in local.stdout.splitlines() if line.startswith("needs attention"))
