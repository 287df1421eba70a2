"""Provides the manager's one reading of a run's events: typed records (:mod:`engine.contract`), never
raw dicts, and every read bounded by what it is for, not by the file's size (a run that logs every
step writes GBs; docs/events.md "Reading a big file").

- :func:`run_summary`: what a reader shows of a whole run (:class:`engine.event_reader.RunEvents`),
  cached per file state so one command that asks several questions of a run reads it once.
- :func:`keep_bounded`: of a stage's records, those a verdict and the store need (every rare event,
  the newest warnings, the last ``progress`` and ``train_log``), in file order.
- :func:`catch_up`: a stage's records from where a follower stands to the file's end, exact for a
  small gap, through the bounded summary for a big one.
- :func:`stage_events` and :func:`absorb`: which records are a stage's, and the progress and metrics
  they add up to (the latest of each kind wins). The worker follows with these and the store's
  rebuild replays a run through the same functions, so both agree.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from engine.artifacts import EventTail
from engine.contract import Eval, Event, EventRecord, Progress, Started, TrainLog, Warning_
from engine.event_reader import FULL_READ_BYTES, MAX_WARNINGS, RunEvents

# The fields every record carries (version, time, name, stage): not part of what it reports.
_META = frozenset(f.name for f in fields(EventRecord))
_FREQUENT = (Progress, TrainLog)  # only the last of each is worth keeping (engine.contract.FREQUENT_EVENTS)


def values(record: EventRecord) -> dict[str, Any]:
    """The fields a record reports (not its version, time, name or stage), those it carries only."""
    return {f.name: v for f in fields(record) if f.name not in _META and (v := getattr(record, f.name)) is not None}


def stage_records(records: Iterable[EventRecord], stage: str) -> Iterator[EventRecord]:
    """The records written by ``stage``, lazily (lines without a command belong to every stage)."""
    return (r for r in records if r.command in (None, stage))


def stage_events(records: Iterable[EventRecord], stage: str) -> list[EventRecord]:
    """The records written by ``stage`` (lines without a command belong to every stage)."""
    return list(stage_records(records, stage))


# The keys the store's progress and metrics add to a record's fields: the stage that wrote it, when.
_STAGE, _TS = "stage", "ts"
_EVAL_FIELDS = frozenset(f.name for f in fields(Eval)) - _META
_PROGRESS_FIELDS = frozenset(f.name for f in fields(Progress)) - _META


def absorb(progress: dict[str, Any], metrics: dict[str, Any], new: Iterable[EventRecord],
           stage: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's progress and metrics after a stage's new records (the latest of each kind wins).

    A field a record does not carry is absent from what it adds (an evaluation without ``loss``
    leaves an earlier one's in the metrics).
    """
    for record in new:
        if isinstance(record, Progress):
            progress = values(record) | {_STAGE: stage, _TS: record.ts}
        elif isinstance(record, Eval):
            metrics = metrics | values(record) | {_STAGE: stage}
        elif isinstance(record, TrainLog) and record.loss is not None:
            progress = progress | {"loss": record.loss}
    return progress, metrics


def stored_progress(progress: dict[str, Any]) -> Progress | None:
    """The store's progress of a run (:func:`absorb`) as the report it came from, its ``command`` the
    stage that wrote it; None before the first report."""
    if not progress:
        return None
    stage = progress.get(_STAGE)
    return Progress(Event.PROGRESS, ts=float(progress.get(_TS) or 0.0), command=stage if isinstance(stage, str) else None,
                    **{k: v for k, v in progress.items() if k in _PROGRESS_FIELDS})


def stored_eval(metrics: dict[str, Any]) -> Eval | None:
    """The store's metrics of a run (:func:`absorb`) as the evaluation they came from, its
    ``command`` the stage that wrote it; None when no evaluation was recorded."""
    if not metrics:
        return None
    stage = metrics.get(_STAGE)
    return Eval(Event.EVAL, command=stage if isinstance(stage, str) else None,
                **{k: v for k, v in metrics.items() if k in _EVAL_FIELDS})


def keep_bounded(records: Iterable[EventRecord], max_warnings: int = MAX_WARNINGS) -> list[EventRecord]:
    """Of ``records`` (in file order), what a verdict and :func:`absorb` need, in file order: every
    rare record but warnings, the newest ``max_warnings`` warnings, and the last ``progress`` and
    ``train_log`` (:func:`absorb` of the result equals :func:`absorb` of all of them).

    Memory is the records kept, however many go through (a stage logging every step writes millions).
    """
    rare: list[tuple[int, EventRecord]] = []
    warnings: deque[tuple[int, EventRecord]] = deque(maxlen=max(0, max_warnings))
    last: dict[type, tuple[int, EventRecord]] = {}
    for seq, record in enumerate(records):
        if isinstance(record, _FREQUENT):
            last[type(record)] = (seq, record)
        elif isinstance(record, Warning_):
            warnings.append((seq, record))
        else:
            rare.append((seq, record))
    return [record for _, record in sorted([*rare, *warnings, *last.values()], key=lambda item: item[0])]


def catch_up(tail: EventTail, stage: str) -> list[EventRecord]:
    """``stage``'s records from ``tail.offset`` to the file's end now (:func:`keep_bounded`), and the
    tail moved past them.

    A gap up to ``FULL_READ_BYTES`` is read exactly. A bigger one (a stage that ran for days while no
    worker watched) is taken from the run's bounded summary (:func:`run_summary`): ``stage``'s records
    from its last ``started`` on (a stage writes ``started`` first, so more than a few MiB since the
    offset always hold it), with the tail then following from where the summary ends. Every rare
    record and the last ``progress``/``train_log`` are the same either way.
    """
    try:
        size = os.stat(tail.path).st_size
    except FileNotFoundError:
        return []
    if size - tail.offset <= FULL_READ_BYTES:
        return keep_bounded(stage_records(tail.drain(), stage))
    summary = run_summary(tail.path)
    mine = stage_events(summary.kept, stage)
    starts = [i for i, r in enumerate(mine) if isinstance(r, Started) and r.command == stage]
    tail.offset = max(tail.offset, summary.end)
    return keep_bounded(mine[starts[-1]:] if starts else mine)


# --- what a score was made on -------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreBasis:
    """What a dev score was made on and how: numbers on different bases are never compared or ranked.

    ``n`` is the number of dev rows scored; None (an evaluation from before the engine recorded it)
    matches any. The engine writes no fingerprint of the references yet, so two dev sets of the same
    size with different rows still look alike here.
    """

    tokenizer: str | None
    scorer: str | None
    n: int | None

    @classmethod
    def of(cls, record: Eval) -> ScoreBasis:
        return cls(record.tokenizer, record.scorer, record.n)

    def differs(self, other: ScoreBasis) -> bool:
        """Whether scores on ``self`` and ``other`` cannot be compared (an unknown ``n`` matches any)."""
        if (self.tokenizer, self.scorer) != (other.tokenizer, other.scorer):
            return True
        return self.n is not None and other.n is not None and self.n != other.n

    @property
    def text(self) -> str:
        """``"mecab/competition, n=499"``."""
        made = f"{self.tokenizer or '-'}/{self.scorer or '-'}"
        return made + (f", n={self.n}" if self.n is not None else "")


def ranked_basis(scored: Iterable[tuple[int, ScoreBasis]]) -> ScoreBasis | None:
    """Of (run id, basis) pairs, the basis scores are ranked on: the one most runs were scored on
    (ties: the newest run's); None when there is none. Scores on another basis are not ranked."""
    counts: dict[ScoreBasis, tuple[int, int]] = {}
    for run_id, basis in scored:
        seen, newest = counts.get(basis, (0, run_id))
        counts[basis] = (seen + 1, max(newest, run_id))
    return max(counts, key=lambda b: counts[b]) if counts else None


# --- the summaries, read once per file state ----------------------------------------------------

_CACHE_SIZE = 256  # summaries are small (a few hundred records); a workspace has a few hundred runs
_cache: OrderedDict[tuple, RunEvents] = OrderedDict()
_cache_lock = threading.Lock()


def run_summary(path: Path | str) -> RunEvents:
    """The bounded summary of one ``events.jsonl`` (:meth:`RunEvents.open`), read again only once
    the file changed (its inode, size or mtime); an empty summary when it does not exist."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError:
        return RunEvents(path)
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    summary = RunEvents.open(path)
    with _cache_lock:
        _cache[key] = summary
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return summary


def forget_summaries() -> None:
    """Drop every cached summary (the next :func:`run_summary` of each file reads it again)."""
    with _cache_lock:
        _cache.clear()
