"""Tests for the GPU sources and the /proc inspection that finds who really holds memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dialsum_tui.manager import procfs
from dialsum_tui.manager.guards.gpu import (
    GpuProcess,
    NoGpuSource,
    ScriptedGpuSource,
    open_gpu_source,
    resolve_holder,
)
from dialsum_tui.manager.procfs import ALIVE, GONE, ZOMBIE, nvidia_device_holders, pid_state

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gpu"
UNUSED_PID = 4194399  # above the largest pid_max Linux allows: never a live process


def test_scripted_source_advances_and_stays_on_last_frame(sleeper):
    src = ScriptedGpuSource.from_json(FIXTURES / "release_late.json", pids={"holder": sleeper.pid})
    seen = [src.devices()[0] for _ in range(len(src.frames) + 3)]
    assert seen[-1] == seen[-2] == src.frames[-1][0]
    held = [d for d in seen if d.processes]
    assert held and all(p.pid == sleeper.pid for d in held for p in d.processes)
    assert "release_late.json" in src.describe()


def test_every_fixture_loads():
    for path in FIXTURES.glob("*.json"):
        placeholders = {"holder": 1, "leader": 1}
        src = ScriptedGpuSource.from_json(path, pids=placeholders)
        assert src.frames and all(frame for frame in src.frames), path


def test_bad_fixture_names_file_and_frame(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"frames": [{"devices": [{"name": "x"}]}]}))
    with pytest.raises(ValueError, match=r"bad.json: frames\[0\]"):
        ScriptedGpuSource.from_json(bad)
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"frames": [{"devices": [{"index": 0, "used_mib": 1, "processes": [{"pid": "$x"}]}]}]}))
    with pytest.raises(ValueError, match="placeholder"):
        ScriptedGpuSource.from_json(missing)


def test_open_gpu_source_env_and_fallback(monkeypatch):
    monkeypatch.setenv("DIALSUM_FAKE_GPU", str(FIXTURES / "foreign_on_gpu0.json"))
    assert isinstance(open_gpu_source(), ScriptedGpuSource)
    monkeypatch.delenv("DIALSUM_FAKE_GPU")
    src = open_gpu_source()
    # This machine has no NVIDIA driver: the real NVML fails and we say so instead of crashing.
    if isinstance(src, NoGpuSource):
        assert src.devices() == []
        assert "CPU runs proceed" in src.describe()
    else:  # on a GPU host the real source answers
        assert src.describe().startswith("NVML:")


def test_pid_state_alive_zombie_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    # Wait without reaping so the exited child stays a zombie.
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    assert pid_state(child.pid) == ZOMBIE
    child.wait()
    assert pid_state(child.pid) == GONE
    assert pid_state(os.getpid()) == ALIVE
    assert pid_state(UNUSED_PID) == GONE


def test_nvidia_device_holders_reads_fd_links(tmp_path):
    # A /proc-shaped tree: pid 321 has a /dev/nvidia0 fd, pid 654 only a regular file.
    for pid, target in ((321, "/dev/nvidia0"), (654, "/tmp/x.log")):
        fd_dir = tmp_path / str(pid) / "fd"
        fd_dir.mkdir(parents=True)
        (fd_dir / "3").symlink_to(target)
    (tmp_path / "self").mkdir()
    assert nvidia_device_holders(tmp_path) == {321: {"/dev/nvidia0"}}
    assert isinstance(nvidia_device_holders(), dict)  # the real /proc scan never raises


def test_stale_leader_resolves_to_forked_child():
    # The leader forks a child that stays in its process group, then exits: like a DataLoader worker
    # keeping the CUDA context after the trainer died.
    code = "import os,time\npid=os.fork()\nif pid==0:\n    time.sleep(60); os._exit(0)\nprint(pid, flush=True)\n"
    leader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    child = int(leader.stdout.readline())
    leader.wait()
    try:
        listed = GpuProcess(leader.pid, 0, 11 * 1024**3)
        holder = resolve_holder(listed, {leader.pid: (7, "Qwen3-4B-Instruct")}, ns_map={},
                                device_holders={child: {"/dev/nvidia0"}, os.getpid(): {"/dev/nvidia0"}})
        assert holder.run == (7, "Qwen3-4B-Instruct")
        assert holder.state == GONE
        assert holder.real_holders == [child]  # our own test process is in another group: not blamed
        text = holder.describe()
        assert f"pid {leader.pid} (run 7, Qwen3-4B-Instruct)" in text and f"pid {child} has /dev/nvidia open" in text
    finally:
        os.kill(child, signal.SIGKILL)


def test_foreign_invisible_pid_is_described_as_such():
    holder = resolve_holder(GpuProcess(UNUSED_PID, 0, 20 * 1024**3, "python3", "alice"), {}, ns_map={})
    assert holder.run is None and holder.local_pid is None
    assert "not ours; not visible here" in holder.describe()


def test_ns_pid_map_maps_nested_levels(tmp_path):
    (tmp_path / "900").mkdir()
    (tmp_path / "900" / "status").write_text("Name:\tpython\nNSpid:\t900\t12\n")
    (tmp_path / "901").mkdir()
    (tmp_path / "901" / "status").write_text("Name:\tbash\nNSpid:\t901\n")
    assert procfs.ns_pid_map(tmp_path) == {12: 900}


def test_a_foreign_holder_is_named_by_user_with_whom_to_ask():
    # This test's own process stands in for "another team's job": alive, visible, not one of our runs.
    holder = resolve_holder(GpuProcess(os.getpid(), 0, 14 * 1024**3, "python3"), {}, ns_map={})
    user = procfs.current_user()
    assert holder.run is None and holder.user == user
    assert holder.describe().endswith(f"holds 14.0 GiB on GPU 0 — ask {user}")
    assert f"user {user}" in holder.describe()


def test_our_own_holder_names_the_run_not_a_user():
    holder = resolve_holder(GpuProcess(os.getpid(), 0, 1024**3), {os.getpid(): (3, "한국어-요약")}, ns_map={})
    assert holder.user == "" and "ask" not in holder.describe()
    assert holder.describe().startswith(f"pid {os.getpid()} (run 3, 한국어-요약)")


def test_container_from_cgroup_or_nested_pid_namespace(tmp_path):
    docker, nested, plain = tmp_path / "10", tmp_path / "11", tmp_path / "12"
    for d in (docker, nested, plain):
        d.mkdir()
        (d / "status").write_text("Name:\tpython\nNSpid:\t12\n")
    (docker / "cgroup").write_text("0::/system.slice/docker-3f2a9c1b7d0e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b.scope\n")
    (nested / "cgroup").write_text("0::/user.slice\n")
    (nested / "status").write_text("Name:\tpython\nNSpid:\t11\t7\n")
    (plain / "cgroup").write_text("0::/user.slice/user-1000.slice/session-3.scope\n")
    assert procfs.process_container(10, tmp_path) == "container 3f2a9c1b7d0e"
    assert procfs.process_container(11, tmp_path) == "container (pid 7 inside)"
    assert procfs.process_container(12, tmp_path) == ""
    assert procfs.process_container(13, tmp_path) == ""  # gone
