"""Provides the admission guards: a run starts only when its GPUs are really free (or, with
``gpu_sharing`` on, hold only our own stages and room for its peak) and the disk quota leaves room for
what it will write; otherwise a verdict says why, naming the holder.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dialsum_tui.manager.guards.gpu import GpuDevice, GpuProcess, GpuSource, Holder, resolve_holder
from dialsum_tui.manager.guards.memory import SAME_DEVICE_REASON, Resident, SharePlan, share_problem
from dialsum_tui.manager.procfs import ALIVE, ns_pid_map
from engine.units import MIB, format_bytes, format_gib, format_used_of

if TYPE_CHECKING:
    from dialsum_tui.manager.guards.disk import DiskUsage
    from dialsum_tui.manager.workspace.settings import Settings

# An idle device reserves ~0.5 GiB (H100: ~480 MiB). A "no process listed" sample above this is
# not a baseline: the memory is held by someone NVML cannot show us (another container).
IDLE_BASELINE_CEILING = 1536 * MIB


@dataclass(frozen=True)
class Verdict:
    """Outcome of a guard: ``ok`` admits; ``reason`` says why not (or notes something when ok)."""

    ok: bool
    reason: str | None = None
    queueing: bool = False  # not ok only because our own stages leave no room yet on a shared GPU


class GpuGuard:
    """Admits a run when its target GPUs are back to their idle baseline for K samples in a row.

    Keeps state between calls: the per-device idle baseline (minimum used memory seen while NVML
    listed no compute process), the count of consecutive good samples, and recent launches (a job
    that has just started has not allocated yet, so its GPU is not judged free during a grace).
    """

    def __init__(self, source: GpuSource, settings: Settings):
        self.source = source
        self.settings = settings
        self.baselines: dict[int, int] = {}
        self._good: dict[tuple[int, ...] | None, int] = {}
        self._launches: list[tuple[float, tuple[int, ...] | None]] = []
        self.last_devices: list[GpuDevice] = []

    # -- public ------------------------------------------------------------------------------

    @property
    def confirming(self) -> bool:
        """True while some device set has good samples but not yet enough to admit."""
        return any(0 < good < max(1, self.settings.gpu_samples) for good in self._good.values())

    def note_launch(self, gpus: list[int] | None, at: float | None = None) -> None:
        """Record that a run was just launched on ``gpus`` (None = all): starts the grace period.

        ``at`` is on :func:`time.monotonic`'s clock: a grace period is a duration, and a wall-clock
        step must neither end it early nor stretch it."""
        self._launches.append((time.monotonic() if at is None else at, _key(gpus)))

    def check(self, gpus: list[int] | None, owners: dict[int, tuple[int, str]],
              share: SharePlan | None = None) -> Verdict:
        """Take one sample and say whether a run may start on ``gpus``.

        Args:
            gpus: device indices the run will see (None = every device).
            owners: pid -> (run_id, nickname) for our runs' live and finished pids.
            share: with ``gpu_sharing`` on, the candidate's need and our running stages: a device that
                holds only those admits it when their expected peaks leave room for its need.

        Returns:
            ok only after ``settings.gpu_samples`` consecutive good samples; otherwise the reason
            names the holder, e.g. "pid 4711 (run 12, Llama-3.2-Korean-3B-bf16) holds 14.2 GiB on GPU 0".
        """
        devices = self.source.devices()
        self.last_devices = devices
        self._record_baselines(devices)
        key = _key(gpus)
        if not devices:
            return Verdict(True, f"{self.source.describe()}")
        problem = self._problem(devices, gpus, owners, share)
        if problem is None and not _shared_only(devices, gpus, share):
            # A stage launched a moment ago may not show yet; on a shared GPU it is already counted,
            # at its expected peak, among the residents.
            problem = self._in_grace(devices, key)
        if problem is not None:
            self._good[key] = 0
            return Verdict(False, problem, queueing=problem.startswith(SAME_DEVICE_REASON))
        self._good[key] = self._good.get(key, 0) + 1
        need = max(1, int(self.settings.gpu_samples))
        if self._good[key] < need:
            return Verdict(False, f"{_gpu_names(gpus)} free, confirming ({self._good[key]}/{need} samples)")
        return Verdict(True, None)

    def leftovers(
        self, owners: dict[int, tuple[int, str]], active_runs: Collection[int] = ()
    ) -> list[tuple[GpuProcess, int, str]]:
        """Return processes of our runs that still hold a GPU although the run is not active.

        A stale listing (NVML lists our dead leader's pid) is resolved to the living children that
        keep ``/dev/nvidia*`` open, since those are what must be killed.

        Args:
            owners: pid -> (run_id, nickname) of our runs.
            active_runs: run ids still running; their processes are not leftovers.
        """
        devices = self.source.devices()
        self.last_devices = devices
        ns_map = ns_pid_map()
        out: list[tuple[GpuProcess, int, str]] = []
        for device in devices:
            for proc in device.processes:
                holder = resolve_holder(proc, owners, ns_map)
                if holder.run is None or holder.run[0] in active_runs:
                    continue
                run_id, nick = holder.run
                if holder.state == ALIVE:
                    local = holder.local_pid if holder.local_pid is not None else proc.pid
                    out.append((GpuProcess(local, proc.gpu_index, proc.used_bytes, proc.name, proc.user), run_id, nick))
                for child in holder.real_holders:
                    out.append((GpuProcess(child, proc.gpu_index, proc.used_bytes, proc.name, proc.user), run_id, nick))
        return out

    def released_threshold(self, device: GpuDevice) -> int:
        """Used bytes at or under which ``device`` counts as released (baseline + margin, never 0)."""
        baseline = self.baselines.get(device.index, min(device.used_bytes, IDLE_BASELINE_CEILING))
        return baseline + int(self.settings.gpu_idle_margin_mib) * MIB

    # -- internals ---------------------------------------------------------------------------

    def _record_baselines(self, devices: list[GpuDevice]) -> None:
        for d in devices:
            if not d.processes and d.used_bytes <= IDLE_BASELINE_CEILING:
                self.baselines[d.index] = min(self.baselines.get(d.index, d.used_bytes), d.used_bytes)

    def _problem(self, devices: list[GpuDevice], gpus: list[int] | None, owners: dict[int, tuple[int, str]],
                 share: SharePlan | None = None) -> str | None:
        by_index = {d.index: d for d in devices}
        missing = [i for i in gpus or [] if i not in by_index]
        if missing:
            have = ",".join(str(i) for i in sorted(by_index)) or "none"
            return f"GPU {','.join(map(str, missing))} not present (devices: {have}); fix the run's --gpu"
        targets = [by_index[i] for i in gpus] if gpus else devices
        ns_map = ns_pid_map() if any(d.processes for d in targets) else {}
        for device in targets:
            if share is not None and (residents := share.on_device(device.index)):
                # One of our stages runs here: the GPU is shared by memory, or not at all.
                problem = _shared(device, [resolve_holder(p, owners, ns_map) for p in device.processes], share, residents)
                if problem is not None:
                    return problem
                continue
            if device.processes:
                holders = [resolve_holder(p, owners, ns_map) for p in device.processes]
                return _holders_text(holders)
            limit = self.released_threshold(device)
            if device.used_bytes > limit:
                if device.index not in self.baselines:
                    return (
                        f"GPU {device.index}: {format_gib(device.used_bytes)} used but NVML lists no process "
                        "(held by a process in another container or by a dying one); waiting for it to drop"
                    )
                base = self.baselines[device.index]
                return (
                    f"GPU {device.index}: {format_gib(device.used_bytes)} used, idle baseline {format_gib(base)} "
                    f"+ {self.settings.gpu_idle_margin_mib} MiB; memory not released yet"
                )
        return None

    def _in_grace(self, devices: list[GpuDevice], key: tuple[int, ...] | None) -> str | None:
        now = time.monotonic()
        grace = float(self.settings.gpu_grace_s)
        self._launches = [(t, k) for t, k in self._launches if now - t < grace]
        for t, launched in self._launches:
            if launched is None or key is None or set(launched) & set(key):
                return f"a run was launched on {_gpu_names(list(launched) if launched else None)} {now - t:.0f}s ago and has not allocated yet; waiting up to {grace:.0f}s"
        return None


def _shared_only(devices: list[GpuDevice], gpus: list[int] | None, share: SharePlan | None) -> bool:
    """Whether every target device runs one of our stages, so the share plan judged them all."""
    targets = [d for d in devices if not gpus or d.index in gpus]
    return share is not None and bool(targets) and all(share.on_device(d.index) for d in targets)


def _shared(device: GpuDevice, holders: list[Holder], share: SharePlan, residents: dict[int, Resident]) -> str | None:
    """A device one of our stages runs on: foreign holders, leftovers of finished runs and stale pids
    still block; otherwise the memory decides (:func:`~dialsum_tui.manager.guards.memory.share_problem`)."""
    blocking = [h for h in holders if h.run is None or h.state != ALIVE or h.run[0] not in residents]
    if blocking:
        return _holders_text(blocking)
    ours_now: dict[int, int] = {}
    for holder in holders:
        run_id = holder.run[0] if holder.run else 0
        ours_now[run_id] = ours_now.get(run_id, 0) + holder.process.used_bytes
    return share_problem(device.index, device.total_bytes, device.used_bytes, ours_now, share, residents)


def _key(gpus: list[int] | None) -> tuple[int, ...] | None:
    return tuple(sorted(gpus)) if gpus else None


def _gpu_names(gpus: list[int] | None) -> str:
    return "all GPUs" if not gpus else "GPU " + ",".join(str(i) for i in gpus)


def _holders_text(holders: list[Holder]) -> str:
    holders = sorted(holders, key=lambda h: -h.process.used_bytes)
    text = holders[0].describe()
    if len(holders) > 1:
        text += f"; and {len(holders) - 1} more process(es)"
    return text


def check_disk(usage: DiskUsage | None, projected_bytes: int) -> Verdict:
    """Admit a run only if its projected footprint leaves the configured margin under the quota.

    Args:
        usage: the latest (cached) measurement, None before the first one.
        projected_bytes: from :func:`dialsum_tui.manager.guards.disk.projected_footprint`.

    Returns:
        e.g. ``Verdict(False, "needs ~9.8 GB, 141.0/150 GB used, margin 5 GB")``. Before the first
        measurement the run is admitted with a note (the in-run disk guard still applies).
    """
    if usage is None:
        return Verdict(True, "disk usage not measured yet: admitted without the disk check")
    if usage.limit_bytes <= 0:
        return Verdict(True, "no disk quota configured")
    numbers = (
        f"needs ~{format_bytes(projected_bytes)}, {format_used_of(usage.used_bytes, usage.limit_bytes)} used, "
        f"margin {format_bytes(usage.margin_bytes)}"
    )
    if usage.used_bytes + projected_bytes > usage.stop_bytes:
        return Verdict(False, f"{numbers} (quota on {usage.path}); run `dialsum-tui prune` or raise quota_gb")
    if usage.safe_bytes and usage.used_bytes + projected_bytes > usage.safe_bytes:
        return Verdict(True, f"{numbers}; above the safe level {format_bytes(usage.safe_bytes)}")
    return Verdict(True, None)


def check_running_disk(usage: DiskUsage | None) -> Verdict:
    """During a run: not ok once usage reaches ``usage.stop_bytes`` (stop cleanly, pause the queue).

    The same byte count and comparison as the engine's in-run guard (``engine.units.disk_full``), so
    whichever measures first stops the run at the same size.
    """
    if usage is None or usage.limit_bytes <= 0:
        return Verdict(True, None)
    if usage.full:
        return Verdict(
            False,
            f"disk quota guard: {format_used_of(usage.used_bytes, usage.limit_bytes)} used on {usage.path}, "
            f"within the {format_bytes(usage.margin_bytes)} margin; stopping the run and pausing the queue",
        )
    return Verdict(True, None)
