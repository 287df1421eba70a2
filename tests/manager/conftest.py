"""Provides manager-test fixtures: a fresh workspace, a demo-free config, and the fake engine wired in."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dialsum_tui.manager.workspace.layout import Workspace

from support import write_config


@pytest.fixture
def make_config(workspace: Workspace):
    """``make_config(nickname, **sections)`` → path of a valid config in the workspace."""
    return lambda nickname, **sections: write_config(workspace, nickname, **sections)


@pytest.fixture
def sleeper():
    """A real, idle process in its own session: a GPU holder the guards can look up in /proc."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()
