"""Provides the command line that reopens the TUI from where the user stands, for the line printed
after ``q``: ``dialsum-tui`` only when that name is on PATH, else the script's path as typed from the
current directory (``.venv/bin/dialsum-tui``), else ``python -m dialsum_tui``; plus ``--workspace``
when the current directory would not find the workspace.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

NAME = "dialsum-tui"


def _program(argv0: str, cwd: Path) -> str:
    script = Path(argv0)
    on_path = shutil.which(NAME)
    if script.name == NAME and on_path and Path(on_path).resolve() == script.resolve():
        return NAME
    if script.name == NAME and script.is_file():
        try:
            relative = os.path.relpath(script.resolve(), cwd)
        except ValueError:
            relative = str(script.resolve())
        shorter = relative if not relative.startswith("../..") else str(script.resolve())
        return shorter if "/" in shorter else f"./{shorter}"
    if on_path:
        return NAME
    return f"{shlex.quote(sys.executable)} -m dialsum_tui"


def reopen_command(workspace: Path, argv0: str | None = None, cwd: Path | None = None) -> str:
    """The command that reopens the TUI on ``workspace`` from ``cwd`` (default: the current directory).

    Args:
        workspace: the workspace root the TUI showed.
        argv0: how this program was started (default ``sys.argv[0]``).
        cwd: where the user is (default ``Path.cwd()``).
    """
    cwd = (cwd or Path.cwd()).resolve()
    program = _program(argv0 or sys.argv[0], cwd)
    root = workspace.resolve()
    if cwd == root or root in cwd.parents:
        return program
    return f"{program} --workspace {shlex.quote(os.path.relpath(root, cwd) if root.is_relative_to(cwd) else str(root))}"
