"""Provides the free-space guard: every filesystem a run writes to (the store's, its run
directory's, its checkpoints' and submissions') must be writable and keep room for what the stage
will write, besides the quota. A full disk and a filesystem remounted read-only are different
faults with different fixes, so each problem says which it is and where.

The quota (:mod:`~dialsum_tui.manager.guards.disk`) counts the team's bytes against a limit the
server enforces; this guard asks the filesystem itself (``statvfs``), which a quota never sees:
another user filling the same volume, or ext4 going read-only after an I/O error.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.contract import FULL_FILESYSTEM_HINT, READ_ONLY_HINT
from engine.units import format_bytes, gb_to_bytes

if TYPE_CHECKING:
    from dialsum_tui.manager.workspace.layout import Workspace
    from engine.config import RunConfig


@dataclass(frozen=True)
class FilesystemProblem:
    """A filesystem a run writes to that cannot take its writes now."""

    path: Path  # the directory the run writes to (the first one named on that filesystem)
    read_only: bool
    free_bytes: int
    need_bytes: int

    @property
    def message(self) -> str:
        if self.read_only:
            return f"the filesystem of {self.path} is read-only"
        return f"the filesystem of {self.path} is full: {format_bytes(self.free_bytes)} free, " \
               f"{format_bytes(self.need_bytes)} needed"

    @property
    def hint(self) -> str:
        """What to do about it (the kind's generic hint speaks of the quota, which is not this)."""
        return (READ_ONLY_HINT if self.read_only else FULL_FILESYSTEM_HINT).format(path=self.path)


def _existing(path: Path) -> Path:
    """The nearest existing directory at or above ``path`` (a run's dirs may not exist yet)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def filesystem_problems(paths: Iterable[Path], need_bytes: int = 0, floor_bytes: int = 0,
                        need_on: Path | None = None) -> list[FilesystemProblem]:
    """The filesystems among ``paths`` that are read-only or short of room, one problem each.

    Args:
        paths: directories a run writes to (checked where they exist, else their nearest parent).
        need_bytes: what the stage will write on the filesystem of ``need_on`` (its checkpoints).
        floor_bytes: the room every filesystem must keep besides (logs, events, the store's WAL).
        need_on: the directory ``need_bytes`` goes to; None: the first of ``paths``.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        return []
    need_on = need_on or paths[0]
    need_dev = _device(_existing(need_on))
    problems: list[FilesystemProblem] = []
    seen: set[int] = set()
    for path in paths:
        here = _existing(path)
        dev = _device(here)
        if dev in seen:
            continue
        seen.add(dev)
        try:
            st = os.statvfs(here)
        except OSError:
            continue  # gone meanwhile: the run's own errors will say so
        free = st.f_bavail * st.f_frsize
        need = floor_bytes + (need_bytes if dev == need_dev else 0)
        read_only = bool(st.f_flag & os.ST_RDONLY) or _refuses_writes(here)
        if read_only or free < need:  # named by where the stage's bytes go, when they go there
            problems.append(FilesystemProblem(need_on if dev == need_dev else path, read_only, free, need))
    return problems


def _refuses_writes(directory: Path) -> bool:
    """Whether creating a file in ``directory`` fails as on a read-only filesystem.

    ext4 with ``errors=remount-ro`` goes read-only after an I/O error without the mount's flags
    saying so (statvfs still reports it writable), so only a write tells.
    """
    probe = directory / f".dialsum-write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    except OSError as err:
        return err.errno == errno.EROFS
    os.close(fd)
    try:
        probe.unlink()
    except OSError:
        pass
    return False


def _device(path: Path) -> int:
    try:
        return path.stat().st_dev
    except OSError:
        return -1


def run_write_dirs(ws: Workspace, run_id: int, cfg: RunConfig | None) -> list[Path]:
    """Where a run writes: the store's directory, its run directory, then its checkpoints and
    submissions (the checkpoints first among those, where a train stage's bytes go)."""
    dirs = [ws.state_dir, ws.run_dir(run_id)]
    if cfg is not None:
        dirs[1:1] = [ws.resolve(cfg.paths.checkpoints)]
        dirs.append(ws.resolve(cfg.paths.submissions))
    return dirs


def stage_space_problem(ws: Workspace, run_id: int, cfg: RunConfig | None, need_bytes: int,
                        floor_gb: float) -> FilesystemProblem | None:
    """The first filesystem that cannot take what a stage of ``run_id`` will write, None if all can."""
    dirs = run_write_dirs(ws, run_id, cfg)
    need_on = dirs[1] if cfg is not None else None
    problems = filesystem_problems(dirs, need_bytes, gb_to_bytes(floor_gb), need_on)
    return problems[0] if problems else None
