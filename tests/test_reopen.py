"""The "Reopen with …" line after `q` names a command that works from where the user is."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from dialsum_tui.reopen import reopen_command


def _script(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    script = where / "dialsum-tui"
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    script.chmod(0o755)
    return script


def test_a_venv_script_not_on_path_is_named_by_its_path_from_the_repo(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    script = _script(tmp_path / "repo" / ".venv" / "bin")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    ws = tmp_path / "repo" / "demo-workspace"
    ws.mkdir()
    command = reopen_command(ws, argv0=str(script), cwd=tmp_path / "repo")
    assert command == ".venv/bin/dialsum-tui --workspace demo-workspace"
    assert reopen_command(ws, argv0=str(script), cwd=ws) == "../.venv/bin/dialsum-tui"


def test_the_bare_name_only_when_path_finds_the_same_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _script(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin")
    assert reopen_command(tmp_path, argv0=str(script), cwd=tmp_path) == "dialsum-tui"


def test_started_as_a_module_it_says_python_m(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    command = reopen_command(tmp_path / "ws", argv0="/x/dialsum_tui/__main__.py", cwd=tmp_path)
    assert command == f"{sys.executable} -m dialsum_tui --workspace ws"
