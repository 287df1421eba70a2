"""OOM-killer evidence: a SIGKILLed stage is host_oom only when the cgroup counter rose or the kernel
log names it. The cgroup counter cannot be raised here, so its reader runs on a memory.events file."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from dialsum_tui.manager.runs.models import Action, Run, RunState
from dialsum_tui.manager.worker import oom
from dialsum_tui.manager.worker.verdict import Ended, classify, judge

EVENTS = "low 0\nhigh 0\nmax 3\noom {oom}\noom_kill {kills}\noom_group_kill 0\n"


def _events(path: Path, kills: int) -> Path:
    path.write_text(EVENTS.format(oom=kills, kills=kills), encoding="utf-8")
    return path


def test_counter_rising_between_start_and_end_is_evidence(tmp_path: Path) -> None:
    path = _events(tmp_path / "memory.events", 2)
    start = oom.mark(12345, events_path=path)
    assert start.oom_kills == 2
    assert oom.evidence(start, 12345, log_text="") is None  # nothing happened yet
    _events(path, 3)
    assert "rose from 2 to 3" in oom.evidence(start, 12345, log_text="")


def test_unreadable_or_malformed_counters_are_no_evidence(tmp_path: Path) -> None:
    assert oom.oom_kills(tmp_path / "absent") is None
    (tmp_path / "bad").write_text("oom_kill many\n", encoding="utf-8")
    assert oom.oom_kills(tmp_path / "bad") is None
    assert oom.evidence(oom.OomMark(None, None), 4711, log_text="") is None


def test_kernel_log_naming_the_pid_is_evidence_and_another_pid_is_not() -> None:
    line = "[12345.6] Out of memory: Killed process 4711 (python) total-vm:123kB, anon-rss:99kB"
    assert "Killed process 4711" in oom.evidence(None, 4711, log_text=f"noise\n{line}\n")
    assert oom.evidence(None, 471, log_text=line) is None
    cgroup_line = "oom-kill:constraint=CONSTRAINT_MEMCG,task=python,pid=4711,uid=0"
    assert oom.kernel_names(4711, cgroup_line) == cgroup_line
    # /dev/kmsg records carry microseconds since boot: a kill from before the stage started is an
    # earlier process that had the same pid.
    record = f"3,881,5000000,-;{line}"
    assert oom.kernel_names(4711, record, since_boot_s=4.0) == record
    assert oom.kernel_names(4711, record, since_boot_s=6.0) is None


def test_a_v1_memory_cgroup_counter_is_read_too(tmp_path: Path) -> None:
    proc_root = tmp_path / "proc"
    (proc_root / "77").mkdir(parents=True)
    (proc_root / "77" / "cgroup").write_text("4:memory:/jobs/a\n0::/\n", encoding="utf-8")
    control = tmp_path / "cg" / "memory" / "jobs" / "a" / "memory.oom_control"
    control.parent.mkdir(parents=True)
    control.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n", encoding="utf-8")
    assert oom.cgroup_events_path(77, proc_root, tmp_path / "cg") == control
    assert oom.mark(77, events_path=control).oom_kills == 5


def test_the_memory_cgroup_of_a_live_process_is_found_where_readable() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path = oom.cgroup_events_path(proc.pid)
        # None only where neither a v2 memory.events nor a v1 memory.oom_control can be read.
        assert path is None or oom.oom_kills(path) is not None
    finally:
        proc.kill()
        proc.wait()


def test_a_sigkilled_sleeper_is_killed_not_host_oom(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    start = oom.mark(proc.pid)
    proc.send_signal(signal.SIGKILL)
    rc = proc.wait()
    evidence = oom.evidence(start, proc.pid)  # the real cgroup and kernel log, where readable
    assert evidence is None
    run = Run(1, "m", "c.yaml", "", Action.TRAIN, RunState.RUNNING, stage="train")
    outcome = judge(run, Ended("train", proc.pid, rc, [], "", oom_evidence=evidence),
                    artifacts_done=lambda: False, others_held=lambda: None)
    assert outcome.failure is not None and outcome.failure.kind == "killed" and rc == -9
    assert classify(rc, [], "", oom_evidence="kernel log: Killed process").kind == "host_oom"
