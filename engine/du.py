"""Provides the one ``du``-like walker: the allocated size of a tree, as a container quota counts it.

A quota is invisible to ``df``, so both sides that enforce it measure the tree: the engine's in-run
disk guard (engine/callbacks.py) and the manager's disk meter and prune plan
(dialsum_tui/manager/disk.py, prune.py). One walker, so both count the same bytes.

Torch-free: the manager imports it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from pathlib import Path


class TreeWalker:
    """Sums allocated bytes like ``du -sx``: st_blocks × 512, each inode once, symlinks not followed.

    One walker remembers the hard-linked inodes it has counted, so measuring several trees with the
    same walker counts a file linked into two of them once (as ``du a b`` does).
    """

    def __init__(self, device: int):
        self.device = device
        self.seen: set[tuple[int, int]] = set()

    @classmethod
    def for_path(cls, path: Path | str) -> TreeWalker:
        """A walker that stays on ``path``'s filesystem (a walker that counts nothing if it is gone)."""
        try:
            return cls(os.lstat(path).st_dev)
        except OSError:
            return cls(-1)

    def size(self, top: Path | str, skip: Collection[str] = frozenset()) -> int:
        """Allocated bytes under ``top``; entries whose path is in ``skip`` are left out with their subtrees."""
        total = 0
        try:
            st = os.lstat(top)
        except OSError:
            return 0
        if st.st_dev != self.device:
            return 0  # another filesystem: not under this quota (du -x)
        total += self._count(st)
        if not stat.S_ISDIR(st.st_mode):
            return total
        stack = [str(top)]
        while stack:
            current = stack.pop()
            try:
                entries = list(os.scandir(current))
            except OSError:
                continue  # unreadable or vanished (checkpoint rotation): du warns and goes on
            for entry in entries:
                if entry.path in skip:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_dev != self.device:
                    continue
                total += self._count(st)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
        return total

    def _count(self, st: os.stat_result) -> int:
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in self.seen:
                return 0
            self.seen.add(key)
        return st.st_blocks * 512


def tree_size(path: Path | str) -> int:
    """Allocated bytes of the tree at ``path`` like ``du -sx`` (0 when it does not exist)."""
    return TreeWalker.for_path(path).size(path)
