"""Tests the one log reader against real files: opening from the end, tqdm collapsing, truncation,
fast writers, the whole-file mode of `dialsum-tui logs`, the tail the worker judges, the error matcher."""

from __future__ import annotations

import os
from pathlib import Path

from dialsum_tui.manager.runs.logs import LogTail, collapse_cr, error_lines, is_error_line, read_tail, tail_lines


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


def test_whole_file_mode_reads_from_the_start_in_bounded_chunks(tmp_path: Path, monkeypatch) -> None:
    from dialsum_tui.manager.runs import logs

    monkeypatch.setattr(logs, "READ_CHUNK", 1000)
    log = tmp_path / "run.log"
    lines = [f"line {i:05d} 화자1" for i in range(2000)]
    log.write_text("\n".join(lines) + "\nunfinished", encoding="utf-8")
    tail = LogTail(log, window=None)
    seen: list[str] = []
    reads = 0
    while (chunk := tail.read_new()) is not None:
        seen.extend(chunk.lines)
        live = chunk.live
        reads += 1
        assert chunk.skipped == 0
    assert seen == lines and live == "unfinished"
    assert reads >= log.stat().st_size // 1000  # never more than a chunk at a time


def test_read_tail_and_tail_lines_read_only_the_end(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    assert read_tail(log) == "" and tail_lines(log) == ""  # missing: empty, not an error
    log.write_text("".join(f"step {i}\n" for i in range(100_000)) + "Traceback (most recent call last):\n", "utf-8")
    assert read_tail(log, limit=40).endswith("Traceback (most recent call last):\n")
    assert len(read_tail(log, limit=40).encode()) == 40
    assert tail_lines(log, lines=2) == "step 99999\nTraceback (most recent call last):"


def test_one_error_matcher_for_the_verdict_and_the_filter() -> None:
    for line in ("RuntimeError: expected scalar type BFloat16", "Traceback (most recent call last):",
                 "CUDA out of memory", "Killed", "stage failed", "Fatal Python error", "core dumped (abort)"):
        assert is_error_line(line), line
    assert not is_error_line("step 3/780 loss 0.41")
    tail = "step 1\nstep 2\nTraceback (most recent call last):\n  File x\nValueError: bad\n"
    assert error_lines(tail) == "Traceback (most recent call last): | ValueError: bad"
    assert error_lines("a\nb\nc\nd\n") == "b | c | d"  # nothing error-like: the last lines


def test_warnings_are_not_errors_even_when_they_say_error():
    # What transformers prints; "errors only" (f) and a failure's last lines must skip it.
    warning = "/x/transformers/training_args.py:1575: FutureWarning: `evaluation_strategy` will raise an error in v4.46"
    assert not is_error_line(warning)
    assert not is_error_line("  warnings.warn(")
    assert is_error_line("RuntimeError: CUDA error: device-side assert (FutureWarning: ignored)")
    assert is_error_line("torch.OutOfMemoryError: CUDA out of memory")
