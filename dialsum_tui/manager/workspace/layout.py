"""Provides the workspace: its directory layout, where it is found, and its validated settings.

A workspace is the directory the team worked in (``data/``, ``configs/``, ``checkpoints/``,
``submissions/``, ``runs/``) plus ``.dialsum/``, the private state directory (database, worker
lock and log, disk cache, settings). The presence of ``.dialsum/`` is what marks a workspace.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from dialsum_tui.manager.errors import DialsumError
from dialsum_tui.manager.workspace.settings import ENV_VARS, Settings, SettingsError, env_settings, settings_as_dict
from dialsum_tui.manager.workspace.settings import load_settings as _load_settings

__all__ = ["Settings", "Workspace", "WorkspaceError", "WorkspaceNotFound", "find_workspace", "init_workspace",
           "load_settings", "settings_as_dict"]

STATE_DIR = ".dialsum"
ROOTS_FILE = "roots"  # every place the workspace was opened at: a moved or copied one resolves the old paths
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

    @property
    def roots_path(self) -> Path:
        return self.state_dir / ROOTS_FILE

    def resolve(self, value: str | Path) -> Path:
        """Resolve a recorded or config path (``data.dir``, ``paths.checkpoints``, an artifact an
        event names) the way stages see it: relative to the root (their cwd).

        An absolute path inside a place this workspace was opened at before (it was moved or
        copied since, :meth:`former_roots`) is taken to the same place under today's root: the
        engine records artifacts with absolute paths, and a copy must act on its own files, never
        on the original's.
        """
        p = Path(value).expanduser()
        if not p.is_absolute():
            return self.root / p
        if p.is_relative_to(self.root):
            return p
        for former in self.former_roots():
            if p.is_relative_to(former):
                return self.root / p.relative_to(former)
        return p

    def relative(self, value: str | Path) -> str:
        """How a path is recorded: relative to the root when it lies inside the workspace (or
        inside a place it was opened at before), so the workspace can be moved or copied; a path
        outside (a shared model directory, an HF cache) stays absolute. The root itself is ``.``."""
        p = self.resolve(value)
        return p.relative_to(self.root).as_posix() or "." if p.is_relative_to(self.root) else str(p)

    def former_roots(self) -> tuple[Path, ...]:
        """Other places this workspace was opened at (``.dialsum/roots``: one per line, the oldest first)."""
        return tuple(root for root in _recorded_roots(self.roots_path) if root != self.root)

    def note_root(self, mode: int = PRIVATE_FILE_MODE) -> None:
        """Record the root this workspace is opened at, if it is new (every process that opens it
        calls this: :func:`dialsum_tui.manager.workspace.sharing.enter`, with the file mode it uses).
        Best effort: a read-only state directory records nothing and loses nothing."""
        roots = _recorded_roots(self.roots_path)
        if self.root in roots:
            return
        # A workspace from before this file existed: where it was is still written in its logs.
        found = [] if self.roots_path.exists() else [r for r in _roots_in_logs(self) if r != self.root]
        try:
            with open(os.open(self.roots_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode), "a",
                      encoding="utf-8") as fh:
                fh.write("".join(f"{root}\n" for root in (*found, self.root)))
        except OSError:
            pass


_roots_cache: dict[Path, tuple[tuple[int, int], tuple[Path, ...]]] = {}


def _recorded_roots(path: Path) -> tuple[Path, ...]:
    """The roots listed in ``path`` (cached while the file is unchanged: it is read on every resolve)."""
    try:
        st = path.stat()
    except OSError:
        return ()
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _roots_cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ()
    roots = tuple(dict.fromkeys(Path(line) for line in lines if line.startswith("/")))
    _roots_cache[path] = (stamp, roots)
    return roots


_SERVING = re.compile(r" serving (/.*)$", re.MULTILINE)  # worker.log: "worker pid 12 serving /srv/ws"
_RUN_DIR = re.compile(r"--run-dir[ =](/\S+)/runs/[0-9]+\b")  # run.log's launch line: a stage's argv
_LOG_HEAD = 64 * 1024


def _roots_in_logs(ws: Workspace) -> list[Path]:
    """Roots the workspace's own logs name (the worker's start lines, its first stages' argv), oldest first."""
    texts = []
    try:
        with open(ws.worker_log, "rb") as fh:
            texts.append(fh.read(_LOG_HEAD).decode("utf-8", "replace"))
    except OSError:
        pass
    for name in sorted((n for n in _listdir(ws.runs_dir) if n.isdigit()), key=int)[:3]:
        try:
            with open(ws.runs_dir / name / "run.log", "rb") as fh:
                texts.append(fh.read(_LOG_HEAD).decode("utf-8", "replace"))
        except OSError:
            continue
    found = [m for text in texts for m in (*_SERVING.findall(text), *_RUN_DIR.findall(text))]
    return list(dict.fromkeys(Path(m.strip()) for m in found))


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


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
    # Shared server: what the workspace makes is its owner's alone (0700) until `--share-group`
    # opens it to one group; directories that were already there keep their modes.
    for sub in (ws.root, ws.data_dir, ws.configs_dir, ws.checkpoints_dir, ws.submissions_dir, ws.runs_dir):
        if not sub.exists():
            sub.parent.mkdir(parents=True, exist_ok=True)
            sub.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
            os.chmod(sub, PRIVATE_DIR_MODE)  # mkdir's mode is cut by the umask, never widened
    # Other users must never read our state, logs or config snapshots.
    _make_private_dir(ws.state_dir)
    ws.note_root()
    return ws


def _is_workspace(path: Path) -> bool:
    """Whether ``path`` holds a workspace.

    Raises:
        WorkspaceError: it may hold one, but this user may not look (the message says whose it is).
    """
    try:
        return stat.S_ISDIR((path / STATE_DIR).stat().st_mode)
    except PermissionError:
        raise WorkspaceError(access_problem(path, path / STATE_DIR)) from None
    except OSError:
        return False


def access_problem(root: Path, denied: Path) -> str:
    """What a user who may not open ``denied`` (inside the workspace at ``root``) is told: whose the
    workspace is, whether a group shares it, and who can let them in."""
    me = _user_name(os.getuid())
    try:
        st = root.stat()
    except OSError:
        return f"{denied}: permission denied; you ({me}) cannot reach this workspace"
    owner, group = _user_name(st.st_uid), _group_name(st.st_gid)
    shared = bool(st.st_mode & stat.S_ISGID) and st.st_mode & stat.S_IRWXG == stat.S_IRWXG
    if shared and st.st_gid not in (os.getgid(), *os.getgroups()):
        return (f"{root}: permission denied: this workspace is shared with Unix group {group!r} (owner {owner}) and "
                f"you ({me}) are not in it; ask an admin to run `sudo usermod -aG {group} {me}`, then log in again")
    if not shared and st.st_uid != os.getuid():
        return (f"{root}: permission denied: this workspace is private to {owner}; only {owner} (or root) can use it. "
                f"{owner} can share it with a group you are in: `dialsum-tui init {root} --share-group GROUP`")
    try:
        info = denied.stat()
        holder = _user_name(info.st_uid)
        what = f"owner {holder}, group {_group_name(info.st_gid)}, mode {stat.S_IMODE(info.st_mode):04o}"
    except OSError:
        holder, what = owner, "its directory is closed to you"
    fix = f"{holder} gives the group its modes back with `dialsum-tui init {root} --share-group {group}`" if shared \
        else f"only {holder} (or root) can open it"
    return f"{denied}: permission denied for {me} ({what}); {fix}"


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


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
        try:
            if _is_workspace(candidate):
                return Workspace(candidate)
        except WorkspaceError:
            continue  # someone else's directory above ours: not the workspace meant here
    raise WorkspaceNotFound(
        f"no dialsum workspace in {cwd} or above; run `dialsum-tui init DIR`, "
        f"or pass --workspace DIR / set ${ENV_VAR}"
    )
