"""Provides manager-test fixtures: a fresh workspace, a demo-free config, and the fake engine wired in."""

from __future__ import annotations

import pytest

from dialsum_tui.manager.workspace import Workspace

from support import write_config


@pytest.fixture
def make_config(workspace: Workspace):
    """``make_config(nickname, **sections)`` → path of a valid config in the workspace."""
    return lambda nickname, **sections: write_config(workspace, nickname, **sections)
