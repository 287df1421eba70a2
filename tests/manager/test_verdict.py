"""The judgement on a stage that ended, as a pure function: evidence in, what the run becomes out."""

from __future__ import annotations

import pytest

from dialsum_tui.manager.runs.models import Action, Run, RunState
from dialsum_tui.manager.worker.verdict import CANCEL, Ended, judge, root_failure
from engine.contract import Event, Failed, FailureKind, Finished, Stage, Started

OOM_LINE = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"


def run(action: Action = Action.PIPELINE) -> Run:
    return Run(id=7, nickname="n", config_path="c.yaml", config_yaml="", action=action, state=RunState.RUNNING)


def finished(stage: Stage) -> list:
    return [Started(Event.STARTED, command=stage, ts=1.0), Finished(Event.FINISHED, command=stage, ts=2.0)]


def failed(stage: Stage, kind: FailureKind, message: str, ts: float = 2.0, **extra) -> Failed:
    return Failed(Event.FAILED, command=stage, kind=kind, message=message, ts=ts, **extra)


def never() -> bool:
    raise AssertionError("not asked for this case")


CASES = {
    "train done goes on to infer": (
        Ended(Stage.TRAIN, 1, 0, finished(Stage.TRAIN), ""),
        (None, 0, None, "train done; infer starts when the GPU is released")),
    "the last stage done succeeds": (
        Ended(Stage.EVALUATE, 1, 0, finished(Stage.EVALUATE), ""), (RunState.SUCCEEDED, 0, None, None)),
    "a failed event fails the run with its kind": (
        Ended(Stage.TRAIN, 1, 1, [failed(Stage.TRAIN, FailureKind.OOM, OOM_LINE)], ""),
        (RunState.FAILED, 1, FailureKind.OOM, None)),
    "a cancel during a stage cancels": (
        Ended(Stage.TRAIN, 1, 130, [failed(Stage.TRAIN, FailureKind.INTERRUPTED, "interrupted")], "", CANCEL),
        (RunState.CANCELLED, 130, None, "cancelled during train")),
    "a cancel that came after the last stage finished succeeds": (
        Ended(Stage.EVALUATE, 1, 0, finished(Stage.EVALUATE), "", CANCEL),
        (RunState.SUCCEEDED, 0, None, "finished before the cancel took effect")),
    "a stop by the disk watch is a disk failure": (
        Ended(Stage.TRAIN, 1, 130, [failed(Stage.TRAIN, FailureKind.INTERRUPTED, "interrupted")], "",
              "disk: 146.0 GB of 150 GB used"),
        (RunState.FAILED, 130, FailureKind.DISK, None)),
    "a re-adopted stage's verdict event gives the exit status": (
        Ended(Stage.TRAIN, 1, None, [failed(Stage.TRAIN, FailureKind.INTERRUPTED, "interrupted")], ""),
        (RunState.FAILED, 130, FailureKind.INTERRUPTED, None)),
}


@pytest.mark.parametrize("ended, expected", CASES.values(), ids=CASES.keys())
def test_judge(ended: Ended, expected: tuple) -> None:
    outcome = judge(run(), ended, artifacts_done=never, others_held=lambda: None)
    state, rc, kind, reason = expected
    assert (outcome.state, outcome.exit_code) == (state, rc)
    assert (outcome.failure.kind if outcome.failure else None) == kind
    assert outcome.reason == reason
    if kind is FailureKind.DISK:
        assert outcome.failure.message == ended.stop_reason and outcome.failure.hint == FailureKind.DISK.hint


def test_a_stage_gone_silently_is_judged_from_artifacts_then_log_then_interrupted() -> None:
    silent = Ended(Stage.TRAIN, 4242, None, [], "")
    done = judge(run(), silent, artifacts_done=lambda: True, others_held=never)
    assert done.state is None and done.next_stage == Stage.INFER

    oom = judge(run(), Ended(Stage.TRAIN, 4242, None, [], OOM_LINE), artifacts_done=lambda: False, others_held=never)
    assert oom.state is RunState.FAILED and oom.failure.kind == FailureKind.OOM

    lost = judge(run(), silent, artifacts_done=lambda: False, others_held=never)
    assert lost.state is RunState.INTERRUPTED and "process 4242 vanished while no worker watched it" in lost.reason


def test_an_oom_names_who_else_held_the_gpu() -> None:
    ended = Ended(Stage.TRAIN, 1, 1, [failed(Stage.TRAIN, FailureKind.OOM, OOM_LINE)], "")
    outcome = judge(run(), ended, artifacts_done=never, others_held=lambda: "pid 4711 held 14.2 GiB on GPU 0")
    assert "meanwhile pid 4711 held 14.2 GiB on GPU 0" in outcome.failure.message


def test_root_failure_keeps_the_rank_that_broke_first() -> None:
    events = [failed(Stage.TRAIN, FailureKind.INTERRUPTED, "interrupted", ts=3.0, rank=0),
              failed(Stage.TRAIN, FailureKind.OOM, OOM_LINE, ts=2.0, rank=1),
              failed(Stage.TRAIN, FailureKind.UNKNOWN, "connection lost", ts=4.0, rank=2)]
    kept = [e for e in root_failure(events) if isinstance(e, Failed)]
    assert len(kept) == 1 and kept[0].kind == FailureKind.OOM and kept[0].message == f"rank 1: {OOM_LINE}"
    single = [failed(Stage.TRAIN, FailureKind.OOM, OOM_LINE)]
    assert root_failure(single) == single
