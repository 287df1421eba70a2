"""Admission as a pure function: runs, the pause flag and the guards' readings in, decisions out.

No processes, no database: each case is a queue (runs in order), what the guards say per run, and
the decisions expected, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from dialsum_tui.manager.runs.models import Action, Run, RunState
from dialsum_tui.manager.worker.admission import (
    PAUSED_REASON,
    SAME_DEVICE_REASON,
    Blocked,
    Cancel,
    Launch,
    Wait,
    decide,
)
from engine.contract import Stage

Q, W, R, S, F = RunState.QUEUED, RunState.WAITING, RunState.RUNNING, RunState.SUCCEEDED, RunState.FAILED


def run(id_: int, state: RunState = Q, *, gpus: str | None = None, after: int | None = None,
        stage: str | None = None, pid: int | None = None) -> Run:
    return Run(id=id_, nickname=f"n{id_}", config_path="c.yaml", config_yaml="", action=Action.PIPELINE,
               state=state, stage=stage, gpus=gpus, after=after, pid=pid)


GPU0_HELD = Blocked([0], "pid 4711 (not ours) holds 14.2 GiB on GPU 0")
DISK_FULL = Blocked(None, "disk: 149.0 GB of 150 GB used")


@dataclass
class Case:
    runs: list[Run]
    expected: list[tuple[type, int, str]]  # (decision type, run id, stage for Launch / reason part)
    guards: dict[int, Blocked] = field(default_factory=dict)
    paused: bool = False
    following: tuple[int, ...] = ()


CASES = {
    "a free run launches its first stage": Case([run(1)], [(Launch, 1, Stage.TRAIN)]),
    "a dependency that failed cancels the dependent run": Case(
        [run(1, F), run(2, after=1)], [(Cancel, 2, "run 1 (n1), which it was to start after, ended failed; `dialsum-tui retry 1`")]),
    "a dependency still running makes it wait": Case(
        [run(1, R, stage="train", pid=11), run(2, after=1)], [(Wait, 2, "after run 1 (n1, running)")],
        following=(1,)),
    "a dependency that succeeded lets it go": Case([run(1, S), run(2, after=1)], [(Launch, 2, Stage.TRAIN)]),
    "a missing dependency does not hold it": Case([run(2, after=1)], [(Launch, 2, Stage.TRAIN)]),
    "pause holds every pending run": Case([run(1), run(2, W)], [(Wait, 1, PAUSED_REASON), (Wait, 2, PAUSED_REASON)],
                                          paused=True),
    "pause lets a run between stages finish its pipeline": Case(
        [run(1, R, stage="infer"), run(2)], [(Launch, 1, Stage.INFER)], paused=True),
    "a running run on the same device holds it; another device goes": Case(
        [run(1, R, gpus="0", stage="train", pid=11), run(2, gpus="0"), run(3, gpus="1")],
        [(Wait, 2, SAME_DEVICE_REASON), (Launch, 3, Stage.TRAIN)], following=(1,)),
    "a running run on no named device holds every device": Case(
        [run(1, R, stage="train", pid=11), run(2, gpus="1")], [(Wait, 2, SAME_DEVICE_REASON)], following=(1,)),
    "a GPU guard blocks only later runs that want its devices": Case(
        [run(1, gpus="0"), run(2, gpus="0,1"), run(3, gpus="1")],
        [(Wait, 1, GPU0_HELD.reason), (Wait, 2, "queued behind run 1 for the same device(s)"),
         (Launch, 3, Stage.TRAIN)],
        guards={1: GPU0_HELD}),
    "the disk guard blocks everything behind it": Case(
        [run(1, gpus="0"), run(2, gpus="1"), run(3)],
        [(Wait, 1, DISK_FULL.reason), (Wait, 2, "queued behind run 1"), (Wait, 3, "queued behind run 1")],
        guards={1: DISK_FULL}),
    "a run between stages goes first, with its next stage": Case(
        [run(1), run(2, R, stage="infer")], [(Launch, 2, Stage.INFER)]),
    "a run whose stage is followed is no candidate": Case(
        [run(1, R, gpus="0", stage="train", pid=11), run(2, gpus="1")], [(Launch, 2, Stage.TRAIN)], following=(1,)),
    "one launch per tick": Case([run(1, gpus="0"), run(2, gpus="1")], [(Launch, 1, Stage.TRAIN)]),
    "final runs are not candidates": Case([run(1, F), run(2, S), run(3, RunState.CANCELLED)], []),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decide(case: Case) -> None:
    decisions = decide(case.runs, case.following, case.paused, lambda r, _stage: case.guards.get(r.id))
    got = [(type(d), d.run.id, d.stage if isinstance(d, Launch) else d.reason) for d in decisions]
    assert [(kind, run_id) for kind, run_id, _ in got] == [(kind, run_id) for kind, run_id, _ in case.expected]
    for (_k, _id, text), (_ek, _eid, want) in zip(got, case.expected, strict=True):
        assert want == text if isinstance(want, Stage) else want in text


def test_guards_are_asked_only_for_runs_that_got_past_the_queue_rules() -> None:
    """The GPU guard counts confirmation samples: asking it about a run that cannot start anyway
    (dependency, pause, busy device) or after the launch would change what it confirms."""
    asked: list[tuple[int, str]] = []

    def guards(r: Run, stage: str) -> Blocked | None:
        asked.append((r.id, stage))
        return GPU0_HELD if r.id == 3 else None

    runs = [run(1, R, gpus="0", stage="train", pid=11), run(2, after=1), run(3, gpus="0,1"),
            run(4, R, gpus="2", stage="evaluate"), run(5, gpus="3"), run(6, gpus="4")]
    decisions = decide(runs, (1,), False, guards)
    # Run 4 is between stages: asked first, and launched; nothing after it is asked.
    assert asked == [(4, Stage.EVALUATE)]
    assert isinstance(decisions[-1], Launch) and decisions[-1].run.id == 4

    asked.clear()
    runs[3] = run(4, R, gpus="2", stage="evaluate", pid=44)
    decide(runs, (1, 4), False, guards)
    assert asked == [(5, Stage.TRAIN)]  # 2: dependency, 3: device 0 busy with run 1; 5 launches, 6 never asked

