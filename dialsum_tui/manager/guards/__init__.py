"""What may refuse or hold a run, and the readings they judge by: the GPUs (NVML, and who really
holds their memory), the disk against the quota, the preflight of a run's files and settings, and
the prune plan that frees the quota.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialsum_tui.manager.lazy import lazy_exports

if TYPE_CHECKING:
    from dialsum_tui.manager.guards.checks import GpuGuard, check_disk, check_running_disk
    from dialsum_tui.manager.guards.disk import DiskUsage, projected_footprint
    from dialsum_tui.manager.guards.gpu import GpuDevice, GpuProcess, GpuSource, open_gpu_source
    from dialsum_tui.manager.guards.preflight import preflight, refusal
    from dialsum_tui.manager.guards.prune import PruneItem, prune, prune_plan

# The public surface, loaded on first use (dialsum_tui.manager.lazy).
_EXPORTS = {
    "DiskUsage": "dialsum_tui.manager.guards.disk",
    "GpuDevice": "dialsum_tui.manager.guards.gpu",
    "GpuGuard": "dialsum_tui.manager.guards.checks",
    "GpuProcess": "dialsum_tui.manager.guards.gpu",
    "GpuSource": "dialsum_tui.manager.guards.gpu",
    "PruneItem": "dialsum_tui.manager.guards.prune",
    "check_disk": "dialsum_tui.manager.guards.checks",
    "check_running_disk": "dialsum_tui.manager.guards.checks",
    "open_gpu_source": "dialsum_tui.manager.guards.gpu",
    "preflight": "dialsum_tui.manager.guards.preflight",
    "projected_footprint": "dialsum_tui.manager.guards.disk",
    "prune": "dialsum_tui.manager.guards.prune",
    "prune_plan": "dialsum_tui.manager.guards.prune",
    "refusal": "dialsum_tui.manager.guards.preflight",
}
__all__ = [
    "DiskUsage",
    "GpuDevice",
    "GpuGuard",
    "GpuProcess",
    "GpuSource",
    "PruneItem",
    "check_disk",
    "check_running_disk",
    "open_gpu_source",
    "preflight",
    "projected_footprint",
    "prune",
    "prune_plan",
    "refusal",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
