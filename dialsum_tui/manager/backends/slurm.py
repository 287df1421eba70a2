"""Provides the Slurm backend: each stage is one ``sbatch`` job, its state comes from Slurm, and a
cancel is ``scancel`` (the protocol is in :mod:`dialsum_tui.manager.backends.protocol`).

Slurm schedules; we only submit, ask and cancel. Every command runs as an argv list with a
timeout; a missing command or a controller that does not answer raises :class:`SlurmError`
(a :class:`BackendUnavailable`), never a wrong verdict.

Where the state comes from, in order: ``scontrol show job`` (pending, running, and finished jobs
for ``MinJobAge`` seconds, with the exit code), ``sacct`` where accounting is on (slurmdbd), and
the job completion file where ``JobCompType=jobcomp/filetxt`` (the test cluster). A job none of
them knows is :class:`Gone`.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dialsum_tui.manager import process
from dialsum_tui.manager.backends.protocol import BackendUnavailable, LaunchError, Poll
from dialsum_tui.manager.backends.slurm_state import (
    PENDING_STATES,
    JobState,
    job_state,
    jobcomp_record,
    parse_record,
    sacct_record,
    to_poll,
)
from dialsum_tui.manager.runs.models import Run, parse_gpus
from dialsum_tui.manager.workspace.sections import SlurmSettings
from engine.contract import Stage

__all__ = ["SlurmBackend", "SlurmError", "SlurmJob", "SlurmSettings", "available", "cancel", "state", "submit"]

COMMAND_TIMEOUT_S = 30.0  # a controller that takes longer is treated as unavailable for this tick
SCRIPT_SUFFIX = ".sbatch"


class SlurmError(BackendUnavailable):
    """A Slurm command is missing, timed out or failed; the message names the command and its output."""


def _slurm(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = COMMAND_TIMEOUT_S,
           check: bool = True) -> process.Completed[str]:
    """Run one Slurm command (argv, no shell) and return its result; stdout and stderr as text."""
    if shutil.which(argv[0], path=(env or os.environ).get("PATH")) is None:
        raise SlurmError(f"`{argv[0]}` not found on PATH: install the Slurm client (Debian: slurm-client) "
                         "or set backend: local")
    try:
        done = process.run_command(argv, env=env, timeout=timeout)
    except process.CommandTimeout:
        raise SlurmError(f"`{shlex.join(argv)}` did not answer within {timeout:.0f} s (is slurmctld up?)") from None
    except OSError as err:
        raise SlurmError(f"`{shlex.join(argv)}` could not run: {err}") from None
    if check and done.returncode != 0:
        raise SlurmError(f"`{shlex.join(argv)}` failed (exit {done.returncode}): {_said(done)}")
    return done


def _said(done: process.Completed[str]) -> str:
    return (done.stderr.strip() or done.stdout.strip() or "no output").replace("\n", " | ")[:500]


# --- submit -----------------------------------------------------------------------------------


def batch_script(argv: Sequence[str], srun: bool, gpus: int) -> str:
    """The job script: ``exec`` of the stage command, so Slurm's signals reach the engine itself.

    Multi-rank stages run under ``srun`` (one task on one node; ``accelerate launch`` inside starts
    the ranks), which puts them in a job step: Slurm then signals and accounts them as one.
    """
    command = list(argv)
    if srun:
        command = ["srun", "--ntasks=1", "--nodes=1", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
                   *([f"--gres=gpu:{gpus}"] if gpus else []), *command]
    return ("#!/bin/sh\n"
            "# Written by dialsum-tui (dialsum_tui/manager/slurm.py); sbatch keeps its own copy.\n"
            f"exec {shlex.join(command)}\n")


def sbatch_argv(script: Path, *, cwd: Path, log_path: Path, job_name: str, gpus: int, settings: SlurmSettings,
                dependency: str | None = None, srun: bool = False) -> list[str]:
    """The ``sbatch`` command line for one stage (no shell: every value is its own argument)."""
    argv = ["sbatch", "--parsable", f"--job-name={job_name}", f"--comment={job_comment(cwd, job_name)}",
            f"--output={log_path}", "--open-mode=append", f"--chdir={cwd}", "--export=ALL", "--nodes=1", "--ntasks=1",
            f"--time={settings.time_limit}"]
    if settings.partition:
        argv.append(f"--partition={settings.partition}")
    if settings.account:
        argv.append(f"--account={settings.account}")
    if settings.cpus_per_task:
        argv.append(f"--cpus-per-task={settings.cpus_per_task}")
    if gpus >= 1:  # a GRES of 0 GPUs is an error on clusters without GPUs: CPU stages ask for none
        argv.append(f"--gres=gpu:{gpus}")
    if settings.warn_s:
        # B: signals the batch shell, which exec made the engine; under srun the step holds the ranks.
        argv.append(f"--signal={'' if srun else 'B:'}INT@{settings.warn_s}")
    if dependency:
        # A failed predecessor cancels this job instead of leaving it pending for ever.
        argv += [f"--dependency=afterok:{dependency}", "--kill-on-invalid-dep=yes"]
    return [*argv, *settings.sbatch_options, str(script)]


def job_comment(cwd: Path, job_name: str) -> str:
    """The mark (``sbatch --comment``) that names a job as this workspace's run and stage.

    A run's stage is submitted once, so the mark finds the job of a submission whose answer was
    lost (sbatch timed out after the controller had queued it) instead of queueing it twice.
    """
    workspace = hashlib.sha1(str(Path(cwd).resolve()).encode()).hexdigest()[:12]
    return f"dialsum:{workspace}:{job_name}"


def queued_job(comment: str) -> str | None:
    """The id of our pending or running job marked ``comment``, if there is one.

    Raises:
        SlurmError: squeue is missing or did not answer.
    """
    done = _slurm(["squeue", "--me", "--noheader", "--format=%i|%k"])
    for line in done.stdout.splitlines():
        job_id, _, mark = line.partition("|")
        if mark.strip() == comment and job_id.strip().isdigit():
            return job_id.strip()
    return None


def submit(argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path, job_name: str, gpus: int,
           settings: SlurmSettings, dependency: str | None = None, srun: bool | None = None) -> str:
    """Submit one stage as an ``sbatch`` job and return its job id.

    Args:
        argv: the stage command, as the local backend would run it.
        env: the job's environment (``--export=ALL`` of sbatch's own); ``CUDA_VISIBLE_DEVICES`` is
            dropped because Slurm sets it from ``--gres``.
        cwd: the job's working directory (the workspace root, on the shared filesystem).
        log_path: ``run.log``; the job appends to it, as a local stage does.
        job_name: e.g. ``dialsum-12-train``; the job script is written next to the log under this name.
        gpus: GPUs for the stage (0 = a CPU stage, no ``--gres``).
        settings: the workspace's ``slurm:`` settings.
        dependency: a job id that must end COMPLETED first (``afterok``); the job waits as pending.
        srun: run the command under ``srun`` (default: when ``gpus`` > 1, i.e. ranks).

    Raises:
        LaunchError: sbatch refused the job (its message says why: partition, account, time limit).
        SlurmError: sbatch is missing or did not answer, and squeue shows no job of this submission.
    """
    comment = job_comment(cwd, job_name)
    earlier = queued_job(comment)  # an earlier try whose answer was lost: that job is this stage
    if earlier is not None:
        return earlier
    srun = gpus > 1 if srun is None else srun
    log_path.parent.mkdir(parents=True, exist_ok=True)
    script = log_path.parent / f"{job_name}{SCRIPT_SUFFIX}"
    tmp = script.with_name(script.name + ".tmp")
    tmp.write_text(batch_script(argv, srun, gpus), encoding="utf-8")
    tmp.chmod(0o700)
    os.replace(tmp, script)
    job_env = {k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"}
    command = sbatch_argv(script, cwd=cwd, log_path=log_path, job_name=job_name, gpus=gpus, settings=settings,
                          dependency=dependency, srun=srun)
    try:
        done = _slurm(command, env=job_env, check=False, timeout=COMMAND_TIMEOUT_S)
    except SlurmError:
        queued = queued_job(comment)  # no answer does not mean not queued
        if queued is not None:
            return queued
        raise
    if done.returncode != 0:
        raise LaunchError(f"sbatch refused {job_name}: {_said(done)} (settings: slurm.* in .dialsum/settings.yaml)")
    job_id = done.stdout.strip().split(";")[0]  # --parsable prints "id" or "id;cluster"
    if not job_id.isdigit():
        raise LaunchError(f"sbatch printed no job id for {job_name}: {_said(done)}")
    return job_id


# --- state --------------------------------------------------------------------------------------


def state(job_id: str) -> JobState:
    """Slurm's view of one job: scontrol, then sacct, then the job completion file.

    Raises:
        SlurmError: the controller did not answer (never reported as a gone job).
    """
    done = _slurm(["scontrol", "show", "job", "--oneliner", job_id], check=False)
    if done.returncode == 0 and "JobId=" in done.stdout:
        return job_state(parse_record(done.stdout.splitlines()[0]), "scontrol")
    if "Invalid job id" not in done.stderr:
        raise SlurmError(f"`scontrol show job {job_id}` failed (exit {done.returncode}): {_said(done)}")
    found = sacct_record(_sacct(job_id)) or jobcomp_record(_jobcomp_file(), job_id)
    return found or JobState("GONE", reason="no record in scontrol, sacct or the job completion file")


def _sacct(job_id: str) -> str:
    done = _slurm(["sacct", "--jobs", job_id, "--allocations", "--noheader", "--parsable2",
                   "--format=JobIDRaw,State,ExitCode,ElapsedRaw,TimelimitRaw,Reason"], check=False)
    return done.stdout if done.returncode == 0 else ""  # accounting off: "Slurm accounting storage is disabled"


_JOBCOMP: dict[str, Path | None] = {}


def _jobcomp_file() -> Path | None:
    """The controller's job completion file, if it writes one (asked once per process and cluster).

    Only the path is cached: the file appears with the first finished job, and it may be unreadable
    from this host, in which case :func:`jobcomp_record` finds nothing.
    """
    conf = os.environ.get("SLURM_CONF", "")
    if conf not in _JOBCOMP:
        done = _slurm(["scontrol", "show", "config"])
        values = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in done.stdout.splitlines())}
        loc = values.get("JobCompLoc", "")
        filetxt = values.get("JobCompType") == "jobcomp/filetxt"
        _JOBCOMP[conf] = Path(loc) if filetxt and loc.startswith("/") else None
    return _JOBCOMP[conf]


# --- cancel -------------------------------------------------------------------------------------


@dataclass
class SlurmStop:
    """Non-blocking cancel of one job: SIGINT to the engine first, ``scancel`` after ``grace_s``.

    ``scancel`` itself is Slurm's full stop (SIGCONT + SIGTERM, then SIGKILL after KillWait), and
    Slurm tracks every process of the job, so no process-tree walk is needed.
    """

    job_id: str
    grace_s: float = 30.0
    interrupted_at: float | None = None
    cancelled: bool = False

    def advance(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        current = state(self.job_id)
        if not current.active:
            return True
        if current.status in PENDING_STATES and not self.cancelled:
            self._scancel()  # nothing to interrupt yet; a pending job cannot even be signalled
        elif self.interrupted_at is None:
            # Steps (srun ranks) and the batch shell (the exec'd engine) are signalled separately:
            # --full does not reach srun's step here, and a step signal misses the batch shell.
            _slurm(["scancel", "--signal=INT", self.job_id], check=False)
            _slurm(["scancel", "--signal=INT", "--batch", self.job_id], check=False)
            self.interrupted_at = now
        elif not self.cancelled and now - self.interrupted_at >= self.grace_s:
            self._scancel()
        return False

    def _scancel(self) -> None:
        _slurm(["scancel", self.job_id])
        self.cancelled = True


def cancel(job_id: str, grace_s: float = 30.0, poll_s: float = 0.5, timeout_s: float = 600.0) -> JobState:
    """Cancel a job and wait until Slurm says it ended; returns its final state.

    Raises:
        SlurmError: a command failed, or the job still runs ``timeout_s`` seconds later.
    """
    stopper = SlurmStop(job_id, grace_s)
    deadline = time.monotonic() + timeout_s
    while not stopper.advance():
        if time.monotonic() > deadline:
            raise SlurmError(f"job {job_id} still active {timeout_s:.0f} s after the cancel")
        time.sleep(poll_s)
    return state(job_id)


# --- check --------------------------------------------------------------------------------------


def available(settings: SlurmSettings | None = None) -> tuple[bool, str]:
    """Whether this host can use the cluster, for ``dialsum-tui check``: one line per command.

    sbatch and squeue must answer; with ``settings``, ``sbatch --test-only`` also validates the
    partition, account and time limit. sacct is optional (without accounting, finished jobs are read
    from scontrol and the job completion file).
    """
    lines, ok = [], True
    checks = [("sbatch", ["sbatch", "--version"]), ("squeue", ["squeue", "--noheader", "--me", "--format=%i"]),
              ("sacct", ["sacct", "--noheader", "--allocations", "--starttime=now", "--format=JobID"])]
    for name, argv in checks:
        try:
            done = _slurm(argv, timeout=10.0)
            lines.append(f"{name}: answers{': ' + done.stdout.strip() if name == 'sbatch' else ''}")
        except SlurmError as err:
            required = name != "sacct"
            ok = ok and not required
            lines.append(f"{name}: {err}" + ("" if required else " (optional: states come from scontrol)"))
    if ok and settings is not None:
        test = sbatch_argv(Path("/dev/null"), cwd=Path.cwd(), log_path=Path("/dev/null"), job_name="dialsum-check",
                           gpus=settings.gpus_per_stage, settings=settings)
        test = [*test[:-1], "--test-only", "--wrap=true"]
        done = _slurm(test, timeout=10.0, check=False)
        ok = done.returncode == 0
        lines.append(f"sbatch --test-only: {'accepts' if ok else 'refuses'} the slurm settings: {_said(done)}")
    return ok, "\n".join(lines)


# --- the backend --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlurmJob:
    """A stage's handle on Slurm: the job id, which is also what the store keeps."""

    job_id: str

    @property
    def ref(self) -> str:
        return self.job_id


class SlurmBackend:
    """The :class:`~dialsum_tui.manager.backends.protocol.Backend` that hands stages to ``sbatch``."""

    name = "slurm"
    places_devices = False  # Slurm picks the devices from --gres and sets CUDA_VISIBLE_DEVICES itself

    def __init__(self, settings: SlurmSettings):
        self.settings = settings

    def gpu_request(self, gpus: str | None, stage: str) -> int | None:
        """``--gres=gpu:N`` for a stage: ``gpus`` is a count on Slurm (a list counts its entries);
        none is ``slurm.gpus_per_stage``. Only train uses several; infer and evaluate at most one."""
        items = parse_gpus(gpus)
        count = self.settings.gpus_per_stage if not items else items[0] if len(items) == 1 else len(items)
        return count if stage == Stage.TRAIN else min(count, 1)

    def handle_of(self, run: Run) -> SlurmJob | None:
        return SlurmJob(str(run.job_id)) if run.job_id else None

    def may_still_run(self, handle: SlurmJob) -> bool:
        return True  # Slurm holds the job: the next poll says how it is

    def find_unrecorded(self, run: Run) -> SlurmJob | None:
        return None  # a submission whose answer was lost is found at the next submit, by its --comment mark

    def stop_now(self, handle: SlurmJob, grace_s: tuple[float, float]) -> str:
        try:
            final = cancel(handle.job_id, grace_s=grace_s[0])
        except SlurmError as err:
            raise BackendUnavailable(f"could not cancel Slurm job {handle.job_id}: {err}") from None
        return f"Slurm job {handle.job_id} was cancelled here (scancel; Slurm says {final.status})"

    def gone(self) -> SlurmJob | None:
        return None  # without a job id there is nothing to judge: the next submit finds a lost one by its mark

    def launch(self, run_id: int, stage: str, argv: Sequence[str], env: Mapping[str, str], *, cwd: Path,
               log_path: Path, gpus: int, dependency: SlurmJob | None = None) -> SlurmJob:
        job_id = submit(argv, env, cwd, log_path, f"dialsum-{run_id}-{stage}", gpus, self.settings,
                        dependency=dependency.job_id if dependency else None)
        return SlurmJob(job_id)

    def handle(self, ref: str) -> SlurmJob:
        if not ref.isdigit():
            raise ValueError(f"not a Slurm job id: {ref!r}")
        return SlurmJob(ref)

    def poll(self, handle: SlurmJob) -> Poll:
        return to_poll(state(handle.job_id), self.settings.warn_s)

    def stop(self, handle: SlurmJob, grace_s: float | tuple[float, ...]) -> SlurmStop:
        # The worker's grace is (after SIGINT, after SIGTERM); Slurm's KillWait does the second part.
        return SlurmStop(handle.job_id, grace_s[0] if isinstance(grace_s, tuple) else grace_s)

    def adopt(self, handle: SlurmJob) -> Poll:
        # Slurm, not this process, holds the job: a fresh backend sees exactly what the old one did.
        return self.poll(handle)

    def allocation(self, handle: SlurmJob) -> str | None:
        """What the job was given, for the GPU panel (the NVML guard is off on Slurm), e.g.
        ``"gpu-07: cpu=8,mem=64G,node=1,gres/gpu=2"``; None while it has nothing."""
        job = state(handle.job_id)
        return f"{job.nodes}: {job.tres}" if job.nodes and job.tres else None

