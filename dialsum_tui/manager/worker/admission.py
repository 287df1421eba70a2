"""Provides admission: which run may start its next stage now, and why each other one waits.

A pure function of the store's runs, the pause flag and the guards' readings (pueue's task handler
decides, other modules act): :func:`decide` returns decisions, the worker applies them. Tested
without processes or a database (tests/manager/test_admission.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from dialsum_tui.manager.guards.memory import SAME_DEVICE_REASON
from dialsum_tui.manager.runs.models import Run, RunState, parse_gpus

# What pause means, said the same way everywhere (CLI, TUI, docs): runs that have not started wait;
# a run already under way goes on into its next stage.
PAUSE_MEANING = "nothing new starts; a running pipeline finishes its stages"
PAUSED_REASON = "queue paused: `dialsum-tui resume` to continue"


@dataclass(frozen=True)
class Blocked:
    """A guard's reading that holds a run back, and the devices it holds its place on (None = all)."""

    devices: list[int] | None
    reason: str
    queueing: bool = False  # only our own stages leave no room yet (a shared GPU): not held by a guard


@dataclass(frozen=True)
class Launch:
    """Start ``stage`` of ``run`` now."""

    run: Run
    stage: str


@dataclass(frozen=True)
class Wait:
    """``run`` does not start now; ``reason`` says why (shown in the queue)."""

    run: Run
    reason: str
    by_guard: bool = False  # held back by the GPU or disk guard (not by order, pause or a dependency)


@dataclass(frozen=True)
class Cancel:
    """``run`` can never start (the run it depends on ended without success)."""

    run: Run
    reason: str


Decision = Launch | Wait | Cancel
# (run, stage) → None when the guards admit it, else what blocks it. Asked only for runs that got
# past dependencies, the pause and the device checks, in queue order, until the first launch.
Guards = Callable[[Run, str], Blocked | None]


def overlap(a: list[int] | None, b: list[int] | None) -> bool:
    """Whether two device lists can collide (None means every device)."""
    return a is None or b is None or bool(set(a) & set(b))


def busy_devices(runs: list[Run], candidate: Run) -> bool:
    """Whether another running run shares the candidate's devices (unnamed devices = all)."""
    mine = parse_gpus(candidate.gpus)
    return any(overlap(mine, parse_gpus(run.gpus)) for run in runs
               if run.id != candidate.id and run.state is RunState.RUNNING)


def dependency(run: Run, by_id: dict[int, Run]) -> Decision | None:
    """What ``run --after`` makes of the run: nothing (free to go), a wait, or a cancel."""
    if run.after is None:
        return None
    dep = by_id.get(run.after)
    if dep is None or dep.state is RunState.SUCCEEDED:
        return None
    if dep.state.is_final:
        kind = f" ({dep.failure_kind})" if dep.failure_kind else ""
        return Cancel(run, f"cancelled: run {dep.id} ({dep.nickname}), which it was to start after, ended "
                           f"{dep.state.value}{kind}; `dialsum-tui retry {dep.id}`, then add this run again with "
                           "--after the new run")
    return Wait(run, f"after run {dep.id} ({dep.nickname}, {dep.state.value})")


def decide(runs: list[Run], following: Collection[int], paused: bool, guards: Guards,
           devices: bool = True, shares: Callable[[Run], bool] | None = None,
           hold: Callable[[Run], str | None] | None = None) -> list[Decision]:
    """The admission decisions of one tick, in queue order; at most one :class:`Launch`, last.

    Runs between stages go first (they already hold their place), then queued and waiting runs,
    higher priority first (``add --priority``; first come within a priority): a priority jumps
    the waiting queue, never a running stage.
    A run held back by a guard blocks only later runs that want one of its devices; the shared
    disk guard (devices None) blocks everything behind it. One launch per tick: its memory must
    show before the next run is judged.

    Args:
        runs: every run in queue order, as stored.
        following: ids of runs whose stage process the worker follows now.
        paused: the queue's pause flag.
        guards: the GPU and disk guards' reading for a run's next stage.
        devices: whether runs compete for this host's devices; False on Slurm, where the cluster
            places each job and ``gpus`` is a count, so only the pause, dependencies and guards hold runs.
        hold: why a pending run waits for a failure streak's pause (``runs.streaks.holding``), None when
            it may go; runs that share nothing with the failures are not held.
        shares: with ``gpu_sharing`` on, whether a run may start beside our running stages: such a run
            is not held for a busy device here, the GPU guard judges the memory left (guards.memory).
    """
    by_id = {r.id: r for r in runs}
    between = [r for r in runs if r.state is RunState.RUNNING and r.pid is None and r.id not in following]
    pending = sorted((r for r in runs if r.state in (RunState.QUEUED, RunState.WAITING)),
                     key=lambda r: -r.priority)  # stable: queue order within a priority
    decisions: list[Decision] = []
    blocked: list[tuple[int, list[int] | None]] = []
    for run in between + pending:
        if run.state is not RunState.RUNNING:
            held = dependency(run, by_id)
            if held is not None:
                decisions.append(held)
                continue
        if paused and run.state is not RunState.RUNNING:  # a pipeline under way finishes its stages
            decisions.append(Wait(run, PAUSED_REASON))
            continue
        why = hold(run) if hold is not None and run.state is not RunState.RUNNING else None
        if why is not None:  # a failure streak paused what this run shares with the failed ones
            decisions.append(Wait(run, why))
            continue
        if devices and busy_devices(runs, run) and not (shares is not None and shares(run)):
            decisions.append(Wait(run, SAME_DEVICE_REASON))
            continue
        mine = parse_gpus(run.gpus) if devices else None
        ahead = next((run_id for run_id, held in blocked if overlap(mine, held)), None) if devices else None
        if ahead is not None:
            # In order: a later run must not take a device an earlier blocked run waits for.
            decisions.append(Wait(run, f"queued behind run {ahead} for the same device(s)"))
            continue
        stage = run.stage if run.state is RunState.RUNNING else run.stages[0]
        verdict = guards(run, stage)
        if verdict is not None:
            decisions.append(Wait(run, verdict.reason, by_guard=not verdict.queueing))
            blocked.append((run.id, verdict.devices))
            continue  # runs on other devices may still start (guards are per device)
        decisions.append(Launch(run, stage))
        break
    return decisions
