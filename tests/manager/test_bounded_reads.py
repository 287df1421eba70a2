"""Every reader of run files is bounded by what it shows, not by the file's size (issue 24 point 2):
results, compare, samples, the hand-off, the store's rebuild of a run, a stopped run's resume point,
a restarted worker's catch-up and the TUI's first snapshot read the same few MiB, and hold the same
memory, whether the run's ``events.jsonl`` is 12 MB or 4× that.

Bytes are counted by the kernel (``rchar`` of ``/proc/self/io``: every ``read``/``pread`` of the
process, whatever module made it), memory by ``tracemalloc``'s peak; no wall-clock timing. The
workspace is the one ``benchmarks/workspace_big_events.py`` measures at 2 GB."""

from __future__ import annotations

import importlib.util
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from dialsum_tui.manager.guards.gpu import NoGpuSource
from dialsum_tui.manager.runs import events as run_events
from dialsum_tui.manager.runs.events import absorb, catch_up, keep_bounded, stage_records
from dialsum_tui.manager.runs.retry import resume_point
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.snapshot import SnapshotSource
from dialsum_tui.manager.store.rebuild import restore_run
from dialsum_tui.manager.workspace.layout import find_workspace
from engine.artifacts import EventTail, events_index_path
from engine.contract import RunFiles, Stage

from support import REPO

MB = 1_000_000
SMALL, BIG = 12 * MB, 48 * MB  # both past the size read whole (engine.event_reader.FULL_READ_BYTES)
SLACK = 1024 * 1024  # the index and the rare events it points at grow with the run: a few KiB here


def _bench():
    spec = importlib.util.spec_from_file_location("workspace_big_events", REPO / "benchmarks" / "workspace_big_events.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("workspace_big_events", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    bench = _bench()
    return {size: bench.build(tmp_path_factory.mktemp(f"ws{size // MB}mb"), size, 500) for size in (SMALL, BIG)}


def _readers(built: dict) -> dict[str, Callable[[], object]]:
    manager = Manager.open(find_workspace(built["ws"]))
    big, small = built["big"], built["small"]
    ws = manager.workspace
    events = RunFiles(ws.run_dir(big)).events

    def snapshot() -> object:
        source = SnapshotSource(manager, NoGpuSource())
        source.board()
        return source.run(big)

    return {
        "results": manager.results,
        "compare": lambda: manager.compare([big, small]),
        "samples": lambda: manager.samples(big, small),
        "handoff": manager.handoff,
        "tui first snapshot": snapshot,
        "rebuild": lambda: restore_run(ws, big),
        "resume point": lambda: resume_point(ws, manager.get(big)),
        "worker catch-up": lambda: catch_up(EventTail(events), Stage.TRAIN),
    }


def _rchar() -> int:
    with open("/proc/self/io", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("rchar:"))


def _cost(read: Callable[[], object]) -> tuple[int, int]:
    """(bytes read, peak Python memory) of one call, every summary read afresh."""
    run_events.forget_summaries()
    tracemalloc.start()
    before = _rchar()
    try:
        read()
        return _rchar() - before, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_big_run_is_what_the_readers_show(workspaces: dict[int, dict]) -> None:
    built = workspaces[BIG]
    manager = Manager.open(find_workspace(built["ws"]))
    row = next(r for r in manager.results() if r.run_id == built["big"])
    assert row.code == "done" and row.final == 36.0, row.evidence
    comparison = manager.compare([built["big"], built["small"]])
    assert len(comparison.curves[0].rouge) == built["written"]["evals"] - 1  # every in-training evaluation
    assert 2 < len(comparison.curves[0].loss) <= 500  # a bounded curve, not every step
    restored = restore_run(manager.workspace, built["big"])
    assert restored.state.value == "succeeded" and restored.progress["step"] == 16  # infer's last batch
    assert restored.metrics["final"] == 36.0 and restored.metrics["stage"] == Stage.EVALUATE


def test_a_big_catch_up_keeps_what_reading_every_line_keeps(workspaces: dict[int, dict]) -> None:
    """A restarted worker's catch-up through the summary gives the verdict and the store the same
    records as reading every line would: every rare one, the newest warnings, the last progress and
    train_log, and so the same progress and metrics."""
    built = workspaces[BIG]
    events = RunFiles(Path(built["ws"]) / "runs" / str(built["big"])).events
    run_events.forget_summaries()
    for stage in Stage:
        exact = keep_bounded(stage_records(EventTail(events).drain(), stage))
        tail = EventTail(events)
        caught = catch_up(tail, stage)
        assert caught == exact, stage
        assert absorb({}, {}, caught, stage) == absorb({}, {}, exact, stage)
        assert tail.offset == events.stat().st_size  # it follows on from the end


@pytest.mark.parametrize("indexed", [True, False], ids=["index", "no index"])
def test_reading_does_not_grow_with_the_file(workspaces: dict[int, dict], indexed: bool) -> None:
    hidden = []
    if not indexed:  # a run written by an engine from before the index: the middle is scanned
        for built in workspaces.values():
            index = events_index_path(RunFiles(Path(built["ws"]) / "runs" / str(built["big"])).events)
            index.rename(index.with_name(index.name + ".hidden"))
            hidden.append(index)
    try:
        costs = {size: {name: _cost(read) for name, read in _readers(built).items()}
                 for size, built in workspaces.items()}
    finally:
        for index in hidden:
            index.with_name(index.name + ".hidden").rename(index)
    for name in costs[SMALL]:
        (small_read, small_peak), (big_read, big_peak) = costs[SMALL][name], costs[BIG][name]
        # Memory never follows the file; with an index neither do the bytes read (without one, the
        # middle is scanned through one reused buffer: the bytes grow, the memory does not).
        assert big_peak <= small_peak + SLACK, (name, small_peak, big_peak)
        if indexed:
            assert big_read <= small_read + SLACK and big_read < BIG / 4, (name, small_read, big_read)
