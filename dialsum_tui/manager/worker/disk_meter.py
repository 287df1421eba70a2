"""Provides the worker's disk meter — a background thread that measures the quota'd tree, survives
its own errors and reports them — and the fail-safe reading admission and ``check`` use.

Fail safe: when the quota is unknown (settings.yaml does not validate), the disk cannot be
measured, or the last measurement is older than it should be, :func:`disk_problem` says so and
nothing new is admitted. Everything recovers without a restart: settings are re-read on every
pass, a change of settings.yaml triggers a fresh measurement, and the cached figure is always
judged against the settings as they are now.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from dialsum_tui.manager.guards import disk
from dialsum_tui.manager.guards.disk import DiskUsage
from dialsum_tui.manager.worker.health import Health
from dialsum_tui.manager.workspace.layout import Workspace, WorkspaceError
from dialsum_tui.manager.workspace.settings import Settings
from engine.units import gb_to_bytes

log = logging.getLogger("dialsum.worker")

SETTINGS_POLL_S = 1.0  # how often the idle meter looks whether settings.yaml changed
MIN_STALE_S = 30.0  # a measurement younger than this is never called stale


def stale_after(settings: Settings, usage: DiskUsage) -> float:
    """Seconds after which a measurement no longer stands for the present (a stuck or dead meter)."""
    return max(MIN_STALE_S, 3 * settings.disk_refresh_s, settings.disk_refresh_s + 3 * usage.seconds)


def as_of_now(usage: DiskUsage | None, settings: Settings, quota_path: str) -> DiskUsage | None:
    """The cached usage judged against today's settings (quota, safe, margin); None if it measured
    another tree than the one the quota covers now."""
    if usage is None or usage.path != quota_path:
        return None
    return dataclasses.replace(usage, limit_bytes=gb_to_bytes(settings.quota_gb),
                               safe_bytes=gb_to_bytes(settings.safe_gb), margin_bytes=gb_to_bytes(settings.margin_gb))


def disk_problem(usage: DiskUsage | None, settings: Settings | None, settings_error: str | None,
                 measure_error: str | None, now: float) -> str | None:
    """Why the disk guard cannot vouch for the disk now (None: the reading stands).

    Args:
        usage: :func:`as_of_now` of the cached measurement.
        settings: the settings as read now (None when they do not validate).
        settings_error: the settings file's error, if any.
        measure_error: the last measurement attempt's error, if it failed.
        now: the time to judge the measurement's age against.
    """
    if settings_error or settings is None:
        return f"the quota is unknown: {settings_error}; nothing new starts until .dialsum/settings.yaml is fixed"
    if measure_error:
        return f"the disk cannot be measured ({measure_error}); nothing new starts until it can (.dialsum/worker.log)"
    if usage is None:
        return "disk not measured yet; nothing new starts before the first measurement"
    age = now - usage.measured_at
    if age > stale_after(settings, usage):
        return (f"the last disk measurement is {age:.0f}s old (expected every {settings.disk_refresh_s:.0f}s); "
                "nothing new starts until a fresh one")
    return None


def judge_cache(ws: Workspace, measure_error: str | None = None, now: float | None = None
                ) -> tuple[DiskUsage | None, str | None]:
    """The cached measurement as of today's settings, and why it cannot be trusted (None: it can).

    Args:
        ws: the workspace (its settings and cache are read now).
        measure_error: the worker's last measurement error, if it reported one.
        now: the time to judge the measurement's age against (default: now).
    """
    now = time.time() if now is None else now
    try:
        settings = ws.settings()
    except WorkspaceError as err:
        return disk.read_cached(ws), disk_problem(None, None, str(err), None, now)
    usage = as_of_now(disk.read_cached(ws), settings, str(disk.quota_root(ws)))
    return usage, disk_problem(usage, settings, None, measure_error, now)


class DiskMeter:
    """Measures in a thread of its own (``du`` is slow) and keeps the last outcome for admission."""

    def __init__(self, ws: Workspace, health: Health, stopping: threading.Event) -> None:
        self.ws = ws
        self.health = health
        self.stopping = stopping
        self.settings_error: str | None = None
        self.measure_error: str | None = None
        self._thread: threading.Thread | None = None
        self._settings_stamp: tuple[int, int] | None = None
        self._deaths = 0

    # --- one pass -----------------------------------------------------------------------------

    def settings(self) -> Settings | None:
        """The settings now (None, with the error reported, when the file does not validate)."""
        try:
            settings = self.ws.settings()
        except WorkspaceError as err:
            self.settings_error = str(err)
            self.health.fail("settings", self.settings_error)
            return None
        self.settings_error = None
        self.health.ok("settings")
        return settings

    def measure_once(self) -> None:
        """Measure and cache once; any error is recorded (admission then holds), never raised."""
        self._settings_stamp = self._stamp()
        if self.settings() is None:
            return
        try:
            disk.write_cache(self.ws, disk.measure(self.ws))
        except Exception as err:  # any failure: the guard must hold, the thread must live on
            log.exception("disk measurement failed")
            self.measure_error = f"{type(err).__name__}: {err}"
            self.health.fail("disk", self.measure_error)
        else:
            self.measure_error = None
            self.health.ok("disk")
            self.health.ok("disk-thread")  # a restarted thread that measures again is well (the log keeps its death)

    def reading(self) -> tuple[DiskUsage | None, str | None]:
        """The cached usage as of today's settings, and why it cannot be trusted (None: it can)."""
        if self.settings() is None:
            return None, disk_problem(None, None, self.settings_error, None, time.time())
        return judge_cache(self.ws, self.measure_error)

    # --- the thread ---------------------------------------------------------------------------

    def admission_reading(self) -> tuple[Settings | None, DiskUsage | None, str | None]:
        """Settings as read now (None when broken), and the disk as admission may trust it now with
        why not when it may not (fail safe). With no measuring thread (a worker driven by ``tick()``,
        or before ``serve`` starts it) it measures here."""
        settings = self.settings()
        usage, problem = self.reading()
        if problem is not None and settings is not None and not self.running:
            self.measure_once()
            usage, problem = self.reading()
        return settings, usage, problem

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ensure_running(self) -> None:
        """Start the thread, or restart it if it died (reported: it should never die)."""
        if self.running or self.stopping.is_set():
            return
        if self._thread is not None:
            self._deaths += 1
            self.health.fail("disk-thread", f"the disk thread died {self._deaths} time(s); restarted (worker.log)")
        self._thread = threading.Thread(target=self._loop, name="disk-measure", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.measure_once()
            except Exception:  # measure_once catches its own; this is the last net for the loop itself
                log.exception("disk thread pass failed")
            self._wait()

    def _wait(self) -> None:
        # Sleep disk_refresh_s, but wake at once when settings.yaml changes: a fixed quota counts now.
        settings = self.settings()
        refresh = settings.disk_refresh_s if settings is not None else SETTINGS_POLL_S
        deadline = time.monotonic() + refresh
        while not self.stopping.is_set() and time.monotonic() < deadline:
            if self._stamp() != self._settings_stamp:
                return
            self.stopping.wait(min(SETTINGS_POLL_S, max(0.0, deadline - time.monotonic())))

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.ws.settings_path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)
