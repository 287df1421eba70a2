"""Who runs a stage: the protocol the worker speaks (launch, poll, stop, adopt), the local backend
(processes on this host) and the Slurm backend (one ``sbatch`` job per stage).

Nothing outside this package asks which backend it holds: a backend says what it can do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialsum_tui.manager.lazy import lazy_exports

if TYPE_CHECKING:
    from dialsum_tui.manager.backends.local import LocalBackend
    from dialsum_tui.manager.backends.protocol import (
        Backend,
        BackendUnavailable,
        Exited,
        Gone,
        Handle,
        LaunchError,
        Pending,
        Poll,
        Running,
        Stopper,
    )
    from dialsum_tui.manager.backends.registry import open_backends
    from dialsum_tui.manager.backends.slurm import SlurmBackend

# The public surface, loaded on first use (dialsum_tui.manager.lazy).
_EXPORTS = {
    "Backend": "dialsum_tui.manager.backends.protocol",
    "BackendUnavailable": "dialsum_tui.manager.backends.protocol",
    "Exited": "dialsum_tui.manager.backends.protocol",
    "Gone": "dialsum_tui.manager.backends.protocol",
    "Handle": "dialsum_tui.manager.backends.protocol",
    "LaunchError": "dialsum_tui.manager.backends.protocol",
    "LocalBackend": "dialsum_tui.manager.backends.local",
    "Pending": "dialsum_tui.manager.backends.protocol",
    "Poll": "dialsum_tui.manager.backends.protocol",
    "Running": "dialsum_tui.manager.backends.protocol",
    "SlurmBackend": "dialsum_tui.manager.backends.slurm",
    "Stopper": "dialsum_tui.manager.backends.protocol",
    "open_backends": "dialsum_tui.manager.backends.registry",
}
__all__ = [
    "Backend",
    "BackendUnavailable",
    "Exited",
    "Gone",
    "Handle",
    "LaunchError",
    "LocalBackend",
    "Pending",
    "Poll",
    "Running",
    "SlurmBackend",
    "Stopper",
    "open_backends",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
