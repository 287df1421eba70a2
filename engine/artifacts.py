"""Provides the run directory's IO: atomic writes, the append-only ``events.jsonl`` writer and
reader, the complete-``final_model`` marker and the workspace path helpers.

The names (files, events, kinds) are the contract's (:mod:`engine.contract`); this module does
the reading and writing. Torch-free on purpose: the manager imports it to follow runs, and the
TUI must start instantly. Everything a run says is on disk, so runs outlive the TUI and the worker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Re-exported: readers that already import them from here keep working; new code imports the contract.
from engine.contract import (  # noqa: F401
    CONFIG_FILE,
    DEV_PREDICTIONS_SUFFIX,
    EVENTS_FILE,
    EVENTS_SCHEMA_VERSION,
    FINAL_MODEL_DIR,
    FINAL_MODEL_META,
    FREQUENT_EVENTS,
    LOG_FILE,
    SUBMISSION_SUFFIX,
    Event,
    EventRecord,
    parse_event,
    record_fields,
)

ENGINE_VERSION = "0.1.0"

# Unicode letters and digits stay (the team names runs in Korean: '코바트' must not become 'run'),
# and so do . _ -; anything else (separators, spaces, control characters) becomes '_'.
_UNSAFE = re.compile(r"[^\w.-]+")
NICKNAME_MAX_CHARS = 64  # keeps <slug>-r<id>_dev_predictions.csv far below NAME_MAX (255 bytes; Hangul is 3)
# The run-keyed artifact names: <slug>-r<id> (e.g. 코바트-r12). A slug never ends in "-r<digits>"
# on its own only by accident; the key is built, never parsed, except by the layout reader below.
RUN_KEY = re.compile(r"^(?P<slug>.+)-r(?P<id>[0-9]+)$")


def safe_name(name: str) -> str:
    """Return ``name`` as a single safe path component: NFC, Unicode letters/digits and ``._-`` kept.

    An ASCII nickname maps to what the first releases wrote (``[A-Za-z0-9._-]``), so their
    ``checkpoints/<nickname>/`` layout is still found.
    """
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).strip("._")
    return cleaned or "run"


def legacy_name(name: str) -> str:
    """The directory name the first releases gave a nickname (ASCII only: Hangul became ``_``/``run``).

    Only for finding files written before run keys (store migration 2, the old layout reader).
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"


def nickname_problem(nickname: str) -> str | None:
    """Why ``nickname`` cannot name a run's files, or None when it can.

    Refused: empty once cleaned, longer than :data:`NICKNAME_MAX_CHARS`, a path separator, or a
    control character. Anything else (Hangul, spaces, punctuation) is fine: :func:`safe_name` keeps
    letters and digits and the run id keeps two runs apart.
    """
    if not nickname.strip():
        return "model.nickname is empty; give the run a name such as 코바트-lr3e-5"
    if len(nickname) > NICKNAME_MAX_CHARS:
        return (f"model.nickname is {len(nickname)} characters; use at most {NICKNAME_MAX_CHARS} "
                "(it names the checkpoint and submission files)")
    if "/" in nickname or "\\" in nickname:
        return f"model.nickname {nickname!r} contains a path separator; use '-' or '_' instead"
    if any(unicodedata.category(ch) == "Cc" for ch in nickname):
        return f"model.nickname {nickname!r} contains a control character (tab, newline...); remove it"
    if safe_name(nickname) == "run" and not re.search(r"\w", nickname):
        return f"model.nickname {nickname!r} has no letter or digit; include at least one"
    return None


def artifact_key(nickname: str, run_id: int | None) -> str:
    """The name a run's artifacts go under: ``<slug>-r<id>`` (``<slug>`` alone for a standalone engine run).

    Keyed by run, never by the nickname alone: two runs of one nickname, or two nicknames with the
    same slug, never share a checkpoint directory or a submission file.
    """
    slug = safe_name(nickname)
    return slug if run_id is None else f"{slug}-r{int(run_id)}"


def stage_key(explicit: str | None, nickname: str) -> str:
    """A stage's artifact key: ``--artifact-key`` from the manager, else the cleaned nickname (standalone)."""
    return safe_name(explicit or nickname)


# --- workspace layout ---------------------------------------------------------------------


def final_model_dir(checkpoints: Path, key: str) -> Path:
    """``<checkpoints>/<key>/final_model``: the complete model a train stage leaves (key: :func:`artifact_key`)."""
    return Path(checkpoints) / safe_name(key) / FINAL_MODEL_DIR


def submission_path(submissions: Path, key: str) -> Path:
    """``<submissions>/<key>_submission.csv``: the test predictions (the competition's upload)."""
    return Path(submissions) / f"{safe_name(key)}{SUBMISSION_SUFFIX}"


def dev_predictions_path(submissions: Path, key: str) -> Path:
    """``<submissions>/<key>_dev_predictions.csv``: the dev predictions that evaluate scores."""
    return Path(submissions) / f"{safe_name(key)}{DEV_PREDICTIONS_SUFFIX}"


def submission_nickname(path: Path) -> str | None:
    """The artifact key (or old-layout nickname) a submission file belongs to (None when ``path`` is not one)."""
    name = Path(path).name
    return name.removesuffix(SUBMISSION_SUFFIX) if name.endswith(SUBMISSION_SUFFIX) else None


# --- atomic writes --------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """This process's umask, read without changing it (``/proc/self/status``; a brief set-and-restore
    where that line is missing, before Linux 4.7)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_mode(directory: bool = False) -> int:
    """The mode ``open()`` or ``mkdir()`` would give a new file (0666) or directory (0777) under the umask.

    ``mkstemp`` and ``mkdtemp`` make 0600 and 0700 whatever the umask says: what they create is
    chmod-ed to this, so a shared workspace (the worker sets umask 007, dialsum_tui's sharing)
    gets group-readable models and submissions, and a private one (077) gets nothing for others.
    """
    return (0o777 if directory else 0o666) & ~current_umask()


def atomic_write_text(path: Path | str, text: str, mode: int | None = None) -> None:
    """Write ``text`` so that readers see either the old file or the whole new one.

    Args:
        mode: the file's mode; by default what ``open()`` would give it under this process's umask
            (:func:`umask_mode`), never ``mkstemp``'s 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, umask_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(dirpath))


@contextmanager
def atomic_directory(final: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``final`` in one rename.

    transformers' checkpoint saving is not atomic (PR #27820 was reverted), so a crash or a full
    disk mid-save leaves half-written files. Writing elsewhere and renaming means ``final`` is
    either the previous complete model or the new complete one, never a mix.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        # mkdtemp's 0700 would keep the model from the group of a shared workspace (and a setgid
        # parent's bit, inherited at mkdir, must stay so the files inside keep the group too).
        os.chmod(tmp, umask_mode(directory=True) | (tmp.stat().st_mode & stat.S_ISGID))
        yield tmp
        _fsync_tree(tmp)
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}-{int(time.time())}"
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_final_model_meta(directory: Path, meta: dict[str, Any]) -> None:
    """Write the completeness marker; call it last, inside :func:`atomic_directory`."""
    body = {"engine_version": ENGINE_VERSION, "written_at": time.time(), **meta}
    atomic_write_text(Path(directory) / FINAL_MODEL_META, json.dumps(body, ensure_ascii=False, indent=2))


def read_final_model_meta(directory: Path | str) -> dict[str, Any] | None:
    """Return the metadata of a complete ``final_model`` directory, or None if it is not complete."""
    path = Path(directory) / FINAL_MODEL_META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def is_complete_model(directory: Path | str) -> bool:
    return read_final_model_meta(directory) is not None


# --- events ---------------------------------------------------------------------------------


# torchrun (and so `accelerate launch`) sets RANK and WORLD_SIZE in every rank's environment; reading
# them keeps this module torch-free while still knowing which process is the main one.
def process_rank() -> int:
    """This process's global rank in a distributed launch (0 when not launched by torchrun/accelerate)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def world_size() -> int:
    """How many processes the distributed launch started (1 when not distributed)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_main_process() -> bool:
    """Whether this process writes the run's events and artifacts (rank 0, or not distributed)."""
    return process_rank() == 0



# The index's lines, spelled once here (the reader parses exactly these shapes):
#   {"from": F, "at": A, "end": E, "event": "eval"}  a rare event is the line [A, E) of events.jsonl
#   {"from": F, "to": E}                              every rare event written in [F, E) is listed above
# F is where this writer found the end of the file when it opened it: a writer vouches for the span
# it was open, nothing before it (a stage written by an engine without an index stays unvouched).
INDEX_STRIDE = 4 * 1024 * 1024  # a "to" line after this many bytes of frequent events: a reader scans at most this


def events_index_path(events: Path | str) -> Path:
    """The index next to an events file: ``events.jsonl`` → ``events.index.jsonl`` (contract EVENTS_INDEX_FILE)."""
    events = Path(events)
    return events.with_name(f"{events.stem}.index{events.suffix}")


class EventWriter:
    """Append-only writer for ``events.jsonl``.

    Each event is one ``os.write`` of one complete line on an ``O_APPEND`` descriptor, so
    concurrent writers never interleave inside a line and a reader that only consumes lines
    ending in ``\\n`` never sees a torn event.

    In a distributed launch only the main process writes, so the stream reads like a single-process
    run; the exception is ``failed``: a rank that crashes records its own error (tagged ``rank``),
    because the manager must report the rank that broke, not the ranks torn down after it.

    Next to the file it keeps ``events.index.jsonl`` (:func:`events_index_path`): where each rare
    event (not ``progress``/``train_log``) starts, and every :data:`INDEX_STRIDE` bytes how far the
    list is complete, so :class:`engine.event_reader.RunEvents` finds a 2 GB run's evaluations and
    checkpoints without reading it. The index is only a hint: a reader checks every line it points
    at and reads for itself what the index does not vouch for; a failing index write turns the
    index off for this writer, never the events.
    """

    def __init__(self, path: Path | str | None, command: str | None = None, rank: int | None = None):
        self.path = Path(path) if path else None
        self.command = command
        self.rank = process_rank() if rank is None else rank
        self.distributed = rank is not None or world_size() > 1
        self._fd: int | None = None
        self._index_fd: int | None = None
        self._opened_at = 0  # where the file ended when this writer opened it (the index's "from")
        self._unvouched = 0  # bytes written since the index last said how far it is complete
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # 0o660 less the umask: the worker sets 077 (private) or 007 (a shared workspace), see manager.sharing.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o660)
            self._opened_at = os.lseek(self._fd, 0, os.SEEK_END)
            # A new events file starts a new index: one left from a removed file would point at nothing.
            fresh = os.O_TRUNC if self._opened_at == 0 else 0
            try:
                self._index_fd = os.open(events_index_path(self.path), os.O_WRONLY | os.O_APPEND | os.O_CREAT | fresh,
                                         0o660)
            except OSError:  # no index: readers scan instead
                self._index_fd = None

    def emit(self, event: Event | str, **fields: Any) -> dict[str, Any]:
        """Append one event and return the record written.

        Raises:
            ValueError: ``event`` is not an :class:`~engine.contract.Event`, or a field is not one of
                its record's (docs/events.md): the contract is checked where it is written.
        """
        try:
            name = Event(event)
        except ValueError:
            raise ValueError(f"unknown event {event!r}; known: {', '.join(Event)}") from None
        unknown = sorted(set(fields) - record_fields(name))
        if unknown:
            raise ValueError(f"event {name.value!r}: unknown field(s) {', '.join(unknown)}; add them to "
                             "its record in engine/contract.py and to docs/events.md")
        record = {"v": EVENTS_SCHEMA_VERSION, "ts": round(time.time(), 3), "event": name.value}
        if self.command:
            record["command"] = self.command
        record.update(fields)
        if name is Event.FAILED and self.distributed:
            record["rank"] = self.rank
        elif self.rank != 0:
            return record  # not the main process: its progress would only duplicate rank 0's
        if self._fd is not None:
            line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
            os.write(self._fd, line)
            self._index(name, len(line))
        return record

    def _index(self, name: Event, length: int) -> None:
        """List a rare event in the index, or say how far the index is complete every INDEX_STRIDE bytes."""
        if self._index_fd is None:
            return
        self._unvouched += length
        rare = name not in FREQUENT_EVENTS
        if not rare and self._unvouched < INDEX_STRIDE:
            return
        # After a write on an O_APPEND descriptor its offset is the end of that write, whoever wrote since.
        end = os.lseek(self._fd, 0, os.SEEK_CUR)
        if rare:
            entry = f'{{"from": {self._opened_at}, "at": {end - length}, "end": {end}, "event": "{name.value}"}}\n'
        else:
            entry = f'{{"from": {self._opened_at}, "to": {end}}}\n'
        self._write_index(entry)

    def _write_index(self, entry: str) -> None:
        try:
            os.write(self._index_fd, entry.encode("ascii"))
        except OSError:  # a full disk, say: from here on readers scan what this writer wrote
            self._close_index()
            return
        self._unvouched = 0

    def _close_index(self) -> None:
        if self._index_fd is not None:
            os.close(self._index_fd)
            self._index_fd = None

    def close(self) -> None:
        if self._fd is not None:
            if self._index_fd is not None and self._unvouched:
                end = os.lseek(self._fd, 0, os.SEEK_CUR)
                self._write_index(f'{{"from": {self._opened_at}, "to": {end}}}\n')
            self._close_index()
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


READ_CAP = 4 * 1024 * 1024  # EventTail reads at most this per call; a longer line is skipped


def decode_line(line: bytes) -> dict[str, Any] | None:
    """One ``events.jsonl`` line as a dict with an ``event``; None for anything else (never raises)."""
    try:
        event = json.loads(line)
    except ValueError:  # includes UnicodeDecodeError
        return None
    return event if isinstance(event, dict) and "event" in event else None


def to_record(raw: dict[str, Any]) -> EventRecord | None:
    """``parse_event`` that never raises: None for an unknown name or a line whose fields do not fit."""
    try:
        return parse_event(raw)
    except (TypeError, ValueError):
        return None


@dataclass
class EventTail:
    """Incremental reader of ``events.jsonl``, bounded per call.

    Keeps a byte offset and leaves an incomplete last line for the next call. Lines that are not
    valid JSON (a disk-full truncation, say) are skipped, never fatal; so is a line longer than
    ``max_bytes`` (a corrupt 100 MB line), which is stepped over without being held in memory. A
    file that shrank or was replaced (another inode) is read again from the start.

    - :meth:`read_records`: typed records (:mod:`engine.contract`) from at most ``max_bytes`` read;
      call again while :attr:`behind` to catch up in bounded steps.
    - :meth:`drain`: typed records up to the end the file had when it was called, chunk by chunk.
    - :meth:`skip_to_end`: follow only what is appended from now on, reading nothing before.
    - :meth:`read_new`: every complete event up to now as dicts (the first API; it reads in
      ``max_bytes`` chunks but returns them all, so its memory is what it returns).
    """

    path: Path
    offset: int = 0
    max_bytes: int = READ_CAP
    bytes_read: int = 0  # bytes this tail has read, all calls together
    skipped_lines: int = 0  # lines dropped: not JSON, not an event, or longer than max_bytes
    behind: bool = False  # the last read stopped at max_bytes with more of the file after it
    _skipping: bool = field(default=False, repr=False)  # inside an over-long line: drop up to its newline
    _identity: tuple[int, int] | None = field(default=None, repr=False)

    def _read_lines(self, limit: int | None = None) -> list[bytes]:
        """The complete lines in the next ``max_bytes`` (not past ``limit``), offset moved past them."""
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                identity = (st.st_dev, st.st_ino)
                if st.st_size < self.offset or (self._identity is not None and identity != self._identity):
                    self.offset, self._skipping = 0, False  # truncated or replaced: start again
                self._identity = identity
                stop = st.st_size if limit is None else min(st.st_size, max(limit, self.offset))
                want = min(self.max_bytes, stop - self.offset)
                if want <= 0:
                    self.behind = False
                    return []
                fh.seek(self.offset)
                chunk = fh.read(want)
        except FileNotFoundError:
            self.behind = False
            return []
        self.bytes_read += len(chunk)
        self.behind = self.offset + len(chunk) < st.st_size
        start = 0
        if self._skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                self.offset += len(chunk)
                return []
            start, self._skipping = newline + 1, False
        end = chunk.rfind(b"\n")
        if end < start:  # no complete line after ``start``
            if start == 0 and len(chunk) >= self.max_bytes:  # one line longer than the cap: step over it
                self.offset += len(chunk)
                self._skipping = True
                self.skipped_lines += 1
            else:  # an unfinished last line: the next call reads it whole
                self.offset += start
            return []
        self.offset += end + 1
        return chunk[start:end].split(b"\n")

    def _decode(self, lines: list[bytes]) -> list[dict[str, Any]]:
        events = []
        for line in lines:
            event = decode_line(line)
            if event is None:
                self.skipped_lines += bool(line.strip())
            else:
                events.append(event)
        return events

    def _typed(self, raw: list[dict[str, Any]]) -> list[EventRecord]:
        return [record for record in map(to_record, raw) if record is not None]

    def read_records(self) -> list[EventRecord]:
        """Typed records from the next ``max_bytes`` of the file (unknown event names skipped)."""
        return self._typed(self._decode(self._read_lines()))

    def drain(self) -> Iterator[EventRecord]:
        """Typed records up to the end the file has now, read ``max_bytes`` at a time.

        A writer appending faster than this reads cannot keep it going: it stops at the size the
        file had when it was called (:attr:`behind` then says more came).
        """
        try:
            limit = os.stat(self.path).st_size
        except FileNotFoundError:
            return
        while True:
            before = self.offset
            yield from self._typed(self._decode(self._read_lines(limit)))
            if self.offset >= limit or self.offset == before:
                return

    def read_new(self) -> list[dict[str, Any]]:
        """Every complete event up to the file's end now, as dicts (``max_bytes`` read at a time)."""
        try:
            limit = os.stat(self.path).st_size
        except FileNotFoundError:
            return []
        events: list[dict[str, Any]] = []
        while True:
            before = self.offset
            events += self._decode(self._read_lines(limit))
            if self.offset >= limit or self.offset == before:
                return events

    def skip_to_end(self) -> None:
        """Move past every complete line the file has now (read only its last ``max_bytes``, at most)."""
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                self._identity = (st.st_dev, st.st_ino)
                start = max(0, st.st_size - self.max_bytes)
                fh.seek(start)
                chunk = fh.read(st.st_size - start)
        except FileNotFoundError:
            self.offset, self._skipping = 0, False
            return
        self.bytes_read += len(chunk)
        end = chunk.rfind(b"\n")
        self.behind = False
        if end >= 0:
            self.offset, self._skipping = start + end + 1, False
        elif start == 0:  # the whole file is one unfinished line: it is read once complete
            self.offset, self._skipping = 0, False
        else:  # an unfinished line longer than the cap: step over it
            self.offset, self._skipping = st.st_size, True


def read_events(path: Path | str) -> list[dict[str, Any]]:
    """Return every complete event in ``path`` (empty if the file does not exist).

    Its memory grows with the file: a reader that shows a run uses
    :meth:`engine.event_reader.RunEvents.open` (bounded) instead.
    """
    return EventTail(Path(path)).read_new()
