"""Provides the evidence that the host's OOM killer ended a stage, so a SIGKILL is called
``host_oom`` only when it is known, and ``killed`` otherwise.

Two sources, each read only where the system lets us: the cgroup v2 ``memory.events`` counter
``oom_kill`` of the stage's cgroup, recorded at launch and compared at the end (it counts kills in
the cgroup and below it), and the kernel log (``/dev/kmsg``, else ``dmesg``) naming the pid.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from dialsum_tui.manager import process

CGROUP_ROOT = Path("/sys/fs/cgroup")
KMSG = Path("/dev/kmsg")
KMSG_MAX_BYTES = 4 << 20  # the ring buffer is small; never read more than this


@dataclass(frozen=True)
class OomMark:
    """The stage's cgroup counter at launch (None where it cannot be read)."""

    events_path: Path | None
    oom_kills: int | None


def cgroup_events_path(pid: int, proc_root: Path = Path("/proc"), cgroup_root: Path = CGROUP_ROOT) -> Path | None:
    """The file with the ``oom_kill`` counter of ``pid``'s memory cgroup: v2 ``memory.events``, or on a
    v1/hybrid host ``memory.oom_control`` (same ``oom_kill N`` line); None when there is none to read."""
    try:
        lines = (proc_root / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _id, _, rest = line.partition(":")
        controllers, _, where = rest.partition(":")
        where = where.strip().lstrip("/")
        if controllers == "":  # the unified (v2) hierarchy, mounted at the root or under unified/
            candidates += [cgroup_root / where / "memory.events", cgroup_root / "unified" / where / "memory.events"]
        elif "memory" in controllers.split(","):
            candidates.append(cgroup_root / "memory" / where / "memory.oom_control")
    return next((path for path in candidates if oom_kills(path) is not None), None)


def oom_kills(events_path: Path | None) -> int | None:
    """The ``oom_kill`` counter of a ``memory.events`` file (None if unreadable or absent)."""
    if events_path is None:
        return None
    try:
        text = events_path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


def mark(pid: int, events_path: Path | None = None) -> OomMark:
    """Record the counter when a stage starts (``events_path`` injected by tests)."""
    path = events_path if events_path is not None else cgroup_events_path(pid)
    return OomMark(path, oom_kills(path))


def _kernel_log() -> str:
    try:
        fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        fd = None
    if fd is not None:
        # /dev/kmsg returns one record per read and EAGAIN at the end of the buffer.
        records, size = [], 0
        try:
            while size < KMSG_MAX_BYTES:
                try:
                    chunk = os.read(fd, 8192)
                except BlockingIOError:
                    break
                except OSError:  # EPIPE: a record was overwritten while we read; go on
                    continue
                if not chunk:
                    break
                records.append(chunk.decode("utf-8", "replace"))
                size += len(chunk)
        finally:
            os.close(fd)
        return "".join(records)
    try:
        done = process.run_command(["dmesg"], timeout=5)
    except (OSError, process.CommandTimeout):
        return ""
    return done.stdout if done.returncode == 0 else ""


_KMSG_RECORD = re.compile(r"^\d+,\d+,(\d+),[^;]*;")  # /dev/kmsg: "prio,seq,usec since boot,flags;message"


def kernel_names(pid: int, log_text: str | None = None, since_boot_s: float | None = None) -> str | None:
    """The kernel log line saying the OOM killer killed ``pid``, if the log is readable and has one.

    Args:
        since_boot_s: skip /dev/kmsg records older than this (seconds since boot): an old kill of a
            process that had the same pid is not evidence.
    """
    text = _kernel_log() if log_text is None else log_text
    pattern = re.compile(rf"(Out of memory|oom[-_]kill|Memory cgroup out of memory).*\bpid[= ]?{pid}\b"
                         rf"|Killed process {pid}\b", re.IGNORECASE)
    for line in text.splitlines():
        stamp = _KMSG_RECORD.match(line)
        if since_boot_s is not None and stamp and int(stamp.group(1)) / 1e6 < since_boot_s:
            continue
        if pattern.search(line):
            return line.strip()
    return None


def evidence(start: OomMark | None, pid: int, log_text: str | None = None,
             since_boot_s: float | None = None) -> str | None:
    """Why we believe the OOM killer ended the stage started as ``start``, or None when nothing says so.

    Args:
        start: the counter recorded at launch (None: unknown, e.g. a re-adopted stage).
        pid: the stage process.
        log_text: the kernel log to search (tests); read from the system otherwise.
        since_boot_s: when the stage started, in seconds since boot (older kernel records are skipped).
    """
    if start is not None and start.oom_kills is not None:
        now = oom_kills(start.events_path)
        if now is not None and now > start.oom_kills:
            return f"the cgroup's oom_kill counter rose from {start.oom_kills} to {now} ({start.events_path})"
    line = kernel_names(pid, log_text, since_boot_s)
    return f"kernel log: {line[:300]}" if line else None


def sigkill_evidence(start: OomMark | None, stage: process.Identity, exit_code: int | None) -> str | None:
    """:func:`evidence` for a stage that ended by SIGKILL; None for any other end (nothing to explain)."""
    if exit_code not in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return None
    return evidence(start, stage.pid, since_boot_s=process.seconds_since_boot(stage.start_time))
