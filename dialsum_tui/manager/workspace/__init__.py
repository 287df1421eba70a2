"""The workspace: where it is and how it is laid out, its validated settings, who may read it
(private or one Unix group), and the lock that lets one worker serve it.

Everything else in the manager stands on this package; it imports none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dialsum_tui.manager.workspace.layout import (
        Workspace,
        WorkspaceError,
        WorkspaceNotFound,
        find_workspace,
        init_workspace,
        load_settings,
    )
    from dialsum_tui.manager.workspace.lock import WorkerLock, read_lock_holder
    from dialsum_tui.manager.workspace.sections import NotifySettings, SlurmSettings
    from dialsum_tui.manager.workspace.settings import EnvSettings, Settings, SettingsError, env_settings

# The public surface, loaded on first use: importing one module of the package (``runs.models`` for
# the TUI's first frame) must not import the rest of it (pydantic, psutil, NVML…).
_EXPORTS = {
    "EnvSettings": "dialsum_tui.manager.workspace.settings",
    "NotifySettings": "dialsum_tui.manager.workspace.sections",
    "Settings": "dialsum_tui.manager.workspace.settings",
    "SettingsError": "dialsum_tui.manager.workspace.settings",
    "SlurmSettings": "dialsum_tui.manager.workspace.sections",
    "WorkerLock": "dialsum_tui.manager.workspace.lock",
    "Workspace": "dialsum_tui.manager.workspace.layout",
    "WorkspaceError": "dialsum_tui.manager.workspace.layout",
    "WorkspaceNotFound": "dialsum_tui.manager.workspace.layout",
    "env_settings": "dialsum_tui.manager.workspace.settings",
    "find_workspace": "dialsum_tui.manager.workspace.layout",
    "init_workspace": "dialsum_tui.manager.workspace.layout",
    "load_settings": "dialsum_tui.manager.workspace.layout",
    "read_lock_holder": "dialsum_tui.manager.workspace.lock",
}
__all__ = [
    "EnvSettings",
    "NotifySettings",
    "Settings",
    "SettingsError",
    "SlurmSettings",
    "WorkerLock",
    "Workspace",
    "WorkspaceError",
    "WorkspaceNotFound",
    "env_settings",
    "find_workspace",
    "init_workspace",
    "load_settings",
    "read_lock_holder",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
