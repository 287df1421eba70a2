"""A full or read-only filesystem under the workspace: nothing is lost and nothing waits forever.

Real filesystems: a small tmpfs mounted for each test (root only, as in CI), filled with a real
file or remounted read-only mid-run, under the real worker and real stage processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dialsum_tui.manager.guards.gpu import NoGpuSource
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.worker.health import read_ailments
from dialsum_tui.manager.worker.loop import Worker
from dialsum_tui.manager.workspace.layout import Workspace
from dialsum_tui.manager.workspace.space import filesystem_problems

from support import drive, fake_engine_workspace, final, wait_until, write_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a tmpfs needs root")


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A 256 MB tmpfs of our own, unmounted afterwards whatever the test left in it."""
    mnt = tmp_path / "volume"
    mnt.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mnt))
    except (subprocess.CalledProcessError, OSError) as err:
        pytest.skip(f"cannot mount a tmpfs here: {err}")
    try:
        yield mnt
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], capture_output=True, timeout=30)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def _small_workspace(root: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The fake engine's workspace, sized for a small volume: 5 MB of free-space floor."""
    ws = fake_engine_workspace(root, monkeypatch)
    with open(ws.settings_path, "a", encoding="utf-8") as fh:
        fh.write("min_free_gb: 0.005\n")
    return ws


def _tiny_config(ws: Workspace, nickname: str) -> str:
    # "1M" in the name: the disk guard projects a footprint of a few MB, which the volume can hold.
    return str(write_config(ws, nickname, model={"name_or_path": "models/tiny-1M", "nickname": nickname,
                                                 "kind": "seq2seq"}))


def _fill(volume: Path) -> Path:
    """Write one file until the filesystem is full; return it (delete it to free the space)."""
    filler = volume / "filler.bin"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        except OSError:
            pass
    return filler


def test_statvfs_tells_a_full_filesystem_from_a_read_only_one(volume: Path) -> None:
    assert filesystem_problems([volume], need_bytes=1 << 20) == []
    filler = _fill(volume)
    [full] = filesystem_problems([volume], need_bytes=1 << 20)
    assert not full.read_only and "is full" in full.message and "df -h" in full.hint
    filler.unlink()
    _mount("-o", "remount,ro", str(volume))
    [ro] = filesystem_problems([volume / "not-yet-created"])
    assert ro.read_only and "read-only" in ro.message and "remount" in ro.hint


def test_a_full_checkpoint_volume_holds_the_queue_with_its_reason_and_frees_it_when_space_returns(
        volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _small_workspace(tmp_path / "ws", monkeypatch)
    _mount("--bind", str(volume), str(ws.checkpoints_dir))  # checkpoints on a volume of their own
    try:
        manager = Manager.open(ws)
        run = manager.add(_tiny_config(ws, "m"), action="train")
        filler = _fill(volume)
        worker = Worker(ws, poll_s=0.05, gpu_source=NoGpuSource())
        held = drive(worker, manager, run.id, lambda r: r.state is RunState.WAITING and "full" in (r.reason or ""))
        assert str(ws.checkpoints_dir) in held.reason and "df -h" in held.reason
        filler.unlink()
        done = drive(worker, manager, run.id, final)
        assert done.state is RunState.SUCCEEDED, done.failure_message
    finally:
        subprocess.run(["umount", "-l", str(ws.checkpoints_dir)], capture_output=True, timeout=30)


def test_a_full_workspace_volume_admits_nothing_says_why_and_resumes_when_space_returns(
        volume: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _small_workspace(volume / "ws", monkeypatch)
    manager = Manager.open(ws)
    run = manager.add(_tiny_config(ws, "m"), action="train")
    filler = _fill(volume)
    worker = Worker(ws, poll_s=0.05, gpu_source=NoGpuSource())
    for _ in range(10):
        worker.tick()  # nothing raises: every write that fails is owed, reported and retried
    assert manager.get(run.id).state is RunState.QUEUED and not worker.active
    assert worker.store_failing and any("full" in a.message for a in worker.health.ailments())
    filler.unlink()
    done = drive(worker, manager, run.id, final)
    assert done.state is RunState.SUCCEEDED, done.failure_message
    assert not worker.store_failing


def test_a_volume_that_fills_mid_run_records_the_end_once_space_returns_and_the_queue_goes_on(
        volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = tmp_path / "gate"  # outside the volume: train waits at its end until the volume is full
    monkeypatch.setenv("FAKE_GATE", str(gate))
    ws = _small_workspace(volume / "ws", monkeypatch)
    manager = Manager.open(ws)
    first = manager.add(_tiny_config(ws, "first"), action="train")
    second = manager.add(_tiny_config(ws, "second"), action="train")
    worker = Worker(ws, poll_s=0.05, gpu_source=NoGpuSource())
    drive(worker, manager, first.id, lambda r: r.state is RunState.RUNNING and r.pid is not None)

    filler = _fill(volume)
    gate.touch()  # train ends now and cannot write its model, nor the store its end
    stage = worker.active[first.id]
    wait_until(lambda: stage.popen.poll() is not None, what="the stage to exit")
    for _ in range(5):
        worker.tick()
    assert first.id in worker.active and stage.verdict is not None  # owed, not forgotten
    assert worker.store_failing and any("full" in a.message for a in worker.health.ailments())
    assert manager.get(second.id).state is RunState.QUEUED  # nothing new starts meanwhile

    filler.unlink()
    monkeypatch.delenv("FAKE_GATE")
    done = drive(worker, manager, first.id, final)
    assert done.state is RunState.FAILED and done.failure_kind == "disk", done.failure_message
    assert "is full" in done.failure_message and "df -h" in done.failure_hint
    assert not worker.store_failing and read_ailments(ws, os.getpid()) == []
    later = drive(worker, manager, second.id, final)  # the queue never waits on the dead run
    assert later.state is RunState.SUCCEEDED, later.failure_message


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A 256 MB ext4 on a loop device mounted errors=remount-ro, and its sysfs error trigger."""
    if not shutil.which("mkfs.ext4"):
        pytest.skip("no mkfs.ext4 (e2fsprogs)")
    image, mnt = tmp_path / "fs.img", tmp_path / "ext4"
    mnt.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(256 << 20)
    try:
        subprocess.run(["mkfs.ext4", "-q", str(image)], check=True, capture_output=True, timeout=60)
        _mount("-o", "loop,errors=remount-ro", str(image), str(mnt))
    except (subprocess.CalledProcessError, OSError) as err:
        pytest.skip(f"cannot mount an ext4 image here: {err}")
    source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mnt)], capture_output=True, text=True).stdout
    try:
        yield mnt, Path("/sys/fs/ext4") / Path(source.strip()).name / "trigger_fs_error"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)
        subprocess.run(["losetup", "-d", source.strip()], capture_output=True, timeout=30)


def test_ext4_turning_read_only_mid_run_keeps_the_stage_and_names_the_cause(
        ext4: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mnt, trigger = ext4
    gate = tmp_path / "gate"
    monkeypatch.setenv("FAKE_GATE", str(gate))
    ws = _small_workspace(mnt / "ws", monkeypatch)
    manager = Manager.open(ws)
    run = manager.add(_tiny_config(ws, "m"), action="train")
    worker = Worker(ws, poll_s=0.05, gpu_source=NoGpuSource())
    drive(worker, manager, run.id, lambda r: r.state is RunState.RUNNING and r.pid is not None)

    trigger.write_text("1")  # an I/O error as the kernel sees one: errors=remount-ro takes over
    gate.touch()
    stage = worker.active[run.id]
    wait_until(lambda: stage.popen.poll() is not None, what="the stage to exit")
    for _ in range(5):
        worker.tick()  # nothing raises
    assert run.id in worker.active and worker.store_failing
    assert any("read-only" in a.message for a in worker.health.ailments())
    failure = stage.verdict.failure
    assert failure.kind == "disk" and "read-only" in failure.message and "remount" in failure.hint
