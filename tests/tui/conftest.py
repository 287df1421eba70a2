"""Provides TUI-test fixtures: a real workspace and Manager wired to the stand-in engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace.layout import Workspace


@pytest.fixture
def manager(workspace: Workspace) -> Iterator[Manager]:
    """A real Manager on the workspace; any worker a test started is stopped afterwards."""
    mgr = Manager.open(workspace)
    yield mgr
    mgr.stop_worker()
