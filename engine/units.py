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
    """Decimal GB (as a quota is stated) to bytes."""
    return int(round(gb * GB))


def disk_stop_bytes(quota_gb: float, margin_gb: float) -> int:
    """The byte count at which the quota'd tree counts as full: the quota less its safety margin.

    The engine's in-run guard (``train --disk-stop-bytes``) and the manager's running-disk watch
    both stop at this number, compared by :func:`disk_full`.
    """
    return gb_to_bytes(quota_gb) - gb_to_bytes(margin_gb)


def disk_full(used_bytes: int, stop_bytes: int) -> bool:
    """Whether a tree of ``used_bytes`` has reached ``stop_bytes`` (the one comparison both sides make)."""
    return used_bytes >= stop_bytes


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
    """``"12.3 / 150.0 GB"`` — both in one decimal unit (GB, or MB for a limit under 1 GB, as in
    tests and demos) so the two numbers compare at a glance."""
    size, unit = (GB, "GB") if limit >= GB else (MB, "MB")
    return f"{used / size:.1f} / {limit / size:.1f} {unit}"


def format_gib(n_bytes: float) -> str:
    """GPU memory in binary units, as NVML reports it: ``0.5 GiB``, ``61.0 GiB``."""
    return f"{n_bytes / GIB:.1f} GiB"


def format_rouge(value: float | None, *, x100: bool = False) -> str:
    """A ROUGE score as every screen and file shows it: ×100 with two decimals ("95.03"), "-" when missing.

    Args:
        value: a 0..1 fraction (R1/R2/RL as the scorer returns them), or with ``x100`` a score already
            ×100 (the ``final`` of an eval event and of a result row).
    """
    if value is None:
        return "-"
    return f"{value if x100 else value * 100:.2f}"
