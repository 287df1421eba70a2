"""Provides the one way to read a run's ``run.log``: a tailer that follows it by byte offset, the
end of a log without reading the rest, and the one matcher for lines that look like an error.

The TUI's log panel (through :mod:`dialsum_tui.manager.snapshot`), ``dialsum-tui logs``, the
worker's verdict and the demo build all read logs here, so a 1 GB log costs the same everywhere:
only its end is read.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# How much of an existing log is shown when the view opens, and the most read per poll: a
# multi-GB log must open instantly, and a run writing 10k lines/s must not stall the UI.
DEFAULT_WINDOW = 64 * 1024
# The most a whole-file reader (``window=None``: the CLI) takes per call, so memory stays flat.
READ_CHUNK = 1024 * 1024
# What the worker reads from the end of a log to judge a stage (the traceback is near the end).
TAIL_BYTES = 16 * 1024

# Lines worth a look when something broke: the worker's "last lines" of a failure and the TUI's
# "errors only" filter use this one pattern.
ERROR_LINE = re.compile(r"error|exception|traceback|fatal|failed|killed|abort|out of memory", re.IGNORECASE)


# Python warnings (FutureWarning, UserWarning, the "  warnings.warn(" echo under them) often say
# "error" in their text ("will raise an error in v5"); they are not errors, and "errors only" hides them.
WARNING_LINE = re.compile(r"\b[A-Z]\w*Warning\b|^\s*warnings\.warn\(")
# ...unless the line is a raised exception ("RuntimeError: ...", "torch.OutOfMemoryError: ...").
RAISED_LINE = re.compile(r"^\s*(?:\w+\.)*\w*(?:Error|Exception)\b|^Traceback")


# The line the worker writes into run.log before each stage: what a rebuilt store reads back to
# know which stages a run started (stage_header writes it, started_stages reads it).
_STAGE_HEADER = re.compile(r"^=== dialsum: (?P<stage>\w+) started")


def stage_header(stage: str, argv: list[str], when: float | None = None) -> str:
    """The line that opens a stage's part of ``run.log`` (with the command it runs)."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
    return f"\n=== dialsum: {stage} started {stamp}: {shlex.join(argv)}\n"


def started_stages(lines: Iterable[str]) -> list[str]:
    """The stages whose header (:func:`stage_header`) is among ``lines``, in order."""
    return [m["stage"] for line in lines if (m := _STAGE_HEADER.match(line))]


def is_error_line(line: str) -> bool:
    """Whether ``line`` looks like part of an error (see :data:`ERROR_LINE`); warnings are not."""
    if WARNING_LINE.search(line) and not RAISED_LINE.search(line):
        return False
    return bool(ERROR_LINE.search(line))


def error_lines(log_tail: str, limit: int = 3) -> str:
    """Return the last lines that look like an error (or the last non-empty lines), joined by " | "."""
    lines = [ln.strip() for ln in log_tail.splitlines() if ln.strip()]
    picked = [ln for ln in lines if is_error_line(ln)][-limit:] or lines[-limit:]
    return " | ".join(ln[:300] for ln in picked)


def read_tail(path: Path, limit: int = TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a log, decoded leniently ('' if missing or unreadable)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - limit))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def tail_lines(path: Path, lines: int = 15, limit: int = TAIL_BYTES) -> str:
    """The last ``lines`` lines of a log (read from its last ``limit`` bytes), joined by newlines."""
    return "\n".join(read_tail(path, limit).splitlines()[-lines:])


@dataclass
class LogChunk:
    """What changed in the log since the last read."""

    lines: list[str]  # complete lines, tqdm ``\r`` updates already collapsed
    live: str | None  # the unfinished last line (a tqdm bar in progress), None if there is none
    reset: bool = False  # the file was replaced, truncated or opened: drop what is shown
    skipped: int = 0  # bytes jumped over because the writer was faster than the window


def collapse_cr(line: str) -> str:
    """Return what a terminal would show for ``line``: the text after its last ``\\r``.

    tqdm redraws its bar with ``\\r`` on one line; in a file those redraws pile up into one
    enormous line. A trailing ``\\r`` (CRLF endings) is not a redraw, so it is dropped first.
    """
    line = line.rstrip("\r")
    cut = line.rfind("\r")
    return line[cut + 1 :] if cut >= 0 else line


@dataclass
class LogTail:
    """Follows one log file by byte offset, starting ``window`` bytes before its end.

    Survives truncation and replacement (size below the offset or a new inode: start again at
    the end), and skips ahead when more than ``window`` bytes arrived between two reads. With
    ``window=None`` it starts at the beginning and never skips, reading at most ``READ_CHUNK``
    bytes per call (``dialsum-tui logs`` prints the whole file this way).
    """

    path: Path
    window: int | None = DEFAULT_WINDOW
    offset: int | None = None  # None until the first read, which seeks to the end
    _inode: int | None = field(default=None, repr=False)
    _partial: bytes = field(default=b"", repr=False)

    def read_new(self) -> LogChunk | None:
        """Return the new lines since the last call, or None when nothing changed."""
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            if self.offset is not None:  # the log vanished: show that, start over when it returns
                self.offset, self._inode, self._partial = None, None, b""
                return LogChunk([], None, reset=True)
            return None
        with fh:
            stat = os.fstat(fh.fileno())
            reset = False
            if self.offset is None or stat.st_ino != self._inode or stat.st_size < self.offset:
                reset = True
                self._inode, self._partial = stat.st_ino, b""
                self.offset = 0 if self.window is None else max(0, stat.st_size - self.window)
                skip_partial_line = self.offset > 0
            elif stat.st_size == self.offset:
                return None
            else:
                skip_partial_line = False
            skipped = 0
            if self.window is not None and stat.st_size - self.offset > self.window:
                skipped = stat.st_size - self.window - self.offset
                self.offset, self._partial = stat.st_size - self.window, b""
                skip_partial_line = True
            fh.seek(self.offset)
            size = stat.st_size - self.offset
            data = fh.read(size if self.window is not None else min(size, READ_CHUNK))
        self.offset += len(data)
        if skip_partial_line:  # we landed mid-line: the first fragment is not a whole line
            newline = data.find(b"\n")
            data = data[newline + 1 :] if newline >= 0 else b""
        data = self._partial + data
        complete, sep, rest = data.rpartition(b"\n")
        self._partial = rest
        text = complete.decode("utf-8", errors="replace")
        lines = [collapse_cr(line) for line in text.split("\n")] if sep else []
        live = collapse_cr(rest.decode("utf-8", errors="replace")) if rest else None
        return LogChunk(lines, live or None, reset=reset, skipped=skipped)
