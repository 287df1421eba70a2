"""What `dialsum-tui ls` and `--help` print, read as a person would: columns line up with Korean
nicknames (two cells per Hangul syllable), the table fits the terminal with ids whole and a failure's
cause first, and the help is plain text; the prune line and the retry plan are written once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len

from dialsum_tui.cli import main
from dialsum_tui.manager.guards.prune import PruneItem
from dialsum_tui.manager.runs.models import RunState, headline
from dialsum_tui.manager.runs.retry import ResumePoint, RetryPlan
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


# --- ls as rich renders it: the terminal's width, Korean cells, ids whole, a failure's cause ---------

OLD_NOTE = ("preflight before train:\n  - dev.csv line 73: unescaped quote in the dialogue column; "
            "quote the whole field or double the quote\n  - test.csv: missing")


def _failed(mgr: Manager, run_id: int, message: str = OLD_NOTE) -> None:
    """Record the worker's old-format preflight failure on a queued run (queued → waiting → failed)."""
    mgr.store.transition(run_id, RunState.WAITING, reason="preflight found problems")
    mgr.store.transition(run_id, RunState.FAILED, failure_kind="data", failure_message=message,
                         failure_hint="fix the file and retry", failed_stage="train", stage="train")


def test_ls_fits_80_columns_keeps_long_ids_whole_and_leads_with_the_cause(workspace: Workspace, make_config) -> None:
    (workspace.runs_dir / "1233").mkdir(parents=True)  # ids go on after the highest run directory
    mgr = Manager.open(workspace)
    mgr.pause()
    long_nick = "라마-한국어-3B-qlora-아주-긴-별명-실험"
    ids = [mgr.add(str(make_config(nick)), action="train").id for nick in ("koBART-요약", long_nick)]
    _failed(mgr, ids[1])
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run([*CLI, "--workspace", str(workspace.root), "ls"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= 80, lines  # not a terminal: 80 columns
    row = next(line for line in lines if line.startswith(str(ids[1])))
    assert row.split()[0] == "1235" and ids == [1234, 1235]  # a 4-digit id is never cut to "12…"
    assert "라마-한국어" in row and "…" in row  # the long Korean nickname or the note is cut with an ellipsis
    note = row[row.index("failed(data)") + len("failed(data)"):].strip()
    assert note.startswith("dev.csv line 73: unesc"), row  # the cause, not "preflight before train:"
    assert "preflight before" not in done.stdout


def test_ls_follows_the_terminal_width(workspace: Workspace, make_config, monkeypatch, capsys) -> None:
    mgr = Manager.open(workspace)
    mgr.pause()
    run_id = mgr.add(str(make_config("긴-한국어-별명-모델")), action="train").id
    _failed(mgr, run_id)
    for columns in (60, 200):
        monkeypatch.setenv("COLUMNS", str(columns))
        assert main(["--workspace", str(workspace.root), "ls"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert max(cell_len(line) for line in lines[:2]) <= columns
    assert "quote the whole field or double the quote" in lines[1]  # 200 columns: the whole cause
    header = lines[0].split()
    assert "GPU" not in header and "BACKEND" not in header  # local runs on no named device: no empty columns


@pytest.mark.parametrize(("note", "cause"), [
    (OLD_NOTE, "dev.csv line 73: unescaped quote in the dialogue column; quote the whole field or double the quote"),
    ("dev.csv line 73: unescaped quote\npreflight before train", "dev.csv line 73: unescaped quote"),  # new format
    ("waiting for GPU 0: pid 4711 holds 14.2 GiB", "waiting for GPU 0: pid 4711 holds 14.2 GiB"),
    ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    f()\n"
     "RuntimeError: expected scalar type BFloat16 but found Float", "RuntimeError: expected scalar type BFloat16 but found Float"),
    ("--gpu 3: no such device", "--gpu 3: no such device"),  # a flag is not a list bullet
    ("only a heading:", "only a heading:"),
    ("", ""),
    (None, ""),
])
def test_headline_picks_the_line_with_the_cause(note: str | None, cause: str) -> None:
    assert headline(note) == cause


def test_prune_line_and_retry_text_are_written_once() -> None:
    item = PruneItem(Path("checkpoints/m-r1/checkpoint-10"), 12_300_000_000, "intermediate checkpoint")
    assert item.line() == "  12.3 GB  checkpoints/m-r1/checkpoint-10  (intermediate checkpoint)"
    assert item.to_json() == {"path": "checkpoints/m-r1/checkpoint-10", "bytes": 12_300_000_000,
                              "reason": "intermediate checkpoint", "root": None}
    plan = RetryPlan(3, "m", "configs/m.yaml", "", {"train.batch_size": (8, 4)},
                     ResumePoint(Path("ck/checkpoint-20"), 20, 40, 3), ("data order changed",))
    assert plan.text() == "train.batch_size: 8 → 4\nnote: data order changed"
    body = plan.to_json()
    assert body["diff"] == {"train.batch_size": {"old": 8, "new": 4}} and body["resume"]["where"] == "step 20/40"
    assert RetryPlan(3, "m", "c", "", {}).text() == "no config change (same snapshot as run 3)"
