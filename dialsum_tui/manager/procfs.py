"""Provides read-only /proc look-ups: whether a pid is alive or a zombie, whose process it is (user,
container), its process group, the pid namespace map, and which processes hold ``/dev/nvidia*``
open (a forked DataLoader child pins GPU memory after its parent died). Nothing here signals.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterable
from pathlib import Path

import psutil

# Process states seen by :func:`pid_state`.
ALIVE = "alive"
ZOMBIE = "zombie"
GONE = "gone"


# --- who holds the GPU memory: /proc inspection --------------------------------------------------


def pid_state(pid: int) -> str:
    """Return ALIVE, ZOMBIE or GONE for a pid in our pid namespace."""
    try:
        status = psutil.Process(pid).status()
    except (psutil.NoSuchProcess, ValueError):
        return GONE
    except psutil.AccessDenied:
        return ALIVE
    return ZOMBIE if status == psutil.STATUS_ZOMBIE else ALIVE


def is_stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped by a signal (SIGSTOP, Ctrl-Z) or a tracer: alive, yet doing nothing."""
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def current_user() -> str:
    """Return the name of the Unix user running this process (the uid's passwd entry, else the uid)."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a container user with no passwd entry: the uid still says who
        return str(uid)


def process_uids(pid: int) -> tuple[int, int, int] | None:
    """(real, effective, saved) uid of a process; None when it is gone or not visible."""
    try:
        uids = psutil.Process(pid).uids()
    except (psutil.Error, ValueError):
        return None
    return uids.real, uids.effective, uids.saved


def user_name(uid: int) -> str:
    """The passwd name of ``uid`` (the number itself when it has none)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def process_identity(pid: int) -> tuple[str, str]:
    """Return (name, user) of a visible process, ("", "") when it is not visible here."""
    try:
        proc = psutil.Process(pid)
        name = proc.name()
    except (psutil.Error, ValueError):
        return "", ""
    try:
        user = proc.username()
    except (psutil.Error, KeyError):
        user = ""
    return name, user


# A cgroup path of a container names its runtime and id: docker-<64 hex>.scope, /docker/<hex>,
# cri-containerd-<hex>, /kubepods/.../<hex>, libpod-<hex>. Twelve characters are what `docker ps` shows.
_RUNTIMES = ("docker", "containerd", "libpod", "crio", "kubepods", "lxc")
_HEX_ID = re.compile(r"[0-9a-f]{12,64}")


def process_container(pid: int, proc_root: Path = Path("/proc")) -> str:
    """Return a short label of the container ``pid`` runs in, "" when none is visible.

    The runtime's id comes from ``/proc/<pid>/cgroup``; failing that, an ``NSpid`` line with
    several levels means the process lives in a nested pid namespace ("pid 12 inside").
    """
    try:
        cgroup = (proc_root / str(pid) / "cgroup").read_text()
    except OSError:
        return ""
    for line in cgroup.splitlines():
        ids = _HEX_ID.findall(line) if any(name in line for name in _RUNTIMES) else []
        if ids:
            return f"container {max(ids, key=len)[:12]}"
    try:
        status = (proc_root / str(pid) / "status").read_text()
    except OSError:
        return ""
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            levels = line.split()[1:]
            return f"container (pid {levels[-1]} inside)" if len(levels) > 1 else ""
    return ""


def process_group(pid: int) -> int | None:
    """Return the process-group id of ``pid`` (our runs lead their own group), None if gone."""
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def pids_with_environ(name: str, value: str, proc_root: Path = Path("/proc")) -> list[int]:
    """The pids whose environment holds ``name=value`` (processes we cannot read are skipped).

    A restarted worker finds a stage it launched but never recorded by the token it put in the
    stage's environment (``worker.launching``); the stage's children inherit it too.
    """
    wanted = f"{name}={value}".encode()
    found = []
    for entry in _numeric_dirs(proc_root):
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if wanted in environ.split(b"\0"):
            found.append(int(entry.name))
    return sorted(found)


def ns_pid_map(proc_root: Path = Path("/proc")) -> dict[int, int]:
    """Map pids of nested pid namespaces to our local pids, from ``/proc/<pid>/status`` NSpid.

    NVML reports pids of the namespace the driver sees. Where that namespace is visible to us
    (our /proc shows NSpid with several levels), this maps any level's pid to the local one.
    From inside a container the host level is not visible; the guard then says so.
    """
    mapping: dict[int, int] = {}
    for entry in _numeric_dirs(proc_root):
        try:
            text = (entry / "status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("NSpid:"):
                levels = [int(x) for x in line.split()[1:]]
                for ns_pid in levels[1:]:
                    mapping.setdefault(ns_pid, levels[0])
                break
    return mapping


def nvidia_device_holders(proc_root: Path = Path("/proc")) -> dict[int, set[str]]:
    """Return local pids that have a ``/dev/nvidia*`` file open, with the device paths.

    This finds the real holder when NVML lists a dead or zombie pid: a forked-not-exec'd child
    (DataLoader worker) keeps the CUDA context alive after its parent died. Processes we may not
    inspect are skipped silently (another user's fds are private).
    """
    holders: dict[int, set[str]] = {}
    for entry in _numeric_dirs(proc_root):
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("/dev/nvidia"):
                holders.setdefault(int(entry.name), set()).add(target)
    return holders


def _numeric_dirs(proc_root: Path) -> Iterable[Path]:
    try:
        return [p for p in proc_root.iterdir() if p.name.isdigit()]
    except OSError:
        return []
