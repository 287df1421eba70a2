"""Snapshot tests (pytest-textual-snapshot) of the main screen at 60×20, 80×24, 120×36 and 200×60 with
Korean nicknames, a running run (selected on start) and a failed one (selected by End: its cause on the
detail line, the row still on screen), one panel at a time under 60×20, the results table and the help
screen (which wraps and scrolls). Everything shown is fixed: run ids, users, progress, log, events, GPU
and disk."""

from __future__ import annotations

import json
import time

import pytest
from textual.pilot import Pilot

from dialsum_tui.app import make_app
from dialsum_tui.manager.guards.disk import DiskUsage, write_cache
from dialsum_tui.manager.insights.results import (
    STATUS_DONE,
    STATUS_OOM,
    STATUS_RUNNING,
    STATUS_TRAINED_INFER_FAILED,
    ResultRow,
)
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.screens.help import HelpScreen
from dialsum_tui.screens.results import ResultsScreen
from dialsum_tui.widgets.log_view import LogView
from dialsum_tui.widgets.queue_table import QueueTable

from tui_support import scripted_gpu, wait_for, write_config

GB = 1000**3
LOG = "".join(f"step {i:3d}/780 loss {3 / (i ** 0.5):.3f} 화자1: 요약 중\n" for i in range(1, 59)) + \
    "/x/transformers/training_args.py:1575: FutureWarning: `evaluation_strategy` is deprecated and will raise an " \
    "error in version 4.46 of 🤗 Transformers. Use `eval_strategy` instead\n" + \
    "UserWarning: 12 samples were truncated to 1024 tokens\n" + " 7%|▋         | 58/780\r 8%|▊         | 60/780"
NICKS = ("EXAONE-3.5-2.4B-요약", "Llama-3.2-한국어-3B-bf16", "한국어-요약-koBART", "큐웬3-4B-대화요약", "koT5-요약-base",
         "Qwen3-4B-LoRA-r16", "gemma-2-한국어-9b")
USERS = ("kim", "lee", "park", "kim", "lee", "park", "choi")
ROWS = len(NICKS)
PREFLIGHT = ("preflight before train:\n  - data/dev.csv line 73: unescaped quote (a field opens with \" and never "
             "closes)\n    fix: quote the field, or run `python -m engine check-data data`\n  - data/test.csv: 0 rows")


def _dashboard(workspace, manager):
    """Seven runs with Korean nicknames by four users: done, running (with a log, loss and ROUGE), waiting,
    queued ×3 and, last, one failed at preflight (its message opens with a heading); a cached disk measurement."""
    ids = [manager.add(str(write_config(workspace, nick))).id for nick in NICKS]
    done, running, waiting, failed = ids[0], ids[1], ids[2], ids[-1]
    for run_id, user in zip(ids, USERS):
        manager.store.update(run_id, user=user)
    manager.store.transition(done, RunState.RUNNING, stage="train", pid=4712)
    manager.store.transition(done, RunState.SUCCEEDED, exit_code=0,
                             metrics={"rouge1": 0.5663, "rouge2": 0.3675, "rougeL": 0.4719, "final": 46.85})
    manager.store.transition(running, RunState.RUNNING, stage="train", pid=4711,
                             progress={"step": 60, "total": 780, "epoch": 0.23, "eta_s": 3725, "tokens_per_s": 5123})
    manager.store.transition(waiting, RunState.WAITING,
                             reason="pid 999999 (not ours; user kim) holds 1.0 GiB on GPU 0 — ask kim")
    manager.store.transition(failed, RunState.WAITING, reason="checking its files")
    manager.store.transition(failed, RunState.FAILED, exit_code=1, failure_kind="data", failed_stage="train",
                             failure_message=PREFLIGHT, failure_hint="fix the CSV: `python -m engine check-data data`")
    manager.log_path(running).write_text(LOG, encoding="utf-8")
    events = [{"event": "train_log", "step": s * 10, "loss": round(3 / (s ** 0.5), 3)} for s in range(1, 40)]
    events.append({"event": "eval", "epoch": 1.0, "rouge1": 0.41, "rouge2": 0.22, "rougeL": 0.39, "final": 34.0})
    (workspace.run_dir(running) / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    # A fresh measurement of the quota'd tree: a stale or foreign one puts a warning on the status line.
    write_cache(workspace, DiskUsage(path=str(workspace.root), used_bytes=98 * GB, limit_bytes=150 * GB,
                                     safe_bytes=110 * GB, margin_bytes=5 * GB, measured_at=time.time(), seconds=1.0,
                                     consumers=[("HF hub cache", 20 * GB), ("checkpoints/Qwen3-4B-Instruct", 9_600_000_000),
                                                ("runs", 12_000_000)]))
    return make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)


async def _settled(pilot: Pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.main.query_one(QueueTable).row_count == ROWS, what="every run")
    await wait_for(pilot, lambda: app.main.query_one(LogView).line_count == 60, what="the log tail")
    await wait_for(pilot, lambda: len(app.main.query_one("#progress").loss_points) == 39, what="the loss curve")
    await pilot.pause(0.2)


SIZES = [(60, 20), (80, 24), (120, 36), (200, 60)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(workspace, manager, snap_compare, size) -> None:
    # Opens on the running run (the second row), its progress and curves in the right column.
    assert snap_compare(_dashboard(workspace, manager), terminal_size=size, run_before=_settled)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen_failed_last_run_after_end(workspace, manager, snap_compare, size) -> None:
    # End selects the failed last run: the detail line leads with the cause and the row stays in view.
    async def end(pilot: Pilot) -> None:
        await _settled(pilot)
        await pilot.press("end")
        await wait_for(pilot, lambda: pilot.app.selected_run_id == ROWS, what="the last run selected")
        await pilot.pause(0.3)

    assert snap_compare(_dashboard(workspace, manager), terminal_size=size, run_before=end)


def test_main_screen_one_panel_at_a_time_50x16(workspace, manager, snap_compare) -> None:
    async def show_log(pilot: Pilot) -> None:
        await _settled(pilot)
        await pilot.press("v")  # queue → log
        await pilot.pause(0.2)

    assert snap_compare(_dashboard(workspace, manager), terminal_size=(50, 16), run_before=show_log)


@pytest.mark.parametrize("size", [(60, 20), (100, 30)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(workspace, manager, snap_compare, size) -> None:
    async def open_help(pilot: Pilot) -> None:
        await _settled(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))
        await pilot.pause(0.1)

    assert snap_compare(_dashboard(workspace, manager), terminal_size=size, run_before=open_help)


def test_results_table_aligns_korean(workspace, manager, snap_compare) -> None:
    rows = [
        ResultRow("한국어-요약-koBART", STATUS_DONE, 46.85, "mecab", 0.566, 0.3675, 0.4719, 1,
                  "final_model complete, submission valid (499 rows), ROUGE from run 1", None, user="kim"),
        ResultRow("Llama-3.2-Korean-3B-bf16", STATUS_TRAINED_INFER_FAILED, None, None, None, None, None, 2,
                  "final_model complete; run 2 infer failed (dtype)", "keep model.dtype and precision consistent",
                  user="lee"),
        ResultRow("Llama-3.2-Korean-3B-fp16", STATUS_OOM, None, None, None, None, None, 3,
                  "run 3 train failed (oom)", "lower train.batch_size"),
        ResultRow("Qwen3-4B-Instruct", STATUS_RUNNING, None, None, None, None, None, 4, "run 4 758/780 steps", None, user="park"),
    ]

    async def open_results(pilot: Pilot) -> None:
        await pilot.app.push_screen(ResultsScreen(rows, "m writes results.md in the workspace"))
        await pilot.pause(0.2)

    assert snap_compare(make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1),
                        terminal_size=(120, 16), run_before=open_results)
