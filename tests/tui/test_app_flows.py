"""Drives the real app with Pilot against a real Manager, store and stand-in engine subprocesses."""

from __future__ import annotations

import os

from textual.widgets import Input, OptionList, Static

from dialsum_tui.app import make_app
from dialsum_tui.manager.runs.models import Action, RunState
from dialsum_tui.screens.confirm import ConfirmScreen
from dialsum_tui.screens.help import HelpScreen
from dialsum_tui.screens.main import KEYS, MainScreen, key_label
from dialsum_tui.screens.results import ResultsScreen
from dialsum_tui.widgets.gpu_panel import GpuPanel
from dialsum_tui.widgets.log_view import LogView
from dialsum_tui.widgets.queue_table import QueueTable
from engine import artifacts

from tui_support import scripted_gpu, wait_for, write_config


def _rows(app) -> list[int]:
    table = app.main.query_one(QueueTable)
    return [int(key.value) for key in table.rows]


def _notices(app) -> str:
    return "\n".join(f"{n.title}: {n.message}" for n in app._notifications)


async def test_queue_gpu_and_pause_follow_the_manager(workspace, manager) -> None:
    first = manager.add(str(write_config(workspace, "koBART-summarization")))
    second = manager.add(str(write_config(workspace, "Qwen3-4B-Instruct")))
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: _rows(app) == [first.id, second.id], what="both runs in the queue")
        assert "NVIDIA H100" in str(app.main.query_one(GpuPanel).render())
        await pilot.press("space")
        await wait_for(pilot, manager.is_paused, what="the queue paused through the manager")
        await wait_for(pilot, lambda: "paused" in str(app.main.query_one("#status-line").render()))
        await pilot.press("space")
        await wait_for(pilot, lambda: not manager.is_paused(), what="the queue resumed")


async def test_reorder_with_ctrl_arrows(workspace, manager) -> None:
    manager.pause()  # keep them queued: no worker runs here anyway
    ids = [manager.add(str(write_config(workspace, name))).id for name in ("a-model", "b-model", "c-model")]
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: _rows(app) == ids)
        await pilot.press("ctrl+down")
        expected = [ids[1], ids[0], ids[2]]
        await wait_for(pilot, lambda: [r.id for r in manager.runs()] == expected, what="run moved down in the store")
        await wait_for(pilot, lambda: _rows(app) == expected, what="the table follows the store")
        assert app.selected_run_id == ids[0]  # the cursor stays on the moved run
        await pilot.press("ctrl+up")
        await wait_for(pilot, lambda: [r.id for r in manager.runs()] == ids, what="run moved back up")


async def test_add_run_from_the_config_list(workspace, manager) -> None:
    write_config(workspace, "Llama-3.2-Korean-3B-bf16")
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("a")
        await wait_for(pilot, lambda: app.screen.query(OptionList), what="the add-run dialog")
        options = app.screen.query_one(OptionList)
        assert options.option_count == 1
        options.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(manager.runs()) == 1, what="the run in the store")
        run = manager.runs()[0]
        assert run.nickname == "Llama-3.2-Korean-3B-bf16" and run.action is Action.PIPELINE
        await wait_for(pilot, lambda: _rows(app) == [run.id])


async def test_add_run_with_a_bad_config_names_the_key_under_the_field(workspace, manager) -> None:
    bad = write_config(workspace, "broken", train={"device": "cpu", "batch_sise": 8})
    good = write_config(workspace, "fixed")
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("a")
        await wait_for(pilot, lambda: app.screen.query(Input), what="the add-run dialog")
        dialog = app.screen
        dialog.query_one(Input).value = str(bad.relative_to(workspace.root))
        dialog.query_one(Input).focus()
        await pilot.press("enter")
        error = dialog.query_one("#dialog-error-text", Static)
        await wait_for(pilot, lambda: "batch_sise" in str(error.render()), what="an error naming the key, in place")
        assert "broken.yaml" in str(error.render())
        assert app.screen is dialog and dialog.query_one("#dialog-error").has_class("-shown")  # still open to fix it
        assert manager.runs() == []
        dialog.query_one(Input).value = str(good.relative_to(workspace.root))  # fixed in place: queued, closed
        estimate = dialog.query_one("#dialog-estimate", Static)  # what it would take of a GPU, before queueing
        await wait_for(pilot, lambda: "GPU memory" in str(estimate.render()), what="the config's GPU memory estimate")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(manager.runs()) == 1, what="the fixed config queued")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the dialog closed")


async def test_live_run_cancel_retrain_and_reinfer_by_keyboard(workspace, manager, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_STEPS", "400")  # long enough to watch and cancel
    run = manager.add(str(write_config(workspace, "koBART-summarization")))
    manager.ensure_worker()
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: manager.get(run.id).state is RunState.RUNNING, timeout=20, what="run started")
        log = app.main.query_one(LogView)
        await wait_for(pilot, lambda: log.line_count > 0, timeout=20, what="log lines of the running stage")
        await wait_for(pilot, lambda: app.main.query_one("#progress").text.plain.count("%") > 0,
                       timeout=20, what="a progress figure")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the cancel confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: manager.get(run.id).state is RunState.CANCELLED, timeout=20, what="cancelled")
        monkeypatch.setenv("FAKE_STEPS", "2")
        # Keys that queue compute show the plan and ask, as cancel does: no answers no.
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the retrain plan")
        plan = str(app.screen.query_one("#dialog-body").render())
        assert "stages: train → infer → evaluate" in plan and f"run {run.id}'s snapshot" in plan
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        assert len(manager.runs()) == 1
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the retrain plan again")
        await pilot.press("y")
        await wait_for(pilot, lambda: len(manager.runs()) == 2, what="the retrain run")
        # Re-infer needs a complete final_model: without one the preflight's refusal is shown, nothing asked.
        await pilot.press("i")
        await wait_for(pilot, lambda: "re-infer failed" in _notices(app) and "no complete final_model" in _notices(app),
                       what="the refusal naming the missing model")
        assert isinstance(app.screen, MainScreen) and len(manager.runs()) == 2
        from dialsum_tui.manager.runs.identity import run_key

        model = artifacts.final_model_dir(workspace.checkpoints_dir, run_key(run))
        model.mkdir(parents=True, exist_ok=True)
        artifacts.write_final_model_meta(model, {})
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the re-infer plan")
        assert "reads: run" in str(app.screen.query_one("#dialog-body").render())
        await pilot.press("y")
        await wait_for(pilot, lambda: len(manager.runs()) == 3, what="the re-infer run")
        actions = [r.action for r in manager.runs()]
        assert actions == [Action.PIPELINE, Action.PIPELINE, Action.INFER]
        assert all(r.config_yaml == run.config_yaml for r in manager.runs())
        manager.pause()  # the worker kept FAKE_STEPS=400 from its start: stop what it runs, leave nothing behind
        for left in manager.runs():
            if not left.state.is_final:
                manager.cancel(left.id)
        await wait_for(pilot, lambda: all(r.state.is_final for r in manager.runs()), timeout=30, what="runs stopped")


async def test_cancel_asks_first_and_no_keeps_the_run(workspace, manager) -> None:
    manager.pause()
    run = manager.add(str(write_config(workspace, "koT5")))
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: _rows(app) == [run.id])
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        # A "yes" would have started an intent worker by now (the dialog's callback runs on dismiss):
        # wait until none is left instead of sleeping, then the run must still be queued.
        await wait_for(pilot, lambda: not [w for w in app.workers if w.group == "intents"], what="no intent running")
        assert manager.get(run.id).state is RunState.QUEUED


async def test_log_filter_shows_errors_only(workspace, manager) -> None:
    manager.pause()
    run = manager.add(str(write_config(workspace, "koBART-summarization")))
    # The FutureWarning says "error" and is still not one: errors only hides it (issue 17).
    manager.log_path(run.id).write_text("loading\nstep 1\nRuntimeError: expected scalar type BFloat16 but found Float\n"
                                        "/x/training_args.py:1575: FutureWarning: will raise an error in v4.46\n"
                                        "step 2\n", encoding="utf-8")
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        log = app.main.query_one(LogView)
        await wait_for(pilot, lambda: log.line_count == 5, what="the whole log")
        await pilot.press("f")
        assert log.shown_lines == ["RuntimeError: expected scalar type BFloat16 but found Float"]
        with open(manager.log_path(run.id), "a", encoding="utf-8") as fh:
            fh.write("step 3\ntorch.OutOfMemoryError: CUDA out of memory\n")
        await wait_for(pilot, lambda: log.line_count == 2, what="a new error line, the step line hidden")
        await pilot.press("f")
        assert log.line_count == 7


async def test_errors_only_says_when_there_are_none_and_resets_for_another_run(workspace, manager) -> None:
    manager.pause()
    clean = manager.add(str(write_config(workspace, "clean-run")))
    other = manager.add(str(write_config(workspace, "other-run")))
    manager.log_path(clean.id).write_text("loading\nstep 1\nstep 2\n", encoding="utf-8")
    manager.log_path(other.id).write_text("step 1\n", encoding="utf-8")
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        log = app.main.query_one(LogView)
        await wait_for(pilot, lambda: app.selected_run_id == clean.id and log.line_count == 3, what="the clean log")
        await pilot.press("f")
        assert log.line_count == 0 and log.errors_only
        assert "no error lines in the last 3 lines" in log.placeholder  # never a blank panel
        assert "errors only" in str(log.border_title)
        await pilot.press("down")
        await wait_for(pilot, lambda: app.selected_run_id == other.id and log.line_count == 1, what="the other run")
        assert not log.errors_only and "errors only" not in str(log.border_title)  # the filter was for that run


async def test_log_wraps_or_scrolls_sideways_without_tab(workspace, manager) -> None:
    manager.pause()
    run = manager.add(str(write_config(workspace, "한국어-요약-koBART")))
    long = "ValueError: " + "화자1 요약 " * 40  # far wider than the 80-column log
    manager.log_path(run.id).write_text(f"step 1\n{long}\n", encoding="utf-8")
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.main.query_one(LogView)
        lines = view  # a LogLines: rows rendered only where they are seen
        await wait_for(pilot, lambda: view.line_count == 2, what="the log")
        await wait_for(pilot, lambda: lines.row_count > 3, what="the long line wrapped into several rows")
        assert lines.virtual_size.width <= lines.size.width  # nothing to scroll sideways
        await pilot.press("w")
        await wait_for(pilot, lambda: lines.row_count == 2, what="one row per line")
        assert not view.wrap and lines.virtual_size.width > lines.size.width  # ← → scroll to the rest
        assert "← → scroll sideways" in str(view.border_title)  # the title says how
        assert app.main.query_one(QueueTable).has_focus  # ... and it works from the queue: no Tab first
        await pilot.press("right", "right")
        await wait_for(pilot, lambda: lines.scroll_x == 16, what="the log scrolled right")
        await pilot.press("left")
        await wait_for(pilot, lambda: lines.scroll_x == 8, what="and back left")
        await pilot.press("w")
        await wait_for(pilot, lambda: lines.row_count > 3, what="wrapped again")
        assert lines.scroll_x == 0


async def test_help_lists_every_key_and_palette_has_them(workspace, manager) -> None:
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        shown = {key for key, _ in app.screen.keys}
        assert shown >= {key_label(k) for k in KEYS} | {"ctrl+p"}
        # At 60×20 the list is taller than the screen: it scrolls to its last line (nothing is cut off).
        scroller = app.screen.query_one("#help")
        assert scroller.max_scroll_y > 0
        await pilot.press("end")
        await wait_for(pilot, lambda: scroller.scroll_y == scroller.max_scroll_y, what="scrolled to the end")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert all(any(k.label in t for t in titles) for k in KEYS)


async def test_results_screen_export_and_handoff(workspace, manager) -> None:
    manager.pause()
    manager.add(str(write_config(workspace, "koBART-summarization")))
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen), what="the results screen")
        table = app.screen.query_one("#results-table")
        await wait_for(pilot, lambda: table.row_count == 1)
        assert str(table.get_row_at(0)[0]) == "koBART-summarization"
        await pilot.press("m")
        results = workspace.root / "results.md"
        await wait_for(pilot, results.exists, what="results.md")
        assert "koBART-summarization" in results.read_text(encoding="utf-8")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("h")
        handoff = workspace.root / "HANDOFF.md"
        await wait_for(pilot, handoff.exists, what="HANDOFF.md")
        assert "koBART-summarization" in handoff.read_text(encoding="utf-8")


async def test_kill_leftovers_with_none_says_so(workspace, manager) -> None:
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("K")
        await wait_for(pilot, lambda: "none of our runs" in _notices(app), what="the no-leftovers notice")
        assert isinstance(app.screen, MainScreen)


async def test_quit_says_runs_keep_going_and_reopen_finds_them(workspace, manager, capsys) -> None:
    manager.pause()
    run = manager.add(str(write_config(workspace, "Qwen3-4B-Instruct")))
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: _rows(app) == [run.id])
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="the app to exit")
    assert app.return_code == 0
    assert "1 unfinished run(s) keep going" in " ".join(capsys.readouterr().err.split())
    reopened = make_app(workspace, gpu_source=scripted_gpu(), poll_interval=0.1)  # a fresh Manager too
    async with reopened.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: _rows(reopened) == [run.id], what="the run after reopening")
        assert reopened.paused


async def test_prune_shows_sizes_then_deletes_on_yes(workspace, manager, tmp_path) -> None:
    from engine.artifacts import final_model_dir, write_final_model_meta

    # Never let a test see the real HF caches of this machine.
    (tmp_path / "hf").mkdir()
    workspace.settings_path.write_text(f"gpu_grace_s: 0\ngpu_samples: 1\nhf_cache_dirs: ['{tmp_path / 'hf'}']\n",
                                       encoding="utf-8")
    final = final_model_dir(workspace.checkpoints_dir, "koBART-summarization")
    final.mkdir(parents=True)
    write_final_model_meta(final, {"nickname": "koBART-summarization"})
    for step in (10, 20):
        ckpt = final.parent / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "model.safetensors").write_bytes(os.urandom(64 * 1024))
    plan = manager.prune_plan()
    assert plan, "the manager should offer the intermediate checkpoints"
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the prune confirmation")
        body = str(app.screen.query_one("#dialog-body").render())
        assert all(item.path.name in body for item in plan) and "kB" in body
        await pilot.press("y")
        await wait_for(pilot, lambda: not any(item.path.exists() for item in plan), what="the pruned directories")
        await wait_for(pilot, lambda: "freed" in _notices(app))
    assert (final / "dialsum_model.json").exists()  # the complete model stays


async def test_the_add_dialog_starts_a_sweep(workspace, manager) -> None:
    config = write_config(workspace, "swept")
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a")
        await wait_for(pilot, lambda: app.screen.query("#sweep"), what="the add-run dialog")
        dialog = app.screen
        dialog.query_one("#sweep", Input).value = "train.learning_rate=1e-4,2e-4"
        path = dialog.query_one("#config-path", Input)
        path.value = str(config.relative_to(workspace.root))
        path.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(manager.runs()) == 2, what="the sweep's two variants queued")
        assert {run.sweep for run in manager.runs()} == {"s1"}
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the dialog closed")
