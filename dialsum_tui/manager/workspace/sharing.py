"""Provides workspace sharing: private to its owner by default, or shared by one Unix group.

Private (the default): ``.dialsum/`` and ``runs/<id>/`` are ``0700``, their files ``0600``; the
process umask is ``077``, so every file the worker and its stages create is the owner's alone.

Shared (``share_group: NAME`` in ``.dialsum/settings.yaml``, applied by ``dialsum-tui init
--share-group NAME``): the workspace's directories belong to NAME with the setgid bit (``2770``: new
files inherit the group), files are group-readable and -writable (``0660``, executables ``0770``),
and the umask is ``007`` so the worker and its stages create group-writable files. Nothing is ever
world-accessible. Every process that opens the workspace (:meth:`Manager.open`, the worker) calls
:func:`enter`, and the modes the manager spells come from :func:`file_mode` and :func:`dir_mode`.
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

from dialsum_tui.manager.errors import OperationFailed
from dialsum_tui.manager.procfs import current_user, process_uids, user_name
from dialsum_tui.manager.workspace.layout import Workspace, WorkspaceError, access_problem

PRIVATE_UMASK = 0o077
SHARED_UMASK = 0o007
_shared_gid: int | None = None  # the group this process shares the workspace with, None = private


def enter(workspace: Workspace) -> int | None:
    """Set this process's umask (and the modes below) from the workspace's ``share_group``.

    Returns:
        The group id when shared, None when private.

    Raises:
        WorkspaceError: the group does not exist or the user is not in it (the message says what to do).
    """
    global _shared_gid
    check_access(workspace)
    try:
        name = workspace.settings().share_group
    except WorkspaceError:
        # settings.yaml is broken (a typo): every command must still work (`worker stop`, `check`
        # saying what is wrong), so the state directory's own mode says whether it is shared.
        _shared_gid = _gid_of_shared_dir(workspace.state_dir)
    else:
        _shared_gid = group_id(name, workspace.settings_path) if name else None
    os.umask(SHARED_UMASK if _shared_gid is not None else PRIVATE_UMASK)
    workspace.note_root(file_mode())
    return _shared_gid


def check_access(workspace: Workspace) -> None:
    """Refuse, with whose workspace it is and who can let this user in, what would otherwise fail
    later as a traceback or as "not a usable database": a user outside the sharing group, or a
    state file a teammate's older dialsum-tui left private.

    Raises:
        WorkspaceError: naming the path, its owner and group, and the command or admin step that fixes it.
    """
    wanted = [(workspace.state_dir, os.R_OK | os.W_OK | os.X_OK), (workspace.settings_path, os.R_OK),
              (workspace.db_path, os.R_OK | os.W_OK), (workspace.lock_path, os.R_OK)]
    for path, mode in wanted:
        try:
            os.stat(path)
        except FileNotFoundError:
            continue
        except PermissionError:
            raise WorkspaceError(access_problem(workspace.root, path)) from None
        if not os.access(path, mode):
            raise WorkspaceError(access_problem(workspace.root, path))


def _gid_of_shared_dir(path: Path) -> int | None:
    """The group of a state directory made shared (setgid, group rwx), None when it is private."""
    try:
        st = path.stat()
    except OSError:
        return None
    shared = st.st_mode & stat.S_ISGID and st.st_mode & stat.S_IRWXG == stat.S_IRWXG
    return st.st_gid if shared else None


def file_mode() -> int:
    """Mode of a state file this process creates: ``0600``, or ``0660`` when shared."""
    return 0o660 if _shared_gid is not None else 0o600


def dir_mode() -> int:
    """Mode of a state directory this process creates: ``0700``, or ``2770`` (setgid) when shared."""
    return 0o2770 if _shared_gid is not None else 0o700


def group_id(name: str, where: Path | str = "share_group") -> int:
    """Return the gid of group ``name`` after checking the current user belongs to it.

    Raises:
        WorkspaceError: no such group, or the user is not a member.
    """
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        raise WorkspaceError(f"{where}: share_group {name!r} is no Unix group here; `getent group` lists them "
                             "(or remove share_group to keep the workspace private)") from None
    if gid != os.getgid() and gid not in os.getgroups():
        user = current_user()
        raise WorkspaceError(f"{where}: you ({user}) are not in group {name!r}; ask an admin to run "
                             f"`sudo usermod -aG {name} {user}`, log in again, then retry")
    return gid


# --- who may stop whose process ---------------------------------------------------------------
#
# Unix lets a process signal another only when they belong to the same user (or the sender is root).
# In a shared workspace the worker, the stages it launched and a teammate's CLI may belong to three
# users: a stop that cannot be delivered must be refused at once, naming who can deliver it, never
# "sent" into EPERM while the stage trains on.


def may_signal(target: int, sender: int | None = None) -> bool:
    """Whether process ``sender`` (None: this one) may signal process ``target``, by the kernel's rule
    (the sender's real or effective uid is the target's real or saved uid, or the sender is root).
    True when either process is gone or not visible: there is nothing to refuse then."""
    target_uids = process_uids(target)
    sender_uids = (os.getuid(), os.geteuid(), os.getuid()) if sender is None else process_uids(sender)
    if target_uids is None or sender_uids is None:
        return True
    sender_real, sender_effective, _ = sender_uids
    return sender_effective == 0 or bool({sender_real, sender_effective} & {target_uids[0], target_uids[2]})


def process_user(pid: int) -> str:
    """The name of the user a process runs as ("?" when it is gone)."""
    uids = process_uids(pid)
    return user_name(uids[0]) if uids else "?"


def stop_route(target: int, worker: int | None, what: str, command: str) -> bool:
    """Who delivers a stop to process ``target``: the worker ``worker`` (False) when one runs and may
    signal it, else this process (True) when it may.

    Args:
        what: the process as the user knows it ("run 3's train stage", "the worker").
        command: what the process's owner runs to stop it (``dialsum-tui cancel 3``).

    Raises:
        OperationFailed: neither may; the message names the user (and root) who can, and the command.
    """
    if worker is not None and may_signal(target, worker):
        return False
    if may_signal(target):
        return True
    owner = process_user(target)
    by = (f"the worker serving this workspace runs as {process_user(worker)} (pid {worker}) and you as "
          f"{current_user()}" if worker is not None else f"you run as {current_user()}")
    raise OperationFailed(f"{what} (pid {target}) runs as {owner}; {by}, and Unix lets only {owner} or root "
                          f"signal it: ask {owner} to run `{command}` (or root to)")


def apply_modes(workspace: Workspace, gid: int | None) -> tuple[int, list[Path]]:
    """Make the workspace's files shared with ``gid`` (or private again when None).

    Shared: every directory and file of the workspace gets the group, the owner's bits copied to
    the group, the setgid bit on directories, and no bits for others. Private: ``.dialsum/`` and
    ``runs/`` lose every group and other bit (the rest of the tree is the user's own business).

    Returns:
        (paths changed, paths skipped because another user owns them: only their owner may change them).
    """
    trees = [workspace.root] if gid is not None else [workspace.state_dir, workspace.runs_dir]
    changed, skipped = 0, []
    for path in (p for tree in trees for p in _walk(tree)):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue  # a link's own mode means nothing; its target is walked where it lies inside
        if info.st_uid != os.getuid():
            skipped.append(path)
            continue
        mode = _shared_mode(info.st_mode) if gid is not None else _private_mode(info.st_mode)
        if gid is not None and info.st_gid != gid:
            os.chown(path, -1, gid)
            info = path.lstat()  # chown clears the setgid bit: compare against what is there now
        if stat.S_IMODE(info.st_mode) != mode:
            os.chmod(path, mode)
            changed += 1
    return changed, skipped


def _walk(tree: Path) -> list[Path]:
    """``tree`` and everything under it, not following links."""
    if not tree.exists():
        return []
    found = [tree]
    for dirpath, dirnames, filenames in os.walk(tree):
        found += [Path(dirpath, name) for name in (*dirnames, *filenames)]
    return found


def _shared_mode(mode: int) -> int:
    owner = stat.S_IMODE(mode) & 0o700
    shared = owner | (owner >> 3)
    return shared | stat.S_ISGID if stat.S_ISDIR(mode) else shared


def _private_mode(mode: int) -> int:
    return stat.S_IMODE(mode) & 0o700  # also drops setgid


def set_share_group(workspace: Workspace, name: str | None) -> str:
    """Write ``share_group`` into the settings (None removes it) and bring every file's mode in line.

    Returns:
        What was done, for the CLI to print.

    Raises:
        WorkspaceError: the group does not exist or the user is not in it.
    """
    import yaml

    from engine.artifacts import atomic_write_text

    gid = group_id(name, workspace.settings_path) if name else None
    path = workspace.settings_path
    tree = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}
    if name:
        tree["share_group"] = name
    else:
        tree.pop("share_group", None)
    global _shared_gid
    _shared_gid = gid
    os.umask(SHARED_UMASK if gid is not None else PRIVATE_UMASK)
    atomic_write_text(path, yaml.safe_dump(tree, allow_unicode=True, sort_keys=False), mode=file_mode())
    changed, skipped = apply_modes(workspace, gid)
    who = f"shared with group {name} (dirs 2770, files 0660, nothing for others)" if name else \
        "private (.dialsum and runs/ 0700, files 0600)"
    note = f"; {len(skipped)} path(s) owned by others left as they are (their owner runs this too)" if skipped else ""
    return f"{workspace.root}: {who}; {changed} mode(s) changed{note}"
