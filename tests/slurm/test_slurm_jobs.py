"""Tests the Slurm backend against a real one-node Slurm (tests/slurm/conftest.py): submit, state
with exit codes and pending reasons, cancel with SIGINT first, the time limit, re-adoption."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from dialsum_tui.manager.backends import slurm
from dialsum_tui.manager.backends.protocol import Exited, Gone, Pending, Running, run_state
from dialsum_tui.manager.backends.slurm import SlurmBackend, SlurmJob
from dialsum_tui.manager.backends.slurm_state import jobcomp_record
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.workspace.sections import SlurmSettings
from engine.contract import ExitCode, FailureKind, RunFiles

from support import FAKE_ENGINE, REPO, read_event_lines, wait_until

PROBE = Path(__file__).resolve().parent / "signal_probe.py"
CPU = SlurmSettings(gpus_per_stage=0, time_limit="10", warn_s=0)


@pytest.fixture
def backend(slurm_cluster: Path) -> SlurmBackend:
    return SlurmBackend(CPU)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def _finished(backend: SlurmBackend, job: SlurmJob, timeout: float = 60.0) -> Exited | Gone:
    def ended() -> Exited | Gone | None:
        result = backend.poll(job)
        return None if isinstance(result, Pending | Running) else result

    return wait_until(ended, timeout=timeout, what=f"job {job.job_id} to end")


def _probe(backend: SlurmBackend, tmp_path: Path, name: str, *flags: str, settings: SlurmSettings | None = None,
           srun: bool = False) -> tuple[SlurmJob, Path]:
    """Submit the signal probe; return its job once it runs and has noted its start."""
    notes = tmp_path / f"{name}.signals"
    argv = [sys.executable, str(PROBE), str(notes), *flags]
    job_id = slurm.submit(argv, _env(), tmp_path, tmp_path / "run.log", f"dialsum-0-{name}", 0, settings or CPU,
                          srun=srun)
    wait_until(lambda: notes.exists() and "start" in notes.read_text(), timeout=60, what=f"{name} to start")
    return SlurmJob(job_id), notes


def _run_dir(tmp_path: Path, nickname: str = "slurm-fake") -> RunFiles:
    files = RunFiles(tmp_path / "runs" / "1")
    files.root.mkdir(parents=True)
    config = {"model": {"nickname": nickname}, "paths": {"checkpoints": str(tmp_path / "checkpoints")}}
    files.config.write_text(yaml.safe_dump(config), encoding="utf-8")
    return files


def test_a_stage_runs_to_completed_and_appends_to_run_log(backend: SlurmBackend, tmp_path: Path) -> None:
    files = _run_dir(tmp_path)
    files.log.write_text("=== dialsum: train started\n", encoding="utf-8")
    argv = [sys.executable, str(FAKE_ENGINE), "train", "--run-dir", str(files.root)]

    job = backend.launch(1, "train", argv, _env(FAKE_STEPS="3", FAKE_STEP_S="0.05"), cwd=tmp_path,
                         log_path=files.log, gpus=0)

    assert _finished(backend, job) == Exited(0)
    assert run_state(Exited(0)) is RunState.SUCCEEDED
    log = files.log.read_text(encoding="utf-8")
    assert log.startswith("=== dialsum: train started\n") and "[train] slurm-fake finished" in log
    assert [e["event"] for e in read_event_lines(files.events)][-1] == "finished"
    assert (tmp_path / "checkpoints").is_dir()  # the job ran in cwd with our environment


def test_a_pipeline_chains_its_stages_with_afterok(backend: SlurmBackend, tmp_path: Path) -> None:
    """All three stages submitted at once: each waits (Dependency) until the previous one COMPLETED."""
    files = _run_dir(tmp_path, "chained")
    env = _env(FAKE_STEPS="3", FAKE_STEP_S="0.2")
    jobs: list[SlurmJob] = []
    for stage in ("train", "infer", "evaluate"):
        argv = [sys.executable, str(FAKE_ENGINE), stage, "--run-dir", str(files.root)]
        jobs.append(backend.launch(1, stage, argv, env, cwd=tmp_path, log_path=files.log, gpus=0,
                                   dependency=jobs[-1] if jobs else None))
    assert backend.poll(jobs[2]) == Pending("Dependency")

    assert [_finished(backend, job) for job in jobs] == [Exited(0)] * 3
    ends = [(e["command"], e["event"]) for e in read_event_lines(files.events) if e["event"] in ("started", "finished")]
    assert ends == [("train", "started"), ("train", "finished"), ("infer", "started"), ("infer", "finished"),
                    ("evaluate", "started"), ("evaluate", "finished")]


def test_a_failing_stage_reports_its_exit_code(backend: SlurmBackend, tmp_path: Path) -> None:
    job = backend.launch(1, "infer", ["sh", "-c", "echo 'about to fail'; exit 3"], _env(), cwd=tmp_path,
                         log_path=tmp_path / "run.log", gpus=0)

    result = _finished(backend, job)

    assert result == Exited(3)  # no kind: the worker classifies code + events + log as for a local stage
    assert run_state(result) is RunState.FAILED
    assert "about to fail" in (tmp_path / "run.log").read_text()
    # The same verdict stays readable from the job completion file once scontrol forgets the job.
    kept = jobcomp_record(slurm._jobcomp_file(), job.job_id)
    assert kept is not None and (kept.status, kept.exit_code) == ("FAILED", 3)


def test_cancel_sends_sigint_first_then_scancel(backend: SlurmBackend, tmp_path: Path) -> None:
    job, notes = _probe(backend, tmp_path, "stubborn")  # notes SIGINT and keeps running

    final = slurm.cancel(job.job_id, grace_s=1.0, poll_s=0.2, timeout_s=60)

    assert final.status == "CANCELLED"
    assert notes.read_text().splitlines()[1] == "INT"  # the engine's clean stop came first
    assert backend.poll(job).kind is FailureKind.INTERRUPTED
    assert run_state(backend.poll(job), cancel_requested=True) is RunState.CANCELLED


def test_an_engine_that_stops_on_sigint_ends_without_scancel(backend: SlurmBackend, tmp_path: Path) -> None:
    files = _run_dir(tmp_path)
    argv = [sys.executable, str(FAKE_ENGINE), "train", "--run-dir", str(files.root)]
    job = backend.launch(1, "train", argv, _env(FAKE_STEPS="600", FAKE_STEP_S="0.1"), cwd=tmp_path,
                         log_path=files.log, gpus=0)
    wait_until(lambda: files.events.exists() and "progress" in files.events.read_text(), timeout=60,
               what="the fake engine to make progress")

    stop = backend.stop(job, grace_s=60)
    wait_until(stop.advance, timeout=30, what="the engine to stop on SIGINT")

    assert stop.cancelled is False  # it never needed scancel
    assert backend.poll(job) == Exited(ExitCode.INTERRUPTED)
    assert read_event_lines(files.events)[-1]["kind"] == "interrupted"
    assert run_state(backend.poll(job), cancel_requested=True) is RunState.CANCELLED


def test_multi_rank_stage_under_srun_gets_sigint(backend: SlurmBackend, tmp_path: Path) -> None:
    job, notes = _probe(backend, tmp_path, "ranks", "--exit-on-int", srun=True)

    final = slurm.cancel(job.job_id, grace_s=30.0, poll_s=0.2, timeout_s=60)

    assert notes.read_text().splitlines()[1:] == ["INT"]
    assert final.exit_code == ExitCode.INTERRUPTED


def test_pending_job_reports_slurms_reason_and_chains_on_success(backend: SlurmBackend, tmp_path: Path) -> None:
    first, notes = _probe(backend, tmp_path, "first", "--exit-on-int")
    second = backend.launch(1, "infer", ["true"], _env(), cwd=tmp_path, log_path=tmp_path / "run.log", gpus=0,
                            dependency=first)

    assert backend.poll(second) == Pending("Dependency")
    assert run_state(backend.poll(second)) is RunState.WAITING
    slurm.cancel(first.job_id, grace_s=30.0, poll_s=0.2)  # exits 130: afterok can never be met

    result = _finished(backend, second)
    assert result.kind is FailureKind.INTERRUPTED and backend.poll(first) == Exited(ExitCode.INTERRUPTED)


def test_cancel_of_a_pending_job_is_immediate(backend: SlurmBackend, tmp_path: Path) -> None:
    held = slurm.submit(["true"], _env(), tmp_path, tmp_path / "run.log", "dialsum-0-held", 0,
                        SlurmSettings(gpus_per_stage=0, warn_s=0, time_limit="1", sbatch_options=["--hold"]))
    assert slurm.state(held).reason == "JobHeldUser"

    assert slurm.cancel(held, grace_s=60, poll_s=0.2, timeout_s=20).status == "CANCELLED"


HELD = SlurmSettings(gpus_per_stage=0, warn_s=0, time_limit="1", sbatch_options=["--hold"])


def _our_jobs(tmp_path: Path, job_name: str) -> list[str]:
    return [line.split("|")[0] for line in slurm._slurm(["squeue", "--me", "--noheader", "--format=%i|%k"]).stdout.splitlines()
            if line.split("|")[-1].strip() == slurm.job_comment(tmp_path, job_name)]


def test_a_stage_submitted_again_is_the_job_already_queued(backend: SlurmBackend, tmp_path: Path) -> None:
    first = slurm.submit(["true"], _env(), tmp_path, tmp_path / "run.log", "dialsum-3-train", 0, HELD)
    again = slurm.submit(["true"], _env(), tmp_path, tmp_path / "run.log", "dialsum-3-train", 0, HELD)
    other_workspace = tmp_path / "other"
    other_workspace.mkdir()
    elsewhere = slurm.submit(["true"], _env(), other_workspace, other_workspace / "run.log", "dialsum-3-train", 0, HELD)
    try:
        assert again == first and _our_jobs(tmp_path, "dialsum-3-train") == [first]
        assert elsewhere != first  # the same run id in another workspace is another run
    finally:
        for job in {first, elsewhere}:
            slurm.cancel(job, grace_s=60, poll_s=0.2, timeout_s=20)


def test_an_sbatch_that_answers_too_late_does_not_queue_the_stage_twice(
        backend: SlurmBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller queued the job, but sbatch's answer came after the worker stopped waiting:
    the submission finds that job instead of raising (the worker would then submit it again)."""
    slow = tmp_path / "bin"
    slow.mkdir()
    (slow / "sbatch").write_text(f"#!/bin/sh\n{shutil.which('sbatch')} \"$@\"\nexec sleep 30\n", encoding="utf-8")
    (slow / "sbatch").chmod(0o755)
    monkeypatch.setattr(slurm, "COMMAND_TIMEOUT_S", 2.0)
    env = _env(PATH=f"{slow}{os.pathsep}{os.environ['PATH']}")

    job = slurm.submit(["true"], env, tmp_path, tmp_path / "run.log", "dialsum-4-train", 0, HELD)
    try:
        assert _our_jobs(tmp_path, "dialsum-4-train") == [job]
        assert slurm.submit(["true"], env, tmp_path, tmp_path / "run.log", "dialsum-4-train", 0, HELD) == job
    finally:
        slurm.cancel(job, grace_s=60, poll_s=0.2, timeout_s=20)


def test_a_fresh_backend_adopts_a_running_job_by_id(backend: SlurmBackend, tmp_path: Path) -> None:
    job, notes = _probe(backend, tmp_path, "adopted", "--exit-on-int")
    ref = job.ref  # what the store keeps

    after_restart = SlurmBackend(CPU)
    adopted = after_restart.handle(ref)

    assert after_restart.adopt(adopted) == Running()
    assert after_restart.allocation(adopted).startswith("localhost: cpu=1,")
    wait_until(after_restart.stop(adopted, grace_s=30).advance, timeout=30, what="the adopted job to stop")
    assert after_restart.adopt(adopted) == Exited(ExitCode.INTERRUPTED)


def test_unknown_job_is_gone(backend: SlurmBackend) -> None:
    result = backend.poll(SlurmJob("987654321"))

    assert isinstance(result, Gone) and "no record" in result.detail
    assert run_state(result) is RunState.INTERRUPTED


def test_check_says_which_commands_answer(slurm_cluster: Path) -> None:
    ok, detail = slurm.available(CPU)

    assert ok, detail
    assert "sbatch: answers: slurm-wlm" in detail and "squeue: answers" in detail
    assert "sbatch --test-only: accepts" in detail
    wrong_partition = slurm.available(SlurmSettings(gpus_per_stage=0, partition="nosuchpartition"))
    assert wrong_partition[0] is False and "invalid partition" in wrong_partition[1].lower()
    no_gpus_here = slurm.available(SlurmSettings(gpus_per_stage=1))
    assert no_gpus_here[0] is False and "generic resource (gres)" in no_gpus_here[1]


def test_sbatch_refusal_is_a_launch_error_naming_the_setting(backend: SlurmBackend, tmp_path: Path) -> None:
    wrong = SlurmBackend(SlurmSettings(gpus_per_stage=0, partition="nosuchpartition"))

    with pytest.raises(slurm.LaunchError, match="invalid partition.*slurm"):
        wrong.launch(1, "train", ["true"], _env(), cwd=tmp_path, log_path=tmp_path / "run.log", gpus=0)


@pytest.mark.slow
def test_time_limit_is_a_timeout_with_the_hint(backend: SlurmBackend, tmp_path: Path) -> None:
    """Two one-minute jobs at once (Slurm enforces limits about once a minute): one ignores every
    signal but SIGKILL, so Slurm kills it (TIMEOUT); one stops on the warning SIGINT (exit 130)."""
    one_minute = SlurmSettings(gpus_per_stage=0, time_limit="1", warn_s=0)
    killed, _ = _probe(backend, tmp_path, "stuck", "--ignore-term", settings=one_minute)
    warned, notes = _probe(backend, tmp_path, "warned", "--exit-on-int",
                           settings=SlurmSettings(gpus_per_stage=0, time_limit="1", warn_s=30))

    by_slurm = _finished(backend, killed, timeout=180)
    by_warning = _finished(SlurmBackend(SlurmSettings(gpus_per_stage=0, time_limit="1", warn_s=30)), warned,
                           timeout=180)

    assert by_slurm.kind is FailureKind.TIMEOUT and "killed at the time limit (0:01:00)" in by_slurm.message
    assert by_warning.kind is FailureKind.TIMEOUT and "warning signal" in by_warning.message
    assert "INT" in notes.read_text()
    assert "raise slurm.time_limit" in FailureKind.TIMEOUT.hint
    assert run_state(by_slurm) is RunState.FAILED
