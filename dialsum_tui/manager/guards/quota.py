"""Provides the explicit choice, at ``init``, of the tree the disk quota counts (``quota_path`` in
``.dialsum/settings.yaml``): on the team's server the quota covered far more than the workspace
(~110 GB used with 12 GB of checkpoints), so guessing it would switch the disk guard off in practice.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from dialsum_tui.manager.workspace import sharing
from dialsum_tui.manager.workspace.layout import Workspace, WorkspaceError, load_settings
from engine.artifacts import atomic_write_text

KEY = "quota_path"


def choose_quota_path(ws: Workspace, chosen: str | None) -> str:
    """Write ``quota_path`` into settings.yaml (``chosen``, else the workspace when none is set yet).

    Other keys of the file are kept. Returns the line that tells the user what the quota counts.

    Raises:
        WorkspaceError: ``chosen`` is not an existing directory, or settings.yaml is invalid.
    """
    current = load_settings(ws.settings_path)  # a broken file is reported, never overwritten
    try:
        tree = yaml.safe_load(ws.settings_path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        tree = {}
    if chosen is not None:
        path = Path(chosen).expanduser().resolve()
        if not path.is_dir():
            raise WorkspaceError(f"--quota-path {chosen}: not a directory; give the tree the server's quota "
                                 "counts (e.g. the competition root), or leave it out for the workspace")
        value = ws.relative(path)  # inside the workspace: relative, so a moved or copied one counts its own tree
    elif KEY in tree:
        value = str(current.quota_path)
    else:
        value = "."
    if tree.get(KEY) != value:
        tree[KEY] = value
        text = yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)
        # The worker re-reads it every pass; a teammate's commands read it too in a shared workspace.
        atomic_write_text(ws.settings_path, text, mode=sharing.file_mode())
    shown = ws.resolve(value)
    return (f"disk quota counts {shown} ({KEY} in {ws.settings_path}; `dialsum-tui init {ws.root} --quota-path DIR` "
            "to change)")
