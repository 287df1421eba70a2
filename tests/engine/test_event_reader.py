"""Reading ``events.jsonl`` boundedly: ``EventTail`` (typed records, bounded per call, torn, corrupt
and over-long lines, truncation and replacement) and ``RunEvents`` (the same summary as a full
read; on a big file, the rare events exact by index or by scan, and reading that does not grow
with the file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import engine.artifacts as artifacts
import engine.event_reader as event_reader
from engine.artifacts import EventTail, EventWriter, events_index_path, read_events
from engine.contract import (
    EVENTS_INDEX_FILE,
    Artifact,
    ArtifactKind,
    Eval,
    Event,
    Failed,
    FailureKind,
    Finished,
    Phase,
    PhaseChanged,
    Progress,
    RunFiles,
    Started,
    TrainLog,
    Warning_,
    parse_event,
)
from engine.event_reader import RunEvents, Thinned


def write_run(path: Path, steps: int, eval_every: int = 50, *, fail: bool = False) -> None:
    """A train stage of ``steps`` logged steps (an eval and a checkpoint every ``eval_every``), then infer."""
    with EventWriter(path, command="train") as ev:
        ev.emit(Event.STARTED, nickname="코바트", model="m", pid=1, world_size=1)
        ev.emit(Event.PHASE, name=Phase.LOAD_DATA)
        ev.emit(Event.WARNING, message='3 dialogues truncated ("event": "eval" in a message is not an event)', count=3)
        ev.emit(Event.PHASE, name=Phase.TRAIN)
        for step in range(1, steps + 1):
            ev.emit(Event.TRAIN_LOG, step=step, epoch=step / 1000, loss=round(3.0 - step / steps, 6), lr=5e-5, grad_norm=1.5)
            ev.emit(Event.PROGRESS, step=step, total=steps, epoch=step / 1000, eta_s=float(steps - step), tokens_per_s=5123.0)
            if step % eval_every == 0:
                ev.emit(Event.EVAL, step=step, rouge1=0.4, rouge2=0.2, rougeL=0.3, final=30.0 + step / steps, split="dev")
                ev.emit(Event.ARTIFACT, kind=ArtifactKind.CHECKPOINT, path=f"ck/checkpoint-{step}", bytes=10)
        ev.emit(Event.PHASE, name=Phase.SAVE)
        ev.emit(Event.ARTIFACT, kind=ArtifactKind.FINAL_MODEL, path="ck/final_model", bytes=10)
        ev.emit(Event.FINISHED, seconds=9.0, pid=1)
    with EventWriter(path, command="infer") as ev:
        ev.emit(Event.STARTED, nickname="코바트", model="ck/final_model", split="test")
        ev.emit(Event.PHASE, name=Phase.GENERATE, split="test", n=40)
        for batch in range(1, 5):
            ev.emit(Event.PROGRESS, step=batch, total=4)
        if fail:
            ev.emit(Event.FAILED, kind=FailureKind.OOM, message="CUDA out of memory", hint=FailureKind.OOM.hint)
        else:
            ev.emit(Event.ARTIFACT, kind=ArtifactKind.SUBMISSION, path="s/x_submission.csv", bytes=5)
            ev.emit(Event.FINISHED, seconds=2.0, pid=2)


def full_summary(path: Path, max_points: int = event_reader.DEFAULT_POINTS) -> RunEvents:
    """The summary built from every line (the old full read, typed)."""
    return RunEvents.from_records(filter(None, map(parse_event, read_events(path))), max_points)


def same_but_curve(sampled: RunEvents, full: RunEvents, max_points: int) -> None:
    """Everything but the loss curve equal; the curve a thinned subset of the real one, ends included."""
    assert [s.stage for s in sampled.stages] == [s.stage for s in full.stages]
    for mine, real in zip(sampled.stages, full.stages, strict=True):
        for name in ("started", "phases", "progress", "last_log", "evals", "artifacts", "warnings", "finished",
                     "failures", "ended"):
            assert getattr(mine, name) == getattr(real, name), (mine.stage, name)
        every = [r for r in map(parse_event, read_events(sampled.path)) if isinstance(r, TrainLog) and r.command == mine.stage]
        assert len(mine.loss) <= max_points
        assert set(mine.loss) <= set(every)
        steps = [r.step for r in mine.loss]
        assert steps == sorted(steps) and len(set(steps)) == len(steps)
        if every:
            assert mine.loss[0] == every[0] and mine.loss[-1] == every[-1]
            assert len(mine.loss) >= min(len(every), max_points) // 3  # spread over the run, not clumped


@pytest.fixture
def small_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """The big-file path at test size: 32 KiB head and tail, 1 KiB samples, a 64 KiB index stride."""
    monkeypatch.setattr(event_reader, "HEAD_BYTES", 32 * 1024)
    monkeypatch.setattr(event_reader, "TAIL_BYTES", 32 * 1024)
    monkeypatch.setattr(event_reader, "SAMPLE_BYTES", 1024)
    monkeypatch.setattr(event_reader, "STAGE_END_BYTES", 256 * 1024)
    monkeypatch.setattr(artifacts, "INDEX_STRIDE", 64 * 1024)


# --- EventTail ------------------------------------------------------------------------------------


def test_tail_yields_typed_records(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventWriter(path, command="train") as ev:
        ev.emit(Event.STARTED, nickname="kobart", pid=7)
        ev.emit(Event.PHASE, name=Phase.TRAIN)
        ev.emit(Event.TRAIN_LOG, step=1, loss=2.0)
        ev.emit(Event.PROGRESS, step=1, total=2)
        ev.emit(Event.EVAL, step=1, final=30.0)
        ev.emit(Event.ARTIFACT, kind=ArtifactKind.CHECKPOINT, path="c", bytes=1)
        ev.emit(Event.WARNING, message="w")
        ev.emit(Event.FINISHED, seconds=1.0)
        ev.emit(Event.FAILED, kind=FailureKind.OOM, message="m")
    with path.open("a") as fh:
        fh.write(json.dumps({"v": 1, "event": "from_the_future", "command": "train"}) + "\n")
    records = EventTail(path).read_records()
    assert [type(r) for r in records] == [Started, PhaseChanged, TrainLog, Progress, Eval, Artifact, Warning_, Finished,
                                          Failed]
    assert records[0].nickname == "kobart" and records[2].loss == 2.0 and records[-1].kind == "oom"


def test_a_partial_last_line_is_left_for_the_next_call(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    line = json.dumps({"v": 1, "event": "progress", "command": "train", "step": 3, "total": 9}) + "\n"
    path.write_text(line + line[:20])
    tail = EventTail(path)
    assert [r.step for r in tail.read_records()] == [3]
    assert tail.read_records() == [] and tail.offset == len(line)
    with path.open("a") as fh:
        fh.write(line[20:])
    assert [r.step for r in tail.read_records()] == [3]
    assert tail.offset == 2 * len(line)


def test_corrupt_and_over_long_lines_are_skipped_in_bounded_reads(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = [json.dumps({"v": 1, "event": "progress", "command": "train", "step": i}) + "\n" for i in range(3)]
    huge = json.dumps({"v": 1, "event": "warning", "message": "x" * 5000}) + "\n"  # a corrupt 5 kB line
    path.write_text(good[0] + "{not json\n" + huge + good[1] + '["a list"]\n' + good[2])
    tail = EventTail(path, max_bytes=256)
    steps, reads = [], []
    while True:
        before = tail.bytes_read
        steps += [r.step for r in tail.read_records()]
        reads.append(tail.bytes_read - before)
        if not tail.behind:
            break
    assert steps == [0, 1, 2]
    assert max(reads) <= 256  # never more than the cap at once, the 5 kB line included
    assert tail.skipped_lines == 3  # the torn line, the over-long one, the list
    assert tail.offset == path.stat().st_size


def test_read_new_still_returns_every_event_as_dicts(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_run(path, steps=40)
    everything = [json.loads(line) for line in path.read_text().splitlines()]
    assert EventTail(path, max_bytes=512).read_new() == everything  # many bounded reads, one answer
    assert read_events(path) == everything


def test_drain_catches_up_in_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_run(path, steps=200)
    tail = EventTail(path, max_bytes=4096)
    first = tail.read_records()
    assert tail.behind and 0 < len(first) < 100
    rest = list(tail.drain())
    assert not tail.behind and tail.offset == path.stat().st_size
    assert len(first) + len(rest) == len(read_events(path))


def test_truncation_and_replacement_start_again(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    line = lambda step: json.dumps({"v": 1, "event": "progress", "command": "train", "step": step}) + "\n"  # noqa: E731
    path.write_text(line(1) + line(2) + line(3))
    tail = EventTail(path)
    assert [r.step for r in tail.read_records()] == [1, 2, 3]
    path.write_text(line(4))  # truncated (shorter than the offset)
    assert [r.step for r in tail.read_records()] == [4]
    other = tmp_path / "new.jsonl"
    other.write_text(line(5) + line(6) + line(7) + line(8))  # replaced by a longer file: another inode
    os.replace(other, path)
    assert [r.step for r in tail.read_records()] == [5, 6, 7, 8]


def test_skip_to_end_reads_only_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_run(path, steps=300)
    tail = EventTail(path, max_bytes=8192)
    tail.skip_to_end()
    assert tail.offset == path.stat().st_size and tail.bytes_read <= 8192
    with EventWriter(path, command="evaluate") as ev:
        ev.emit(Event.STARTED, nickname="x")
    assert [type(r) for r in tail.read_records()] == [Started]


# --- the writer's index ---------------------------------------------------------------------------


def test_the_index_points_at_every_rare_event_and_vouches_for_the_rest(tmp_path: Path, small_ends: None) -> None:
    path = tmp_path / "events.jsonl"
    write_run(path, steps=2000, eval_every=500)
    index = events_index_path(path)
    assert index == RunFiles(tmp_path).events_index and index.name == EVENTS_INDEX_FILE
    data = path.read_bytes()
    entries = [json.loads(line) for line in index.read_text().splitlines()]
    rare = [e for e in entries if "at" in e]
    lines = [json.loads(data[e["at"]:e["end"]]) for e in rare]
    assert [line["event"] for line in lines] == [e["event"] for e in rare]
    expected = [json.loads(x) for x in data.splitlines()]
    assert lines == [e for e in expected if e["event"] not in ("progress", "train_log")]
    marks = [e for e in entries if "to" in e]
    assert len(marks) >= len(data) // (64 * 1024) - 1  # one per stride, and at close
    assert max(e.get("to", e.get("end")) for e in entries) == len(data)


def test_a_new_events_file_starts_a_new_index(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_run(path, steps=5)
    path.unlink()  # the index of the removed file stays behind
    with EventWriter(path, command="train") as ev:
        ev.emit(Event.STARTED, nickname="x")
    entries = [json.loads(line) for line in events_index_path(path).read_text().splitlines()]
    assert [e.get("event") for e in entries if "at" in e] == ["started"]


# --- RunEvents ------------------------------------------------------------------------------------


def test_thinned_keeps_first_last_and_even_spacing() -> None:
    thin = Thinned(10)
    for i in range(1000):
        thin.add(i)
    kept = thin.items()
    assert kept[0] == 0 and kept[-1] == 999 and len(kept) <= 10
    gaps = {b - a for a, b in zip(kept[:-2], kept[1:-1], strict=True)}
    assert len(gaps) == 1  # evenly spaced (the last one aside)


@pytest.mark.parametrize("max_points", [500, 7])
def test_a_small_file_gives_the_same_summary_as_a_full_read(tmp_path: Path, max_points: int) -> None:
    path = tmp_path / "events.jsonl"
    write_run(path, steps=120, eval_every=25, fail=True)
    summary = RunEvents.open(path, max_points)
    full = full_summary(path, max_points)
    assert summary.exact and summary.end == path.stat().st_size
    assert summary.stages == full.stages and summary.kept == full.kept
    train, infer = summary.stage("train"), summary.stage("infer")
    assert train.progress.step == 120 and train.last_log.step == 120 and len(train.loss) <= max_points
    assert [e.step for e in train.evals] == [25, 50, 75, 100] and train.phase.name == Phase.SAVE
    assert isinstance(train.ended, Finished) and isinstance(infer.ended, Failed) and infer.progress.step == 4


def test_missing_file_is_an_empty_summary(tmp_path: Path) -> None:
    summary = RunEvents.open(tmp_path / "nope.jsonl")
    assert summary.stages == () and summary.end == 0


@pytest.mark.parametrize("index", ["kept", "removed", "wrong", "older stage without one"])
def test_a_big_file_is_exact_but_for_the_sampled_curve(tmp_path: Path, small_ends: None, index: str) -> None:
    path = tmp_path / "events.jsonl"
    if index == "older stage without one":  # an engine from before the index wrote the train stage
        write_run(path, steps=3000, eval_every=400)
        text = path.read_bytes()
        cut = text.index(b'"command": "infer"')
        cut = text.rindex(b"\n", 0, cut) + 1
        path.write_bytes(text[:cut])
        events_index_path(path).unlink()
        with EventWriter(path, command="infer") as ev:
            for line in text[cut:].splitlines():
                raw = json.loads(line)
                ev.emit(raw.pop("event"), **{k: v for k, v in raw.items() if k not in ("v", "ts", "command")})
    else:
        write_run(path, steps=3000, eval_every=400)
    if index == "removed":
        events_index_path(path).unlink()
    elif index == "wrong":  # shifted by one line: every entry points at another event
        entries = events_index_path(path).read_text().replace('"at": ', '"at": 1').replace('"end": ', '"end": 1')
        events_index_path(path).write_text(entries)
    summary = RunEvents.open(path, 60, full_below=0)
    assert not summary.exact and summary.end == path.stat().st_size
    same_but_curve(summary, full_summary(path, 60), 60)
    assert summary.indexed == (index in ("kept", "older stage without one"))
    if index == "kept":
        assert summary.scanned_bytes == 0 and summary.bytes_read < path.stat().st_size / 3
    else:
        assert summary.scanned_bytes > 0


@pytest.mark.parametrize("index", ["removed", "wrong"])
def test_a_scan_leaves_an_index_so_the_next_open_seeks(tmp_path: Path, small_ends: None, index: str) -> None:
    # A run written before the index existed (or whose index is wrong) pays the scan once.
    path = tmp_path / "events.jsonl"
    write_run(path, steps=3000, eval_every=400)
    if index == "removed":
        events_index_path(path).unlink()
    else:
        entries = events_index_path(path).read_text().replace('"at": ', '"at": 1').replace('"end": ', '"end": 1')
        events_index_path(path).write_text(entries)
    first = RunEvents.open(path, 60, full_below=0)
    assert first.scanned_bytes > 0 and not first.indexed
    again = RunEvents.open(path, 60, full_below=0)
    assert again.indexed and again.scanned_bytes == 0 and again.bytes_read < path.stat().st_size / 3
    same_but_curve(again, full_summary(path, 60), 60)


def test_a_live_file_with_a_torn_last_line_ends_before_it(tmp_path: Path, small_ends: None) -> None:
    path = tmp_path / "events.jsonl"
    write_run(path, steps=1500, eval_every=300)
    size = path.stat().st_size
    with path.open("ab") as fh:
        fh.write(b'{"v": 1, "ts": 1.0, "event": "eval", "command": "tr')
    summary = RunEvents.open(path, 50, full_below=0)
    assert summary.end == size
    same_but_curve(summary, full_summary(path, 50), 50)


def test_reading_a_big_file_does_not_grow_with_it(tmp_path: Path, small_ends: None) -> None:
    """Ten times the file, the same reading: the head, the tail, the curve's seeks, the index and the
    rare lines it points at (those grow with the evaluations: they are what is shown)."""
    sizes, reads = [], []
    for steps in (2_000, 20_000):
        path = tmp_path / f"{steps}" / "events.jsonl"
        write_run(path, steps=steps, eval_every=1000)
        summary = RunEvents.open(path, 100, full_below=0)
        data = path.read_bytes()
        rare = sum(len(line) + 2 for line in data.splitlines()
                   if json.loads(line)["event"] not in ("progress", "train_log"))
        fixed = (event_reader.HEAD_BYTES + event_reader.TAIL_BYTES + 100 * event_reader.SAMPLE_BYTES
                 + 2 * event_reader.STAGE_END_BYTES + events_index_path(path).stat().st_size + rare)
        assert summary.bytes_read <= fixed, (steps, summary.bytes_read, fixed)
        assert summary.scanned_bytes == 0
        sizes.append(len(data))
        reads.append(summary.bytes_read)
    assert sizes[1] > 9 * sizes[0]
    assert reads[1] - reads[0] < (sizes[1] - sizes[0]) / 20, (sizes, reads)


def test_the_scan_in_small_chunks_steps_over_an_over_long_line(tmp_path: Path, small_ends: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_reader, "SCAN_BYTES", 4096)  # lines cross every chunk boundary
    monkeypatch.setattr(event_reader, "READ_CAP", 2048)
    path = tmp_path / "events.jsonl"
    write_run(path, steps=1500, eval_every=100)
    data = path.read_bytes()
    middle = data.index(b"\n", len(data) // 2) + 1
    junk = b'{"v": 1, "event": "eval", "message": "' + b"x" * 20_000 + b'\n'  # a torn 20 kB line
    path.write_bytes(data[:middle] + junk + data[middle:])
    events_index_path(path).unlink()
    summary = RunEvents.open(path, 40, full_below=0)
    full = full_summary(path, 40)
    same_but_curve(summary, full, 40)
    assert summary.skipped_lines >= 1 and summary.scanned_bytes > len(data) // 2
