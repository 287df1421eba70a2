"""Provides :class:`RunEvents`, what a reader shows of a run's ``events.jsonl``, read in time and
memory bounded by what it shows, not by the file's size (a run that logs every step writes GBs).

Per stage (``train``, ``infer``, ``evaluate``): its ``started`` records, its phases, the last
``progress`` and ``train_log``, every ``eval``, a loss curve of at most ``max_points`` points,
its artifacts, its newest warnings, and how it ended. A follower then reads what is appended with
``EventTail(path, offset=summary.end)``.

How it reads (figures: ``benchmarks/event_file.py``, 2-core box, a 2 GB file in the page cache):

- A file up to ``full_below`` bytes (8 MiB: a normal run) is read whole, ``max_bytes`` at a time,
  and is exact: the curve is every ``train_log`` thinned evenly to ``max_points``.
- A bigger file: its head (1 MiB) and tail (2 MiB) are read whole. The rare events in between
  (every event but ``progress`` and ``train_log``: :data:`engine.contract.RARE_EVENTS`) come from the
  index :class:`engine.artifacts.EventWriter` keeps next to the file (``events.index.jsonl``): each
  line it points at is read and checked (its name, that it is a whole line), and one that fails
  makes the reader ignore the index. What no writer vouched for in the index (a file written before
  the index existed, the last < 4 MiB a writer wrote since its last ``to`` line, a writer killed
  between its two writes) is scanned exactly: the bytes are searched with one regular expression for
  ``"event": "<rare name>"`` as ``EventWriter`` spells it, and only matching lines are decoded.
  The one event that can be missed: a rank of a distributed run SIGKILLed in the microseconds
  between its ``failed`` line and that line's entry, while rank 0 went on vouching for the span.
  The loss curve is evenly spaced seeks (toolong's way: seek, skip to the next newline, read a 4 KiB
  window, take its first ``train_log``); each stage's last ``progress``/``train_log`` is read
  backwards from where the stage's events end. ``exact`` is then False: only the curve is sampled.

Why an index and not the scan alone: on this 2-core box (load 4-6 from other work) the scan
measured 1.7-2.7 s per 2 GB (the regular expression alone 1.6-2.4 s), at or past the 2 s a workspace
may take to open, and linear in the size; seven ``bytes.find`` passes (one per name) measured ~4 s;
``mmap`` would put every scanned page in the reader's resident set (ru_maxrss counts file pages),
which ``preadv`` into one reused buffer does not. With the index a 2 GB file opens in 0.09 s at
28 MiB peak RSS (18 MiB of it the interpreter), reading 6 MB; the scan stays the fallback for files
without one (40 MiB peak). The old full read (``read_events``) ran out of a 10 GB address space
after 129 s at 2 GB, and took 22 s and 1.27 GiB at 200 MB. A complete scan leaves what it found behind as
the index (a wrong or missing one is replaced whole, a valid one's gaps are appended), so a run
written before the index existed pays the scan once, not at every open.
"""

from __future__ import annotations

import bisect
import json
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.artifacts import READ_CAP, EventTail, atomic_write_text, decode_line, events_index_path, to_record
from engine.contract import (
    RARE_EVENTS,
    Artifact,
    Eval,
    Event,
    EventRecord,
    Failed,
    Finished,
    PhaseChanged,
    Progress,
    Started,
    TrainLog,
    Warning_,
)

FULL_READ_BYTES = 8 * 1024 * 1024  # up to this, every line is read (about 0.3 s here)
HEAD_BYTES = 1024 * 1024  # read whole: the first stage's started and phases
TAIL_BYTES = 2 * 1024 * 1024  # read whole: the last progress, how the run ended
SAMPLE_BYTES = 4096  # one seek of the loss curve (a train_log line is ~200 bytes)
SCAN_BYTES = 8 * 1024 * 1024  # one pread of the rare-event scan
STAGE_END_BYTES = 4 * 1024 * 1024  # how far back a stage's last progress is looked for
DEFAULT_POINTS = 500  # loss-curve points: more than a terminal or a plot has columns
MAX_WARNINGS = 100  # per stage, the newest
MAX_RARE = 10_000  # per event name: a bound for a writer gone wrong (an eval per step), not for runs
MAX_INDEX_BYTES = 64 * 1024 * 1024  # an index this big is read no more: the middle is scanned instead

# The bytes EventWriter writes for an event's name (json.dumps' default separators): '"event": "'.
_NAME_PREFIX = json.dumps({"event": ""})[1:-2].encode()
_RARE_LINE = re.compile(re.escape(_NAME_PREFIX) + b"(" + b"|".join(e.value.encode() for e in RARE_EVENTS) + b')"')
_FREQUENT_TAG = {Event.TRAIN_LOG: _NAME_PREFIX + b'train_log"', Event.PROGRESS: _NAME_PREFIX + b'progress"'}
# The index's two line shapes (engine.artifacts writes exactly these; a torn last line never matches).
_INDEX_LINE = re.compile(rb'\{"from": (\d+), (?:"at": (\d+), "end": (\d+), "event": "([a-z_]+)"|"to": (\d+))\}\n')


class Thinned:
    """At most ``limit`` items of a stream, evenly spaced by arrival, the first and the last kept.

    Keeps every ``stride``-th item and doubles the stride (dropping every other kept item) when
    full, so memory is ``limit`` items however long the stream is. A follower can keep feeding it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(2, int(limit))
        self.stride = 1
        self.count = 0
        self._kept: list[Any] = []
        self._last: Any = None

    def add(self, item: Any) -> None:
        if self.count % self.stride == 0:
            self._kept.append(item)
            if len(self._kept) >= self.limit:
                self._kept = self._kept[::2]
                self.stride *= 2
        self._last = item
        self.count += 1

    def items(self) -> list[Any]:
        """The kept items, oldest first, ending with the newest one seen."""
        if self.count == 0:
            return []
        return self._kept + ([self._last] if self._kept[-1] is not self._last else [])


@dataclass(frozen=True)
class StageEvents:
    """What one stage (one ``command``) said about itself."""

    stage: str
    started: tuple[Started, ...] = ()  # more than one when the stage ran again in this run directory
    phases: tuple[PhaseChanged, ...] = ()
    progress: Progress | None = None  # the last one
    last_log: TrainLog | None = None  # the last train_log
    loss: tuple[TrainLog, ...] = ()  # train_log records, at most max_points, oldest first, first and last included
    evals: tuple[Eval, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    warnings: tuple[Warning_, ...] = ()  # the newest max_warnings
    warnings_dropped: int = 0
    finished: Finished | None = None  # the last one
    failures: tuple[Failed, ...] = ()  # every failed (one per rank that broke)
    ended: Finished | Failed | None = None  # the last finished or failed: how the stage ended

    @property
    def phase(self) -> PhaseChanged | None:
        """The phase the stage is in (or ended in)."""
        return self.phases[-1] if self.phases else None


class _StageBuilder:
    def __init__(self, stage: str, max_points: int, max_warnings: int) -> None:
        self.stage = stage
        self.started: deque = deque(maxlen=MAX_RARE)
        self.phases: deque = deque(maxlen=MAX_RARE)
        self.evals: deque = deque(maxlen=MAX_RARE)
        self.artifacts: deque = deque(maxlen=MAX_RARE)
        self.failures: deque = deque(maxlen=MAX_RARE)
        self.warnings: deque = deque(maxlen=max_warnings)
        self.warnings_seen = 0
        self.loss = Thinned(max_points)
        self.progress: tuple[int, Progress] | None = None
        self.finished: tuple[int, Finished] | None = None
        self.ended: tuple[int, Finished | Failed] | None = None

    def add(self, seq: int, record: EventRecord) -> None:
        item = (seq, record)
        if isinstance(record, TrainLog):
            self.loss.add(item)
        elif isinstance(record, Progress):
            self.progress = item
        elif isinstance(record, Eval):
            self.evals.append(item)
        elif isinstance(record, Artifact):
            self.artifacts.append(item)
        elif isinstance(record, Warning_):
            self.warnings.append(item)
            self.warnings_seen += 1
        elif isinstance(record, Started):
            self.started.append(item)
        elif isinstance(record, PhaseChanged):
            self.phases.append(item)
        elif isinstance(record, Finished):
            self.finished = self.ended = item
        elif isinstance(record, Failed):
            self.failures.append(item)
            self.ended = item

    def build(self) -> tuple[StageEvents, list[tuple[int, EventRecord]]]:
        loss = self.loss.items()
        singles = [x for x in (self.progress, self.finished) if x is not None]
        kept = [*self.started, *self.phases, *loss, *self.evals, *self.artifacts, *self.warnings, *self.failures,
                *singles]

        def records(items: Iterable[tuple[int, Any]]) -> tuple[Any, ...]:
            return tuple(record for _, record in items)

        stage = StageEvents(
            stage=self.stage, started=records(self.started), phases=records(self.phases),
            progress=self.progress[1] if self.progress else None, last_log=loss[-1][1] if loss else None,
            loss=records(loss), evals=records(self.evals), artifacts=records(self.artifacts),
            warnings=records(self.warnings), warnings_dropped=self.warnings_seen - len(self.warnings),
            finished=self.finished[1] if self.finished else None, failures=records(self.failures),
            ended=self.ended[1] if self.ended else None)
        return stage, kept


@dataclass(frozen=True)
class RunEvents:
    """A bounded summary of one ``events.jsonl`` (see the module docstring for how it is read)."""

    path: Path
    stages: tuple[StageEvents, ...] = ()  # in the order they first wrote
    end: int = 0  # the offset after the last complete line summarized: follow from here
    size: int = 0  # the file's size when it was opened
    exact: bool = True  # every line was read (False: the loss curve was sampled; everything else is exact)
    indexed: bool = False  # the index vouched for (part of) the middle
    scanned_bytes: int = 0  # bytes searched for rare events (not vouched for by the index)
    bytes_read: int = 0  # every byte this summary read, index included
    skipped_lines: int = 0  # lines that were not valid events (torn, corrupt, over-long)
    kept: tuple[EventRecord, ...] = ()  # every record above, in file order

    @classmethod
    def open(cls, path: Path | str, max_points: int = DEFAULT_POINTS, *, max_warnings: int = MAX_WARNINGS,
             full_below: int = FULL_READ_BYTES) -> RunEvents:
        """Summarize ``path`` (an empty summary when it does not exist).

        Args:
            max_points: the most loss-curve points kept per stage.
            max_warnings: the most warnings kept per stage (the newest).
            full_below: files up to this many bytes are read whole and exactly.
        """
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return cls(path)
        try:
            size = os.fstat(fd).st_size
            if size <= full_below:
                return cls._read_whole(path, size, max_points, max_warnings)
            return _Sampler(fd, path, size, max_points, max_warnings).summary()
        finally:
            os.close(fd)

    @classmethod
    def from_records(cls, records: Iterable[EventRecord], max_points: int = DEFAULT_POINTS, *,
                     max_warnings: int = MAX_WARNINGS, path: Path | str = "", **facts: Any) -> RunEvents:
        """The summary of ``records`` in file order (what :meth:`open` builds from what it read)."""
        builders: dict[str, _StageBuilder] = {}
        for seq, record in enumerate(records):
            stage = record.command or ""
            if stage not in builders:
                builders[stage] = _StageBuilder(stage, max_points, max_warnings)
            builders[stage].add(seq, record)
        stages, kept = [], []
        for builder in builders.values():
            stage, items = builder.build()
            stages.append(stage)
            kept += items
        kept.sort(key=lambda item: item[0])
        return cls(Path(path), tuple(stages), kept=tuple(record for _, record in kept), **facts)

    @classmethod
    def _read_whole(cls, path: Path, size: int, max_points: int, max_warnings: int) -> RunEvents:
        tail = EventTail(path)
        summary = cls.from_records(tail.drain(), max_points, max_warnings=max_warnings, path=path, size=size)
        return replace(summary, end=tail.offset, bytes_read=tail.bytes_read, skipped_lines=tail.skipped_lines)

    def stage(self, name: str) -> StageEvents | None:
        """The stage ``name`` (``train``, ``infer``, ``evaluate``), or None when it did not write."""
        return next((s for s in self.stages if s.stage == name), None)

    @property
    def evals(self) -> tuple[Eval, ...]:
        """Every evaluation of every stage, in file order."""
        return tuple(r for r in self.kept if isinstance(r, Eval))

    @property
    def artifacts(self) -> tuple[Artifact, ...]:
        """Every artifact of every stage, in file order."""
        return tuple(r for r in self.kept if isinstance(r, Artifact))


# --- the sampled path ---------------------------------------------------------------------------


class _Sampler:
    """Reads one big file: head and tail whole, rare events by index or scan, the curve by seeks."""

    def __init__(self, fd: int, path: Path, size: int, max_points: int, max_warnings: int) -> None:
        self.fd, self.path, self.size = fd, path, size
        self.max_points, self.max_warnings = max_points, max_warnings
        self.bytes_read = 0
        self.skipped = 0
        self.scanned = 0
        self.indexed = False
        self.found: dict[int, EventRecord] = {}  # offset of its line → record
        # What a scan found, to leave behind as an index (spans scanned whole, rare lines in them).
        self.scanned_spans: list[tuple[int, int]] = []
        self.scanned_lines: list[tuple[int, int, str]] = []  # (at, end, event) as EventWriter lists them
        self.scan_complete = True  # False once a scan dropped a line (over-long, or past MAX_RARE)
        self.fresh_index = False  # True: the middle was scanned whole because no index could be used

    def pread(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fd, max(0, length), offset)
        self.bytes_read += len(data)
        return data

    def summary(self) -> RunEvents:
        head = self.pread(0, HEAD_BYTES)
        head_cut = head.rfind(b"\n") + 1
        tail_start = max(head_cut, self.size - TAIL_BYTES)
        tail = self.pread(tail_start, self.size - tail_start)
        first = 0 if tail_start == head_cut else tail.find(b"\n") + 1
        last = tail.rfind(b"\n") + 1
        if first == 0 and tail_start > head_cut:  # no newline in the last TAIL_BYTES: one huge last line
            first = last = 0
        tail_cut, end = tail_start + first, tail_start + max(first, last)
        head_lines = list(_lines(head, 0, head_cut, 0))
        tail_lines = list(_lines(tail, first, max(first, last), tail_start))
        for offset, line in head_lines + tail_lines:  # every rare event of the ends
            self._keep(offset, self._decode(line, rare=True))
        self._middle(head_cut, tail_cut)
        self._leave_index()
        self._curve(end, head_cut, tail_cut, head_lines, tail_lines)
        self._stage_ends(end)
        records = (self.found[offset] for offset in sorted(self.found))
        summary = RunEvents.from_records(records, self.max_points, max_warnings=self.max_warnings, path=self.path)
        return replace(summary, end=end, size=self.size, exact=False, indexed=self.indexed,
                        scanned_bytes=self.scanned, bytes_read=self.bytes_read, skipped_lines=self.skipped)

    def _decode(self, line: bytes, frequent: tuple[Event, ...] = (), rare: bool = False) -> EventRecord | None:
        """The record of ``line`` when it is a rare event (``rare``) or one of ``frequent``, else None."""
        wanted = (rare and _RARE_LINE.search(line) is not None) or any(_FREQUENT_TAG[e] in line for e in frequent)
        if not wanted:
            return None
        raw = decode_line(line)
        record = to_record(raw) if raw is not None else None
        if record is None:
            self.skipped += 1
            return None
        if record.event in frequent or (rare and record.event in RARE_EVENTS):
            return record
        return None  # the name was found inside another field's text

    def _keep(self, offset: int, record: EventRecord | None) -> EventRecord | None:
        if record is not None:
            self.found[offset] = record
        return record

    # rare events between head and tail ---------------------------------------------------------

    def _middle(self, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        vouched = self._from_index(lo, hi)
        if vouched is None:
            self.fresh_index = True  # none, or one not to be trusted: what the scan finds replaces it
            self._scan(lo, hi)
            return
        for a, b in _gaps(vouched, lo, hi):
            self._scan(a, b)

    def _from_index(self, lo: int, hi: int) -> list[tuple[int, int]] | None:
        """Take the middle's rare events from the index; the spans it vouches for, or None to scan it all.

        Every entry is checked: one in the head or tail against what was read there, one in the
        middle by reading its line; one past the file's end now means the index is another file's.
        Entries past this summary's size but within the file are a live writer's newer lines.
        """
        try:
            with open(events_index_path(self.path), "rb") as fh:
                if os.fstat(fh.fileno()).st_size > MAX_INDEX_BYTES:
                    return None  # a writer gone wrong (a warning per step): scanning is cheaper
                text = fh.read()
        except OSError:
            return None
        self.bytes_read += len(text)
        now = os.fstat(self.fd).st_size  # the writer writes an event before its entry: none can be past this
        spans: dict[int, int] = {}
        listed: dict[bytes, deque] = {}
        for m in _INDEX_LINE.finditer(text):
            since, until = int(m[1]), int(m[3] or m[5])
            if until > now or since >= until:
                return None
            if since >= self.size:
                continue
            spans[since] = max(spans.get(since, since), min(until, self.size))
            if m[2] is None or until > self.size:
                continue
            at = int(m[2])
            if lo <= at < hi:
                listed.setdefault(m[4], deque(maxlen=MAX_RARE)).append((at, until, m[4].decode()))
            elif (record := self.found.get(at)) is None or record.event != m[4].decode():
                return None  # in the head or tail, where every rare line was read
        for at, until, name in sorted(e for q in listed.values() for e in q):
            line = self.pread(at - 1, until - at + 1)  # with the newline before it: a whole line, not a tail
            if len(line) != until - at + 1 or line[:1] != b"\n" or line[-1:] != b"\n":
                return None
            record = self._decode(line[1:-1], rare=True)
            if record is None or record.event != name:
                return None  # not what the index says: trust none of it
            self.found[at] = record
        self.indexed = bool(spans)
        return sorted(spans.items())

    def _scan(self, lo: int, hi: int) -> None:
        """Find every rare event in [lo, hi) exactly: search the bytes, decode only the lines that match.

        One buffer is reused (fresh 8 MiB buffers per read cost as much as the search in page faults);
        an unfinished line moves to its front, one longer than READ_CAP is stepped over.
        """
        skip = lo > 0 and self.pread(lo - 1, 1) != b"\n"  # not a line start: skip to the next one
        buf = bytearray(SCAN_BYTES + READ_CAP)
        view = memoryview(buf)
        pos, held, held_at = lo, 0, lo  # buf[:held]: an unfinished line, starting at offset held_at
        newest: dict[bytes, deque] = {}
        while pos < hi:
            n = os.preadv(self.fd, [view[held:held + min(SCAN_BYTES, hi - pos)]], pos)
            if n <= 0:
                break
            self.bytes_read += n
            self.scanned += n
            pos += n
            size, start = held + n, 0
            if skip:
                newline = buf.find(b"\n", 0, size)
                if newline < 0:
                    held, held_at = 0, pos
                    continue
                start, skip = newline + 1, False
            cut = max(start, buf.rfind(b"\n", start, size) + 1)
            seen = -1
            for m in _RARE_LINE.finditer(buf, start, cut):
                line_start = buf.rfind(b"\n", 0, m.start()) + 1
                if line_start == seen:
                    continue
                seen = line_start
                line = bytes(buf[line_start:buf.find(b"\n", m.end(), cut)])
                newest.setdefault(bytes(m[1]), deque(maxlen=MAX_RARE)).append((held_at + line_start, line))
            if size - cut > READ_CAP:  # a line longer than the cap: step over it
                held, held_at, skip = 0, pos, True
                self.skipped += 1
                self.scan_complete = False
            else:
                buf[:size - cut] = buf[cut:size]
                held, held_at = size - cut, held_at + cut
        self.scan_complete = self.scan_complete and all(len(q) < MAX_RARE for q in newest.values())
        for offset, line in sorted(e for q in newest.values() for e in q):
            record = self._keep(offset, self._decode(line, rare=True))
            if record is not None:
                self.scanned_lines.append((offset, offset + len(line) + 1, record.event.value))
        self.scanned_spans.append((lo, pos))

    def _leave_index(self) -> None:
        """Leave what a scan found as index lines, so the next reader of this file seeks instead of
        scanning (a file written before the index existed pays the scan once, not at every open).

        Written only for a scan that kept every rare line it met, in EventWriter's own shapes; a
        failing write (read-only, another user's run) changes nothing, and readers check every
        entry anyway.
        """
        if not self.scanned_spans or not self.scan_complete:
            return
        lines = []
        for lo, hi in self.scanned_spans:
            lines += [f'{{"from": {lo}, "at": {at}, "end": {end}, "event": "{name}"}}\n'
                      for at, end, name in self.scanned_lines if lo <= at < hi]
            lines.append(f'{{"from": {lo}, "to": {hi}}}\n')
        index = events_index_path(self.path)
        text = "".join(lines)
        try:
            if self.fresh_index:  # a wrong or missing index is replaced whole, never added to
                atomic_write_text(index, text, mode=os.fstat(self.fd).st_mode & 0o777)
                return
            fd = os.open(index, os.O_WRONLY | os.O_APPEND)  # the gaps a valid index left: appended
        except OSError:
            return
        try:
            os.write(fd, text.encode("ascii"))
        except OSError:
            pass
        finally:
            os.close(fd)

    # the loss curve and each stage's last progress ----------------------------------------------

    def _curve(self, end: int, head_cut: int, tail_cut: int, head_lines: list, tail_lines: list) -> None:
        """One train_log per evenly spaced offset (at most max_points - 2: room for each stage's last)."""
        samples = max(1, self.max_points - 2)
        logs = [(o, line) for o, line in head_lines + tail_lines if _FREQUENT_TAG[Event.TRAIN_LOG] in line]
        offsets = [o for o, _ in logs]
        taken = set()
        for k in range(samples):
            at = end * k // samples
            if at < head_cut or at >= tail_cut:
                i = bisect.bisect_left(offsets, at)
                if i < len(logs) and logs[i][0] not in taken and (logs[i][0] < head_cut) == (at < head_cut):
                    taken.add(logs[i][0])
                    self._keep(logs[i][0], self._decode(logs[i][1], (Event.TRAIN_LOG,)))
                continue
            window = self.pread(at, SAMPLE_BYTES)
            start = window.find(b"\n") + 1 if at > 0 else 0
            for offset, line in _lines(window, start, window.rfind(b"\n") + 1, at):
                if offset >= tail_cut:
                    break
                if offset not in taken and self._keep(offset, self._decode(line, (Event.TRAIN_LOG,))) is not None:
                    taken.add(offset)
                    break

    def _stage_ends(self, end: int) -> None:
        """Each stage's last progress and train_log: read backwards from where its events end."""
        order = sorted(self.found.items())
        first: dict[str, int] = {}  # stage → offset of its first and last line found so far
        last: dict[str, int] = {}
        for offset, record in order:
            first.setdefault(record.command or "", offset)
            last[record.command or ""] = offset
        rare = [(offset, record.command or "") for offset, record in order if record.event in RARE_EVENTS]
        for stage, offset in last.items():
            others = (o for o, s in rare if o > offset and s != stage)
            self._last_frequent(stage, first[stage], min(others, default=end))

    def _last_frequent(self, stage: str, since: int, before: int) -> None:
        """Keep the last progress and train_log of ``stage`` in [since, before), looking at most
        STAGE_END_BYTES back from ``before`` (a stage with no progress costs that much, once)."""
        tag = json.dumps({"command": stage})[1:-1].encode() if stage else None
        pos, window, looked = before, 65536, 0
        want = {Event.PROGRESS, Event.TRAIN_LOG}
        while pos > since and looked < STAGE_END_BYTES and Event.PROGRESS in want:
            lo = max(since, pos - window)
            data = self.pread(lo, pos - lo)
            looked += len(data)
            start = data.find(b"\n") + 1 if lo > since else 0  # ``since`` is a line start
            if lo > since and start == 0:  # no line starts in the window: widen it
                window *= 2
                continue
            for offset, line in reversed(list(_lines(data, start, len(data), lo))):
                if (tag in line) if tag else b'"command"' not in line:
                    for event in [e for e in want if _FREQUENT_TAG[e] in line]:
                        if self._keep(offset, self._decode(line, (event,))) is not None:
                            want.discard(event)
            # progress found: its train_log (written just before it) was in this window too, or there is none
            pos = lo + start


def _lines(buf: bytes, start: int, stop: int, base: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for the complete lines of ``buf[start:stop]`` (``stop`` just past a newline)."""
    while start < stop:
        newline = buf.find(b"\n", start, stop)
        if newline < 0:
            return
        yield base + start, buf[start:newline]
        start = newline + 1


def _gaps(spans: list[tuple[int, int]], lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """The parts of [lo, hi) that no span covers."""
    at = lo
    for a, b in sorted(spans):
        if a > at:
            yield at, min(a, hi)
        at = max(at, b)
        if at >= hi:
            return
    if at < hi:
        yield at, hi
