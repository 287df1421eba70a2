"""The workspace: where it is and how it is laid out, its validated settings, who may read it
(private or one Unix group), and the lock that lets one worker serve it.

Everything else in the manager stands on this package; it imports none of them.
"""

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

__all__ = [
    "EnvSettings", "NotifySettings", "Settings", "SettingsError", "SlurmSettings", "WorkerLock", "Workspace",
    "WorkspaceError", "WorkspaceNotFound", "env_settings", "find_workspace", "init_workspace", "load_settings",
    "read_lock_holder",
]
