"""Tests LogTail against real files: opening from the end, tqdm collapsing, truncation, fast writers."""

from __future__ import annotations

import os
from pathlib import Path

from dialsum_tui.widgets.log_tail import LogTail, collapse_cr


def test_collapse_cr_keeps_what_a_terminal_shows() -> None:
    assert collapse_cr(" 10%|#   | 1/10\r 20%|##  | 2/10") == " 20%|##  | 2/10"
    assert collapse_cr("plain line\r") == "plain line"  # CRLF ending is not a redraw


def test_opens_at_the_end_of_a_big_log_without_reading_it_all(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    lines = [f"line {i:07d} 화자1: 안녕하세요" for i in range(200_000)]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tail = LogTail(log, window=4096)
    chunk = tail.read_new()
    assert chunk is not None and chunk.reset
    assert chunk.lines[-1] == lines[-1]
    # Only about one window was read, and the first shown line is a whole line, not a fragment.
    assert 0 < len(chunk.lines) <= 4096 // 20
    assert chunk.lines[0] in lines
    assert tail.read_new() is None  # nothing new


def test_follows_appends_and_collapses_tqdm_into_a_live_line(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("loading model\n", encoding="utf-8")
    tail = LogTail(log)
    assert tail.read_new().lines == ["loading model"]
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("  5%|▌  | 1/20\r 10%|█  | 2/20")
    chunk = tail.read_new()
    assert chunk.lines == [] and chunk.live == " 10%|█  | 2/20"
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("\r100%|███| 20/20\nsaved final_model\n")
    chunk = tail.read_new()
    assert chunk.lines == ["100%|███| 20/20", "saved final_model"] and chunk.live is None


def test_survives_truncation_and_replacement(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("old 1\nold 2\nold 3\n", encoding="utf-8")
    tail = LogTail(log)
    tail.read_new()
    log.write_text("new\n", encoding="utf-8")  # truncated in place: smaller than our offset
    chunk = tail.read_new()
    assert chunk.reset and chunk.lines == ["new"]
    replacement = tmp_path / "other.log"
    replacement.write_text("replaced 1\nreplaced 2\n", encoding="utf-8")
    os.replace(replacement, log)  # a new inode, even if bigger
    chunk = tail.read_new()
    assert chunk.reset and chunk.lines == ["replaced 1", "replaced 2"]


def test_skips_ahead_when_the_writer_outruns_the_window(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("start\n", encoding="utf-8")
    tail = LogTail(log, window=1024)
    tail.read_new()
    with open(log, "a", encoding="utf-8") as fh:
        fh.writelines(f"step {i}\n" for i in range(10_000))
    chunk = tail.read_new()
    assert chunk.skipped > 0
    assert chunk.lines[-1] == "step 9999"
    assert all(line.startswith("step ") for line in chunk.lines)


def test_a_missing_log_appears_later(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    tail = LogTail(log)
    assert tail.read_new() is None
    log.write_text("started\n", encoding="utf-8")
    assert tail.read_new().lines == ["started"]
