"""Tests what the Slurm backend decides without a cluster: settings validation, the sbatch command
line and job script, record parsing, and the mapping onto poll results, run states and failure kinds."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from dialsum_tui.manager.backends import slurm
from dialsum_tui.manager.backends.protocol import Exited, Gone, Pending, Running, run_state, verdict
from dialsum_tui.manager.backends.slurm_state import (
    JobState,
    jobcomp_record,
    parse_exit_code,
    parse_record,
    sacct_record,
    to_poll,
)
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.workspace.sections import SlurmSettingsError, parse_settings
from engine.contract import ExitCode, FailureKind
from engine.failures import Failure

# --- settings -----------------------------------------------------------------------------------


def test_settings_defaults_and_a_full_section() -> None:
    assert parse_settings(None).gpus_per_stage == 1
    full = parse_settings({"partition": "gpu", "account": "nlp-lab", "time_limit": "2-00:00:00", "gpus_per_stage": 2,
                           "cpus_per_task": 8, "warn_s": 120, "sbatch_options": ["--qos=high", "--constraint", "a100"]})
    assert (full.partition, full.time_limit, full.sbatch_options[1:]) == ("gpu", "2-00:00:00", ["--constraint", "a100"])


@pytest.mark.parametrize(("tree", "message"), [
    ({"partiton": "gpu"}, "slurm.partiton: unknown key (known: partition, account"),
    ({"sbatch_options": "--qos=high --exclusive"}, "slurm.sbatch_options: Input should be a valid list"),
    ({"sbatch_options": ["--qos=high --exclusive"]}, "several options in one string"),
    ({"sbatch_options": ["high"]}, "is not an option"),
    ({"sbatch_options": ["--output=/tmp/x"]}, "--output is set by dialsum-tui (the log is run.log)"),
    ({"sbatch_options": ["-p", "gpu"]}, "-p is set by dialsum-tui (use slurm.partition)"),
    ({"time_limit": "two hours"}, "slurm.time_limit: Value error, expected sbatch's --time format"),
    ({"gpus_per_stage": -1}, "slurm.gpus_per_stage: Input should be greater than or equal to 0"),
    ({"partition": "gpu; rm -rf ~"}, "slurm.partition: Value error, expected a plain Slurm name"),
    ("gpu", "slurm: expected a mapping"),
])
def test_bad_settings_are_refused_naming_file_and_key(tree: object, message: str) -> None:
    with pytest.raises(SlurmSettingsError) as err:
        parse_settings(tree, ".dialsum/settings.yaml")
    assert str(err.value).startswith(".dialsum/settings.yaml: slurm") and message in str(err.value)


# --- the command line -----------------------------------------------------------------------------


def test_sbatch_argv_asks_for_gpus_only_when_there_are_some(tmp_path: Path) -> None:
    settings = parse_settings({"partition": "gpu", "account": "lab", "sbatch_options": ["--qos=high"]})
    common = {"cwd": tmp_path, "log_path": tmp_path / "run.log", "job_name": "dialsum-3-train", "settings": settings}

    with_gpus = slurm.sbatch_argv(tmp_path / "s.sbatch", gpus=2, srun=True, dependency="41", **common)
    cpu = slurm.sbatch_argv(tmp_path / "s.sbatch", gpus=0, **common)

    assert "--gres=gpu:2" in with_gpus and not any(a.startswith("--gres") for a in cpu)
    assert with_gpus[:2] == ["sbatch", "--parsable"] and with_gpus[-2:] == ["--qos=high", str(tmp_path / "s.sbatch")]
    assert f"--output={tmp_path / 'run.log'}" in cpu and "--open-mode=append" in cpu
    assert "--signal=B:INT@60" in cpu and "--signal=INT@60" in with_gpus  # srun: the step holds the ranks
    assert "--dependency=afterok:41" in with_gpus and "--kill-on-invalid-dep=yes" in with_gpus
    assert "--partition=gpu" in cpu and "--account=lab" in cpu and "--time=1-00:00:00" in cpu


def test_job_script_execs_the_exact_argv() -> None:
    argv = ["python", "-m", "engine", "train", "--run-dir", "/runs/it's mine", "--set", "a=$(rm -rf ~)"]

    script = slurm.batch_script(argv, srun=False, gpus=0)
    ranks = slurm.batch_script(argv, srun=True, gpus=2)

    exec_line = script.splitlines()[-1]
    assert shlex.split(exec_line) == ["exec", *argv]
    assert shlex.split(ranks.splitlines()[-1])[:2] == ["exec", "srun"] and "--gres=gpu:2" in ranks


# --- records --------------------------------------------------------------------------------------


def test_scontrol_record_with_spaces_in_values() -> None:
    line = ("JobId=7 JobName=dialsum-7-train JobState=PENDING Reason=Priority Dependency=(null) ExitCode=0:0 "
            "RunTime=00:00:00 TimeLimit=1-00:00:00 WorkDir=/home/a b/ws Command=/x/dialsum-7-train.sbatch")

    record = parse_record(line)

    assert record["WorkDir"] == "/home/a b/ws" and record["Reason"] == "Priority"


@pytest.mark.parametrize(("raw", "code"), [("0:0", 0), ("3:0", 3), ("130:0", 130), ("0:9", -9), ("0:15", -15),
                                            (None, None), ("junk", None)])
def test_exit_codes_follow_subprocess(raw: str | None, code: int | None) -> None:
    assert parse_exit_code(raw) == code


def test_sacct_and_jobcomp_records(tmp_path: Path) -> None:
    assert sacct_record("12|CANCELLED by 0|0:15|42|60|None\n") == JobState("CANCELLED", None, -15, 42, 3600, "sacct")
    comp = tmp_path / "jobcomp.txt"
    comp.write_text(
        "JobId=12 UserId=a(1) Name=x JobState=REQUEUED TimeLimit=1 StartTime=2026-01-01T00:00:00 "
        "EndTime=2026-01-01T00:00:05 ExitCode=0:0\n"
        "JobId=120 UserId=a(1) Name=y JobState=COMPLETED TimeLimit=1 StartTime=2026-01-01T00:00:00 "
        "EndTime=2026-01-01T00:00:05 ExitCode=0:0\n"
        "JobId=12 UserId=a(1) Name=x JobState=TIMEOUT TimeLimit=1 StartTime=2026-01-01T00:01:00 "
        "EndTime=2026-01-01T00:02:05 DerivedExitCode=0:0 ExitCode=0:15\n", encoding="utf-8")

    assert jobcomp_record(comp, "12") == JobState("TIMEOUT", None, -15, 65, 60, "jobcomp")
    assert jobcomp_record(comp, "13") is None and jobcomp_record(None, "12") is None


# --- onto the protocol ----------------------------------------------------------------------------


@pytest.mark.parametrize(("job", "poll", "state"), [
    (JobState("PENDING", "Priority"), Pending("Priority"), RunState.WAITING),
    (JobState("PENDING", "QOSMaxGRESPerUser"), Pending("QOSMaxGRESPerUser"), RunState.WAITING),
    (JobState("RUNNING"), Running(), RunState.RUNNING),
    (JobState("COMPLETING", exit_code=0), Running("Slurm: COMPLETING"), RunState.RUNNING),
    (JobState("COMPLETED", exit_code=0), Exited(0), RunState.SUCCEEDED),
    (JobState("FAILED", "NonZeroExitCode", 2), Exited(2), RunState.FAILED),
    (JobState("NODE_FAIL", exit_code=-9), Gone("Slurm: NODE_FAIL"), RunState.INTERRUPTED),
    (JobState("PREEMPTED"), Gone("Slurm: PREEMPTED"), RunState.INTERRUPTED),
])
def test_slurm_states_map_onto_polls_and_run_states(job: JobState, poll: object, state: RunState) -> None:
    assert to_poll(job) == poll
    assert run_state(to_poll(job)) is state


def test_failure_kinds_carry_their_hint() -> None:
    timeout = to_poll(JobState("TIMEOUT", exit_code=-15, run_s=3605, limit_s=3600))
    oom = to_poll(JobState("OUT_OF_MEMORY", exit_code=-9))
    cancelled = to_poll(JobState("CANCELLED", exit_code=-15))

    assert timeout.kind is FailureKind.TIMEOUT and "killed at the time limit (1:00:00) after 1:00:05" in timeout.message
    assert "raise slurm.time_limit" in timeout.kind.hint
    assert oom.kind is FailureKind.HOST_OOM and "OUT_OF_MEMORY" in oom.message
    assert cancelled.kind is FailureKind.INTERRUPTED
    assert run_state(cancelled) is RunState.FAILED and run_state(cancelled, cancel_requested=True) is RunState.CANCELLED


def test_sigint_near_the_limit_is_the_time_limit_warning() -> None:
    near = JobState("FAILED", exit_code=ExitCode.INTERRUPTED, run_s=3560, limit_s=3600)
    early = JobState("FAILED", exit_code=ExitCode.INTERRUPTED, run_s=600, limit_s=3600)

    assert to_poll(near, warn_s=60).kind is FailureKind.TIMEOUT
    assert to_poll(early, warn_s=60) == Exited(ExitCode.INTERRUPTED)  # someone else's SIGINT: events decide
    assert to_poll(near, warn_s=0) == Exited(ExitCode.INTERRUPTED)  # no warning was asked for


def test_missing_commands_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    ok, detail = slurm.available()

    assert ok is False and "`sbatch` not found on PATH: install the Slurm client" in detail
    with pytest.raises(slurm.SlurmError, match="`scontrol` not found"):
        slurm.state("1")


def test_verdict_lets_the_engine_explain_and_slurm_say_why_it_was_stopped() -> None:
    timeout = Exited(ExitCode.INTERRUPTED, FailureKind.TIMEOUT, "Slurm stopped it at the time limit")
    interrupted = Failure("interrupted", "interrupted by user (SIGINT)", "retry")
    engine_oom = Failure("oom", "CUDA out of memory", "lower the batch")

    assert verdict(timeout, interrupted) == Failure("timeout", "Slurm stopped it at the time limit",
                                                    FailureKind.TIMEOUT.hint)
    assert verdict(timeout, engine_oom) is engine_oom
    assert verdict(Exited(3), engine_oom) is engine_oom and verdict(Exited(0), None) is None
