"""The workspace: where it is and how it is laid out, its validated settings, who may read it
(private or one Unix group), and the lock that lets one worker serve it.

Everything else in the manager stands on this package; it imports none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialsum_tui.manager.lazy import lazy_exports

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

# The public surface, loaded on first use (dialsum_tui.manager.lazy).
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

__getattr__ = lazy_exports(__name__, _EXPORTS)
