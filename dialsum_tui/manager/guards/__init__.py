"""What may refuse or hold a run, and the readings they judge by: the GPUs (NVML, and who really
holds their memory), the disk against the quota, the preflight of a run's files and settings, and
the prune plan that frees the quota.
"""

from dialsum_tui.manager.guards.checks import GpuGuard, check_disk, check_running_disk
from dialsum_tui.manager.guards.disk import DiskUsage, projected_footprint
from dialsum_tui.manager.guards.gpu import GpuDevice, GpuProcess, GpuSource, open_gpu_source
from dialsum_tui.manager.guards.preflight import preflight, refusal
from dialsum_tui.manager.guards.prune import PruneItem, prune, prune_plan

__all__ = [
    "DiskUsage", "GpuDevice", "GpuGuard", "GpuProcess", "GpuSource", "PruneItem", "check_disk", "check_running_disk",
    "open_gpu_source", "preflight", "projected_footprint", "prune", "prune_plan", "refusal",
]
