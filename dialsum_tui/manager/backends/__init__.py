"""Who runs a stage: the protocol the worker speaks (launch, poll, stop, adopt), the local backend
(processes on this host) and the Slurm backend (one ``sbatch`` job per stage).

Nothing outside this package asks which backend it holds: a backend says what it can do.
"""

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

__all__ = [
    "Backend", "BackendUnavailable", "Exited", "Gone", "Handle", "LaunchError", "LocalBackend", "Pending", "Poll",
    "Running", "SlurmBackend", "Stopper", "open_backends",
]
