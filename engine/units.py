"""Provides the one definition of byte units and their formatting.

A disk quota is stated in decimal GB (10**9 bytes) everywhere it is computed, shown or compared:
the server's 150 GB reset is decimal, so the engine's in-run guard and the manager's watch stop at
the same byte count (:func:`disk_stop_bytes`). GPU memory is binary (GiB), as NVML and nvidia-smi
report it.
"""

from __future__ import annotations

GB = 10**9
MB = 10**6
GIB = 2**30
MIB = 2**20


def gb_to_bytes(gb: float) -> int:
    return int(round(gb * GB))


def disk_stop_bytes(quota_gb: float, margin_gb: float) -> int:
    """The byte count at which the quota'd tree counts as full: the quota less its safety margin."""
    return gb_to_bytes(quota_gb) - gb_to_bytes(margin_gb)


def format_bytes(n_bytes: float) -> str:
    """Disk sizes in decimal units: ``512 B``, ``3.4 MB``, ``12.3 GB``, ``1.20 TB``."""
    n = float(n_bytes)
    if abs(n) < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if abs(n) < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.2f} TB"


def format_used_of(used: int, limit: int) -> str:
    """``"12.3 / 150.0 GB"`` — both in decimal GB so the two numbers compare at a glance."""
    return f"{used / GB:.1f} / {limit / GB:.1f} GB"


def format_gib(n_bytes: float) -> str:
    """GPU memory in binary units, as NVML reports it: ``0.5 GiB``, ``61.0 GiB``."""
    return f"{n_bytes / GIB:.1f} GiB"
