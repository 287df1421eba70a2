"""The resume key with Pilot: a cancelled training shows "R resumes from step N/M", R opens the retry
dialog with that plan, one edited key shows up as a diff, and enter queues the resumed run."""

from __future__ import annotations

from textual.widgets import Input, Static

from dialsum_tui.app import make_app
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.runs.retry import read_record
from dialsum_tui.screens.main import KEYS
from dialsum_tui.screens.retry import RetryScreen
from dialsum_tui.widgets.progress_panel import ProgressPanel
from engine.artifacts import EventWriter
from engine.checkpoints import fingerprint
from engine.checkpoints import write_checkpoint_meta as mark
from engine.contract import ArtifactKind, Event, RunFiles, Stage, load_snapshot

from tui_support import scripted_gpu, wait_for, write_config


def stopped_at(workspace, manager, step: int, total: int):
    """A run cancelled during training whose last complete checkpoint is ``step`` of ``total``."""
    run = manager.add(str(write_config(workspace, "Qwen3-4B-Instruct")))
    run_dir = workspace.run_dir(run.id)
    ckpt = workspace.root / "checkpoints" / run.nickname / "trainer" / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    mark(ckpt, step=step, total=total, config_hash="0", resume_fingerprint=fingerprint(
        load_snapshot(run.config_yaml).model_dump()), run_dir=str(run_dir.resolve()))
    with EventWriter(RunFiles(run_dir).events, command=Stage.TRAIN) as events:
        events.emit(Event.ARTIFACT, kind=ArtifactKind.CHECKPOINT, path=str(ckpt), bytes=64)
    manager.store.transition(run.id, RunState.RUNNING, stage=Stage.TRAIN)
    return manager.store.transition(run.id, RunState.CANCELLED)


def _progress_text(app) -> str:
    return app.main.query_one(ProgressPanel).text.plain


async def test_resume_key_shows_the_plan_and_queues_the_resumed_run(workspace, manager) -> None:
    assert any(b.key == "R" for b in KEYS)  # in the footer and the help (both list KEYS)
    run = stopped_at(workspace, manager, 758, 780)
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: "R resumes from step 758/780" in _progress_text(app), what="the resume line")
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, RetryScreen), what="the retry dialog")
        dialog = app.screen
        where = dialog.query_one("#retry-where", Static)
        await wait_for(pilot, lambda: "continues from step 758/780" in str(where.render()), what="the plan")
        dialog.query_one(Input).value = "train.batch_size=4"
        await pilot.press("enter")
        body = dialog.query_one("#dialog-body", Static)
        await wait_for(pilot, lambda: "train.batch_size: 8 → 4" in str(body.render()), what="the diff")
        await wait_for(pilot, lambda: dialog.valid)
        dialog.query_one(Input).value = ""
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(manager.runs()) == 2, what="the resumed run in the store")
        record = read_record(workspace.run_dir(manager.runs()[-1].id))
        assert record["from_run"] == run.id and record["resumed_from_step"] == 758
        assert record["diff"] == {"train.batch_size": {"old": 8, "new": 4}}


async def test_a_refused_change_keeps_queue_off(workspace, manager) -> None:
    stopped_at(workspace, manager, 10, 20)
    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: "R resumes from step 10/20" in _progress_text(app))
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, RetryScreen) and app.screen.valid, what="a valid plan")
        dialog = app.screen
        dialog.query_one(Input).value = "lora.r=64"
        await pilot.press("enter")
        body = dialog.query_one("#dialog-body", Static)
        await wait_for(pilot, lambda: "lora.r: 16 → 64" in str(body.render()), what="the refusal")
        assert not dialog.valid
        await pilot.press("escape")
        assert len(manager.runs()) == 1
