"""Tests for failure classification from real processes' exit status, events and log tails."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from dialsum_tui.manager.runs.logs import error_lines
from dialsum_tui.manager.worker.verdict import classify
from engine.artifacts import EventTail, EventWriter
from engine.contract import FailureKind


def read_records(path) -> list:
    """Every typed record of an events file (what the worker gives classify)."""
    return list(EventTail(path).drain())


def _run(tmp_path, code: str, sig: int | None = None) -> tuple[int, list, str]:
    """Run ``code`` as a stage process writing run.log and events.jsonl; optionally signal it."""
    log = tmp_path / "run.log"
    events = tmp_path / "events.jsonl"
    prelude = (
        "import sys, time\nfrom engine.artifacts import EventWriter\n"
        f"ev = EventWriter({str(events)!r}, command='infer')\nev.emit('started', pid=0)\n"
        "print('READY', flush=True)\n"
    )
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", prelude + code], stdout=subprocess.PIPE, stderr=fh, text=True)
        assert proc.stdout.readline().strip() == "READY"
        if sig is not None:
            time.sleep(0.1)
            proc.send_signal(sig)
        proc.wait(timeout=30)
    return proc.returncode, read_records(events), log.read_text()


def test_success_needs_exit_zero_and_finished(tmp_path):
    code, events, tail = _run(tmp_path, "ev.emit('finished', seconds=1.0)")
    assert code == 0 and classify(code, events, tail) is None
    (tmp_path / "silent").mkdir()
    code, events, tail = _run(tmp_path / "silent", "pass")
    verdict = classify(code, events, tail)
    assert verdict.kind == "unknown" and "without a 'finished' event" in verdict.message


def test_failed_event_wins_and_keeps_engine_hint(tmp_path):
    code, events, tail = _run(
        tmp_path,
        "ev.emit('failed', kind='dtype', message='RuntimeError: expected scalar type BFloat16 but found Float', hint='h')\n"
        "sys.exit(1)",
    )
    verdict = classify(code, events, tail)
    assert verdict.kind == "dtype" and "BFloat16" in verdict.message and verdict.hint == "h"


def test_oom_traceback_in_log_and_who_held_memory(tmp_path):
    code, events, tail = _run(
        tmp_path, "raise RuntimeError('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB')"
    )
    verdict = classify(code, events, tail)
    assert code == 1 and verdict.kind == "oom" and "CUDA out of memory" in verdict.message
    holder = "pid 4711 (run 12, Llama-3.2-Korean-3B-bf16) holds 14.2 GiB on GPU 0"
    blamed = classify(code, events, tail, others_held=holder)
    assert holder in blamed.message and "another process held GPU memory" in blamed.hint


def test_disk_full_from_log(tmp_path):
    code, events, tail = _run(tmp_path, "raise OSError(28, 'No space left on device')")
    assert classify(code, events, tail).kind == "disk"


def test_sigkill_with_silent_log_and_no_oom_evidence_is_killed(tmp_path):
    code, events, tail = _run(tmp_path, "time.sleep(30)", sig=signal.SIGKILL)
    verdict = classify(code, events, tail)
    assert code == -signal.SIGKILL and verdict.kind == "killed" and verdict.hint == FailureKind.KILLED.hint
    assert "no sign of the OOM killer" in verdict.message
    assert classify(128 + signal.SIGKILL, events, "").kind == "killed"  # shell-style status


def test_sigkill_with_oom_evidence_is_host_oom(tmp_path):
    code, events, tail = _run(tmp_path, "time.sleep(30)", sig=signal.SIGKILL)
    evidence = "the cgroup's oom_kill counter rose from 0 to 1 (/sys/fs/cgroup/x/memory.events)"
    verdict = classify(code, events, tail, oom_evidence=evidence)
    assert verdict.kind == "host_oom" and evidence in verdict.message and verdict.hint == FailureKind.HOST_OOM.hint


def test_sigint_and_sigterm_are_interrupted(tmp_path):
    for sig in (signal.SIGINT, signal.SIGTERM):
        code, events, tail = _run(tmp_path, "time.sleep(30)", sig=sig)
        assert classify(code, events, tail).kind == "interrupted", (sig, code, tail)


def test_unknown_carries_last_error_lines(tmp_path):
    code, events, tail = _run(tmp_path, "print('loading'); raise ValueError('weird shape 3 vs 4')")
    verdict = classify(code, events, tail)
    assert verdict.kind == "unknown" and "weird shape 3 vs 4" in verdict.message and f"exit {code}" in verdict.message
    vanished = classify(None, events, tail)
    assert vanished.kind == "unknown" and "vanished" in vanished.message


def test_only_the_last_stage_counts(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path, command="train") as ev:
        ev.emit("started", pid=1)
        ev.emit("failed", kind="oom", message="CUDA out of memory", hint="h")
    with EventWriter(path, command="infer") as ev:
        ev.emit("started", pid=2)
        ev.emit("finished", seconds=2.0)
    assert classify(0, read_records(path), "") is None
    assert all(f.kind in set(FailureKind) for f in [classify(1, read_records(path), "x")])


def test_error_lines_prefers_error_looking_lines():
    tail = "step 1\nstep 2\nTraceback (most recent call last):\n  File x\nValueError: bad\n"
    assert error_lines(tail) == "Traceback (most recent call last): | ValueError: bad"


def test_every_verdict_without_an_engine_hint_carries_its_kinds_one_hint(tmp_path):
    sigint = classify(-signal.SIGINT, [], "")
    assert sigint.kind is FailureKind.INTERRUPTED and sigint.hint == FailureKind.INTERRUPTED.hint
    from_log = classify(1, [], "OSError: [Errno 28] No space left on device")
    assert from_log.kind is FailureKind.DISK and from_log.hint == FailureKind.DISK.hint
    silent = classify(1, [], "")
    assert silent.kind is FailureKind.UNKNOWN and silent.hint == FailureKind.UNKNOWN.hint
    path = tmp_path / "events.jsonl"
    with EventWriter(path, command="train") as ev:
        ev.emit("started", pid=1)
        ev.emit("failed", kind="no-such-kind", message="odd")  # an unknown kind reads as unknown, no hint: its own
    odd = classify(1, read_records(path), "")
    assert odd.kind is FailureKind.UNKNOWN and odd.hint == FailureKind.UNKNOWN.hint
