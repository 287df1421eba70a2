"""Provides what the Slurm backend knows without running a command: the ``slurm:`` settings, the
parsing of ``scontrol``/``sacct``/job completion records, and their mapping onto poll results and
failure kinds. Pure functions, tested without a cluster.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dialsum_tui.manager.backends.protocol import Exited, Gone, Pending, Poll, Running
from engine.contract import ExitCode, FailureKind

# --- job records --------------------------------------------------------------------------------

PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESIZING",
                            "SUSPENDED", "STOPPED"})
LOST_STATES = frozenset({"NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "GONE"})


@dataclass(frozen=True)
class JobState:
    """One job as Slurm reports it.

    ``status`` is Slurm's state word (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT,
    OUT_OF_MEMORY, NODE_FAIL, …) or GONE; ``exit_code`` follows subprocess (negative = killed by that
    signal); ``source`` says which command answered.
    """

    status: str
    reason: str | None = None
    exit_code: int | None = None
    run_s: float | None = None
    limit_s: float | None = None
    source: str = ""
    nodes: str | None = None  # where it runs or ran, for the GPU panel: "gpu-07"
    tres: str | None = None  # what it was given: "cpu=8,mem=64G,node=1,gres/gpu=2"

    @property
    def active(self) -> bool:
        return self.status in PENDING_STATES or self.status in RUNNING_STATES


_FIELD = re.compile(r"(?:^|\s)([A-Za-z][\w/:]*)=")


def parse_record(line: str) -> dict[str, str]:
    """``Key=value Key2=value with spaces …`` (scontrol --oneliner, jobcomp/filetxt) → dict."""
    keys = list(_FIELD.finditer(line))
    out = {}
    for here, after in zip(keys, [*keys[1:], None], strict=True):
        out[here.group(1)] = line[here.end():after.start() if after else len(line)].strip()
    return out


def parse_exit_code(value: str | None) -> int | None:
    """Slurm's ``code:signal`` → subprocess's convention (``"3:0"`` → 3, ``"0:9"`` → -9)."""
    if not value or ":" not in value:
        return None
    code, _, sig = value.partition(":")
    if not (code.isdigit() and sig.isdigit()):
        return None
    return -int(sig) if int(sig) else int(code)


def parse_duration(value: str | None) -> float | None:
    """``[D-]HH:MM:SS`` / ``MM:SS`` as scontrol prints them → seconds; None for UNLIMITED or junk."""
    if not value or not re.match(r"^(\d+-)?\d+(:\d+){0,2}$", value):
        return None
    days, _, clock = value.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def _state_word(value: str | None) -> str:
    return (value or "UNKNOWN").split()[0].rstrip("+")  # sacct: "CANCELLED by 0", "RUNNING+" (federation)


def _reason(value: str | None) -> str | None:
    return None if value in (None, "", "None", "(null)") else value


def job_state(record: dict[str, str], source: str) -> JobState:
    """A JobState from one ``scontrol show job`` record."""
    return JobState(_state_word(record.get("JobState")), _reason(record.get("Reason")),
                    parse_exit_code(record.get("ExitCode")), parse_duration(record.get("RunTime")),
                    parse_duration(record.get("TimeLimit")), source, _reason(record.get("NodeList")),
                    _reason(record.get("AllocTRES") or record.get("TRES")))


def sacct_record(text: str) -> JobState | None:
    """The job's line of ``sacct --parsable2 -o JobIDRaw,State,ExitCode,ElapsedRaw,TimelimitRaw,Reason``."""
    for line in text.splitlines():
        cols = line.split("|")
        if len(cols) >= 6 and cols[0].isdigit():
            limit = int(cols[4]) * 60.0 if cols[4].isdigit() else None  # TimelimitRaw is in minutes
            run = float(cols[3]) if cols[3].isdigit() else None
            return JobState(_state_word(cols[1]), _reason(cols[5]), parse_exit_code(cols[2]), run, limit, "sacct")
    return None


def _stamp(value: str | None) -> float | None:
    try:
        return datetime.fromisoformat(value).timestamp() if value else None
    except ValueError:
        return None


def jobcomp_record(path: Path | None, job_id: str) -> JobState | None:
    """The job's last line in a ``jobcomp/filetxt`` file (a requeued job has several)."""
    if path is None:
        return None
    prefix = f"JobId={job_id} "
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = [line for line in fh if line.startswith(prefix)]
    except OSError:
        return None
    if not lines:
        return None
    record = parse_record(lines[-1])
    start, end = _stamp(record.get("StartTime")), _stamp(record.get("EndTime"))
    limit = record.get("TimeLimit", "")
    limit_s = int(limit) * 60.0 if limit.isdigit() else parse_duration(limit)  # minutes in this file
    return JobState(_state_word(record.get("JobState")), None, parse_exit_code(record.get("ExitCode")),
                    end - start if start is not None and end is not None else None, limit_s, "jobcomp")


# --- onto the protocol --------------------------------------------------------------------------


def _stopped_by_warning(job: JobState, warn_s: int) -> bool:
    """Whether a job that ended on SIGINT did so because of the time-limit warning (``warn_s``).

    The engine saves and exits 130 on that SIGINT, so Slurm records FAILED rather than TIMEOUT.
    Slurm may send the warning up to a minute early, hence the extra 60 s.
    """
    if not warn_s or job.limit_s is None or job.run_s is None:
        return False
    interrupted = job.exit_code in (ExitCode.INTERRUPTED, -signal.SIGINT, -signal.SIGTERM)
    return interrupted and job.run_s >= job.limit_s - warn_s - 60


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def to_poll(job: JobState, warn_s: int = 0) -> Poll:
    """Map Slurm's view of a job onto the backend protocol (and so onto run states and failure kinds)."""
    status = job.status
    if status in PENDING_STATES:
        return Pending(job.reason or status.capitalize())
    if status in RUNNING_STATES:
        return Running(None if status == "RUNNING" else f"Slurm: {status}")
    if status in LOST_STATES:
        return Gone(f"Slurm: {status}" + (f" ({job.reason})" if job.reason else ""))
    if status in ("TIMEOUT", "DEADLINE") or (status == "FAILED" and _stopped_by_warning(job, warn_s)):
        how = "stopped by its warning signal before" if status == "FAILED" else "killed at"
        return Exited(job.exit_code, FailureKind.TIMEOUT,
                      f"Slurm {how} the time limit ({_clock(job.limit_s)}) after {_clock(job.run_s)}")
    if status == "OUT_OF_MEMORY":
        return Exited(job.exit_code, FailureKind.HOST_OOM, "Slurm: the job exceeded its memory allocation "
                      "(OUT_OF_MEMORY); raise --mem in slurm.sbatch_options or lower what the stage keeps in memory")
    if status == "CANCELLED":
        return Exited(job.exit_code, FailureKind.INTERRUPTED, "Slurm: the job was cancelled (scancel)")
    return Exited(job.exit_code if status != "COMPLETED" else (job.exit_code or 0))
