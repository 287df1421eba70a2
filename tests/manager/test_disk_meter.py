"""The disk meter fails safe and heals: pure judgements of a cached measurement, and a real thread
that dies and is restarted, with the health file saying so."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from dialsum_tui.manager.guards import disk
from dialsum_tui.manager.worker.disk_meter import DiskMeter, as_of_now, disk_problem, judge_cache
from dialsum_tui.manager.worker.health import Health, read_ailments
from dialsum_tui.manager.workspace.layout import Workspace, init_workspace
from dialsum_tui.manager.workspace.settings import Settings

from support import wait_until


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return init_workspace(tmp_path / "ws")


def test_each_doubt_blocks_with_its_reason(ws: Workspace) -> None:
    settings = Settings(disk_refresh_s=10)
    usage = disk.measure(ws)
    now = usage.measured_at
    assert disk_problem(usage, settings, None, None, now + 29) is None
    assert "is 31s old" in disk_problem(usage, settings, None, None, now + 31)
    assert "not measured yet" in disk_problem(None, settings, None, None, now)
    assert "cannot be measured (OSError: gone)" in disk_problem(usage, settings, None, "OSError: gone", now)
    assert "quota is unknown: bad key" in disk_problem(usage, None, "bad key", None, now)


def test_a_cached_figure_is_judged_against_todays_quota(ws: Workspace) -> None:
    usage = disk.measure(ws)
    today = as_of_now(usage, Settings(quota_gb=1, margin_gb=0.5), usage.path)
    assert today.limit_bytes == 10**9 and today.margin_bytes == 5 * 10**8 and today.used_bytes == usage.used_bytes
    assert as_of_now(usage, Settings(), "/another/tree") is None  # measured another tree: not a reading
    disk.write_cache(ws, usage)
    ws.settings_path.write_text("quota_gbb: 10\n", encoding="utf-8")
    _usage, problem = judge_cache(ws)
    assert "quota_gbb" in problem


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death is the point
def test_a_dead_disk_thread_is_restarted_and_reported(ws: Workspace) -> None:
    health = Health(ws)
    stopping = threading.Event()
    meter = DiskMeter(ws, health, stopping)
    real = meter.measure_once
    calls = []

    def dies_once() -> None:
        calls.append(time.time())
        if len(calls) == 1:
            raise SystemExit("a bug that escapes every except Exception")
        real()

    meter.measure_once = dies_once  # type: ignore[method-assign]
    try:
        meter.ensure_running()
        wait_until(lambda: not meter.running, what="the thread to die")
        meter.ensure_running()  # what the worker loop does each pass
        assert "died 1 time(s); restarted" in read_ailments(ws, health.pid)[0].message
        wait_until(lambda: disk.read_cached(ws) is not None, what="the restarted thread to measure")
        wait_until(lambda: read_ailments(ws, health.pid) == [], what="the health file to clear")
    finally:
        stopping.set()


def test_a_dead_workers_health_file_is_not_read_as_the_present(ws: Workspace) -> None:
    Health(ws, pid=4242).fail("disk", "boom")
    assert [a.message for a in read_ailments(ws, 4242)] == ["boom"]
    assert read_ailments(ws, 4343) == [] and read_ailments(ws, None) == []
