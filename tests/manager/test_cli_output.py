"""What `dialsum-tui ls` and `--help` print, read as a person would: columns line up with Korean
nicknames (two cells per Hangul syllable), and the help is plain text."""

from __future__ import annotations

import subprocess
import sys

from rich.cells import cell_len

from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace.layout import Workspace

CLI = [sys.executable, "-m", "dialsum_tui"]


def _cli(*args: str) -> str:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ls_aligns_columns_by_display_width(workspace: Workspace, make_config) -> None:
    mgr = Manager.open(workspace)
    mgr.pause()  # nothing starts: the listing is of queued runs, no worker involved
    for nick in ("koBART-요약", "라마-한국어-3B", "qwen3"):
        mgr.add(str(make_config(nick)), action="train")
    lines = _cli("--workspace", str(workspace.root), "ls").splitlines()
    table = lines[:4]
    assert [line.split()[1] for line in table] == ["NICKNAME", "koBART-요약", "라마-한국어-3B", "qwen3"]
    # Where the ACTION column starts, counted in terminal cells, is the same on every line.
    starts = {cell_len(line[: line.index(word)]) for line, word in zip(table, ["ACTION", "train", "train", "train"])}
    assert len(starts) == 1, table
    assert starts.pop() == cell_len("ID  라마-한국어-3B  ")  # the widest nickname sets the column


def test_help_is_plain_text() -> None:
    text = " ".join(_cli("--help").split())  # argparse wraps to the terminal width
    assert "``" not in text and "Provides" not in text
    assert "With no command, open the TUI" in text and "Exit codes: 0 ok" in text and "serve" in text
    serve_help = " ".join(_cli("serve", "--help").split())
    assert "ssh -L 8000:127.0.0.1:8000" in serve_help and "--i-know-the-page-can-cancel-runs" in serve_help
