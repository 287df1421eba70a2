"""Tests for the admission guards against scripted NVML frames and real processes."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from dialsum_tui.manager.guards.checks import GpuGuard
from dialsum_tui.manager.guards.gpu import MIB, GpuDevice, NoGpuSource, ScriptedGpuSource
from dialsum_tui.manager.workspace.layout import Settings

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gpu"
NICK = "Llama-3.2-Korean-3B-bf16"


def _first_idle_after_release(frames: list[list[GpuDevice]], margin_mib: int) -> int:
    baseline = frames[0][0].used_bytes
    last_held = max(i for i, f in enumerate(frames) if f[0].processes or f[0].used_bytes > baseline + margin_mib * MIB)
    return last_held + 1


def test_guard_waits_for_late_release_then_k_samples(sleeper):
    settings = Settings(gpu_samples=3, gpu_idle_margin_mib=300, gpu_grace_s=0)
    src = ScriptedGpuSource.from_json(FIXTURES / "release_late.json", pids={"holder": sleeper.pid})
    guard = GpuGuard(src, settings)
    owners = {sleeper.pid: (12, NICK)}
    verdicts = [guard.check([0], owners) for _ in range(len(src.frames) + settings.gpu_samples)]

    held = [v for f, v in zip(src.frames, verdicts) if f[0].processes]
    assert held and all(not v.ok for v in held)
    assert all(f"pid {sleeper.pid} (run 12, {NICK}) holds 14.2 GiB on GPU 0" in v.reason for v in held)
    # No process listed but memory still up (a forked child): still not released, baseline named.
    freeing = [v for f, v in zip(src.frames, verdicts) if not f[0].processes and f[0].used_bytes > 1024 * MIB]
    assert freeing and all("not released" in v.reason and "baseline" in v.reason for v in freeing)

    first_ok = next(i for i, v in enumerate(verdicts) if v.ok)
    assert first_ok == _first_idle_after_release(src.frames, settings.gpu_idle_margin_mib) + settings.gpu_samples - 1
    assert "confirming" in verdicts[first_ok - 1].reason
    assert guard.baselines[0] == src.frames[0][0].used_bytes


def test_foreign_process_named_and_other_gpu_admitted():
    settings = Settings(gpu_samples=2, gpu_grace_s=0)
    guard = GpuGuard(ScriptedGpuSource.from_json(FIXTURES / "foreign_on_gpu0.json"), settings)
    v0 = guard.check([0], {})
    assert not v0.ok and "(not ours; not visible here" in v0.reason and "on GPU 0" in v0.reason
    assert [guard.check([1], {}).ok for _ in range(settings.gpu_samples)][-1]
    assert not guard.check(None, {}).ok  # "any GPU" means all of them must be free
    assert guard.leftovers({}) == []  # foreign processes are never offered for killing


def test_missing_gpu_index_is_explained():
    guard = GpuGuard(ScriptedGpuSource.from_json(FIXTURES / "foreign_on_gpu0.json"), Settings(gpu_grace_s=0))
    verdict = guard.check([5], {})
    assert not verdict.ok and "GPU 5 not present" in verdict.reason and "--gpu" in verdict.reason


def test_invisible_holder_never_becomes_the_baseline():
    guard = GpuGuard(ScriptedGpuSource.from_json(FIXTURES / "invisible_holder.json"), Settings(gpu_samples=1, gpu_grace_s=0))
    for _ in range(3):
        verdict = guard.check([0], {})
        assert not verdict.ok and "NVML lists no process" in verdict.reason
    assert 0 not in guard.baselines


def test_no_gpu_lets_cpu_runs_proceed():
    verdict = GpuGuard(NoGpuSource("NVML not found"), Settings()).check(None, {})
    assert verdict.ok and "CPU runs proceed" in verdict.reason


def test_grace_after_launch_blocks_until_memory_visible():
    frames = ScriptedGpuSource.from_json(FIXTURES / "foreign_on_gpu0.json").frames
    idle = [replace(frames[0][1], index=0)]
    guard = GpuGuard(ScriptedGpuSource([idle]), Settings(gpu_samples=1, gpu_grace_s=30))
    guard.note_launch([0])
    verdict = guard.check([0], {})
    assert not verdict.ok and "has not allocated yet" in verdict.reason
    guard.note_launch([0], at=time.monotonic() - 31)
    guard._launches = guard._launches[-1:]
    assert guard.check([0], {}).ok


def test_leftovers_lists_our_finished_runs_only(sleeper):
    src = ScriptedGpuSource.from_json(FIXTURES / "release_late.json", pids={"holder": sleeper.pid})
    src.calls = 1  # the frame where our pid holds the GPU
    guard = GpuGuard(src, Settings())
    left = guard.leftovers({sleeper.pid: (12, NICK)})
    assert [(p.pid, run_id, nick) for p, run_id, nick in left] == [(sleeper.pid, 12, NICK)]
    src.calls = 1
    assert guard.leftovers({sleeper.pid: (12, NICK)}, active_runs={12}) == []


def test_confirming_while_counting_good_samples():
    # The worker samples faster while this is true, so K confirmations do not cost K poll intervals.
    settings = Settings(gpu_samples=3, gpu_grace_s=0)
    guard = GpuGuard(ScriptedGpuSource.from_json(FIXTURES / "foreign_on_gpu0.json"), settings)
    assert not guard.confirming
    states = []
    for _ in range(settings.gpu_samples):
        verdict = guard.check([1], {})
        states.append((verdict.ok, guard.confirming))
    assert states == [(False, True), (False, True), (True, False)]
