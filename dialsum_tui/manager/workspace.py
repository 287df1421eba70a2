"""Provides the workspace: its directory layout, where it is found, and its validated settings.

A workspace is the directory the team worked in (``data/``, ``configs/``, ``checkpoints/``,
``submissions/``, ``runs/``) plus ``.dialsum/``, the private state directory (database, worker
lock and log, disk cache, settings). The presence of ``.dialsum/`` is what marks a workspace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

STATE_DIR = ".dialsum"
ENV_VAR = "DIALSUM_WORKSPACE"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class WorkspaceError(Exception):
    """A workspace problem the user fixes (exit status 2); the message says what to do."""


class WorkspaceNotFound(WorkspaceError):
    """No workspace at the given place, in $DIALSUM_WORKSPACE, or above the current directory."""


@dataclass(frozen=True)
class Settings:
    """Per-workspace knobs, read from ``.dialsum/settings.yaml`` (every key optional)."""

    quota_gb: float = 150.0  # the server is reset above this: the hard limit of the quota'd tree
    quota_path: str = "."  # tree measured like du (relative = inside the workspace)
    safe_gb: float = 110.0  # where the team aimed to stay; shown as the "safe" line
    margin_gb: float = 5.0  # admission and the running-disk watch keep this much below the quota
    gpu_idle_margin_mib: int = 300  # "released" = back to the device's idle baseline + this, never 0
    gpu_samples: int = 3  # consecutive good samples before admitting a run
    gpu_grace_s: float = 20.0  # after a launch, its memory may not be visible yet: wait before judging the next
    hf_cache_dirs: list[str] = field(
        default_factory=lambda: ["~/.cache/huggingface/hub", "~/.cache/huggingface/xet"]
    )
    disk_refresh_s: float = 60.0  # du is slow: the worker re-measures in the background this often


def _format_settings_error(err: ValidationError, source: Path) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        lines.append(f"{source}: {loc}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_settings(path: Path) -> Settings:
    """Read and validate a settings file; a missing file means all defaults.

    Raises:
        WorkspaceError: naming the file and the key when the YAML or a value is wrong.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise WorkspaceError(f"{path}: invalid YAML ({err}); fix or delete the file") from None
    if tree is None:
        return Settings()
    if not isinstance(tree, dict):
        raise WorkspaceError(f"{path}: expected a mapping such as 'quota_gb: 150'")
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(tree) - known)
    if unknown:
        raise WorkspaceError(f"{path}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
    try:
        return TypeAdapter(Settings).validate_python(tree)
    except ValidationError as err:
        raise WorkspaceError(_format_settings_error(err, path)) from None


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
    for source, value in (("--workspace", explicit), (f"${ENV_VAR}", os.environ.get(ENV_VAR))):
        if value:
            root = Path(value).expanduser().resolve()
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


def settings_as_dict(settings: Settings) -> dict[str, Any]:
    """Plain mapping of the settings (for ``check --json``)."""
    return {f.name: getattr(settings, f.name) for f in fields(settings)}
