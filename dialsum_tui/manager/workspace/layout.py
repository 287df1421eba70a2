"""Provides the workspace: its directory layout, where it is found, and its validated settings.

A workspace is the directory the team worked in (``data/``, ``configs/``, ``checkpoints/``,
``submissions/``, ``runs/``) plus ``.dialsum/``, the private state directory (database, worker
lock and log, disk cache, settings). The presence of ``.dialsum/`` is what marks a workspace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dialsum_tui.manager.errors import DialsumError
from dialsum_tui.manager.workspace.settings import ENV_VARS, Settings, SettingsError, env_settings, settings_as_dict
from dialsum_tui.manager.workspace.settings import load_settings as _load_settings

__all__ = ["Settings", "Workspace", "WorkspaceError", "WorkspaceNotFound", "find_workspace", "init_workspace",
           "load_settings", "settings_as_dict"]

STATE_DIR = ".dialsum"
ENV_VAR = ENV_VARS["workspace"]
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class WorkspaceError(DialsumError):
    """A workspace problem the user fixes (exit status 2); the message says what to do."""


class WorkspaceNotFound(WorkspaceError):
    """No workspace at the given place, in $DIALSUM_WORKSPACE, or above the current directory."""


def load_settings(path: Path) -> Settings:
    """Read and validate a settings file (:func:`dialsum_tui.manager.workspace.settings.load_settings`).

    Raises:
        WorkspaceError: naming the file and the key when the YAML or a value is wrong.
    """
    try:
        return _load_settings(path)
    except SettingsError as err:
        raise WorkspaceError(str(err)) from None


@dataclass(frozen=True)
class Workspace:
    """A workspace root and the paths inside it."""

    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def configs_dir(self) -> Path:
        return self.root / "configs"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def submissions_dir(self) -> Path:
        return self.root / "submissions"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def db_path(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "worker.lock"

    @property
    def worker_log(self) -> Path:
        return self.state_dir / "worker.log"

    @property
    def disk_cache_path(self) -> Path:
        return self.state_dir / "disk.json"

    @property
    def settings_path(self) -> Path:
        return self.state_dir / "settings.yaml"

    def run_dir(self, run_id: int) -> Path:
        """Return ``runs/<id>``; the id is forced to an int so nothing can escape ``runs/``."""
        return self.runs_dir / str(int(run_id))

    def settings(self) -> Settings:
        """Return the validated settings (re-read each call: users edit the file while the worker runs)."""
        return load_settings(self.settings_path)

    def resolve(self, value: str) -> Path:
        """Resolve a config path (``data.dir``, ``paths.checkpoints``) the way stages see it: cwd = root."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p


def _make_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)


def init_workspace(directory: str | Path) -> Workspace:
    """Create the layout in ``directory``, or adopt an existing one by adding what is missing.

    Args:
        directory: the workspace root (created if needed).

    Raises:
        WorkspaceError: if ``directory`` is a file.
    """
    root = Path(directory).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"{root}: exists and is not a directory; pick another path")
    ws = Workspace(root)
    for sub in (ws.data_dir, ws.configs_dir, ws.checkpoints_dir, ws.submissions_dir, ws.runs_dir):
        sub.mkdir(parents=True, exist_ok=True)
    # Shared server: other users must not read our state, logs or configs snapshots.
    _make_private_dir(ws.state_dir)
    return ws


def _is_workspace(path: Path) -> bool:
    return (path / STATE_DIR).is_dir()


def find_workspace(explicit: str | None = None) -> Workspace:
    """Find the workspace: ``explicit`` (``--workspace``), then ``$DIALSUM_WORKSPACE``, then cwd upwards.

    Raises:
        WorkspaceNotFound: with the places looked at and the command that creates one.
    """
    try:
        from_env = env_settings().workspace
    except SettingsError as err:
        raise WorkspaceError(str(err)) from None
    for source, value in (("--workspace", explicit), (f"${ENV_VAR}", from_env)):
        if value:
            root = Path(value).expanduser().resolve()  # str or Path
            if not _is_workspace(root):
                raise WorkspaceNotFound(
                    f"{source} {root}: not a dialsum workspace (no {STATE_DIR}/); run `dialsum-tui init {root}`"
                )
            return Workspace(root)
    cwd = Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents):
        if _is_workspace(candidate):
            return Workspace(candidate)
    raise WorkspaceNotFound(
        f"no dialsum workspace in {cwd} or above; run `dialsum-tui init DIR`, "
        f"or pass --workspace DIR / set ${ENV_VAR}"
    )
