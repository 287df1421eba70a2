"""``retry --resume`` and ``retry --set/--config`` through the real CLI and the detached worker (the
stand-in engine writes marked checkpoints with ``FAKE_SAVE_STEPS``): a stage killed with SIGKILL or
cancelled resumes in a new run that trains only the steps left; changes are validated like ``add``,
shown as a diff and recorded; a resume the checkpoint cannot take is refused with exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from dialsum_tui.manager.guards.prune import prune_plan
from dialsum_tui.manager.insights.results import result_rows
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.runs.retry import protected_checkpoints, read_record, resumable
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace.layout import Workspace
from engine.artifacts import atomic_directory, final_model_dir, read_events, write_final_model_meta
from engine.contract import CHECKPOINT_META, ExitCode, RunFiles

from support import run_cli, wait_until

STEPS = 40


@pytest.fixture
def cli(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    monkeypatch.setenv("FAKE_STEPS", str(STEPS))
    monkeypatch.setenv("FAKE_SAVE_STEPS", "5")
    monkeypatch.setenv("FAKE_STEP_S", "0.1")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(workspace, *args, expect=0 if check else None)

    yield run
    Manager.open(workspace).stop_worker()


def train_steps(ws: Workspace, run_id: int) -> list[int]:
    return [e["step"] for e in read_events(RunFiles(ws.run_dir(run_id)).events) if e["event"] == "train_log"]


def started(ws: Workspace, run_id: int) -> dict:
    return next(e for e in read_events(RunFiles(ws.run_dir(run_id)).events)
                if e["event"] == "started" and e.get("command") == "train")


def test_kill_9_then_resume_trains_only_the_steps_left(workspace: Workspace, make_config, cli) -> None:
    cli("add", str(make_config("qwen3-4b")))
    mgr = Manager.open(workspace)
    wait_until(lambda: mgr.get(1).pid and max(train_steps(workspace, 1), default=0) >= 12, what="step 12")
    os.kill(mgr.get(1).pid, signal.SIGKILL)  # no clean stop: only the periodic checkpoints exist
    wait_until(lambda: mgr.get(1).state.is_final, what="the killed run's verdict")
    point = resumable(workspace, mgr.get(1))
    assert point is not None and point.step in (10, 15, 20) and point.where == f"step {point.step}/{STEPS}"

    out = cli("retry", "1", "--resume").stdout
    assert f"resuming from step {point.step}/{STEPS}" in out and "no config change" in out
    wait_until(lambda: mgr.get(2).state is RunState.SUCCEEDED, what="the resumed run")
    assert started(workspace, 2)["resumed_step"] == point.step
    assert train_steps(workspace, 2) == list(range(point.step + 1, STEPS + 1))  # n - k steps, ending at n
    # Recorded relative to the workspace (a moved or copied one resumes from its own checkpoint).
    assert read_record(workspace.run_dir(2)) == {"from_run": 1, "diff": {}, "resume_from": workspace.relative(point.path),
                                                 "resumed_from_step": point.step, "resumed_total": STEPS}
    row = next(r for r in result_rows(workspace, mgr.runs()) if r.nickname == "qwen3-4b")
    assert f"resumed from step {point.step} of run 1" in row.evidence


def test_cancel_saves_a_checkpoint_and_resume_continues_from_it(workspace: Workspace, make_config, cli) -> None:
    cli("add", str(make_config("kobart")))
    mgr = Manager.open(workspace)
    wait_until(lambda: max(train_steps(workspace, 1), default=0) >= 7, what="step 7")
    mgr.cancel(1)  # what `dialsum-tui cancel 1` does, without a CLI start racing the fake's steps
    wait_until(lambda: mgr.get(1).state is RunState.CANCELLED, what="cancelled")
    point = resumable(workspace, mgr.get(1))
    assert point is not None and point.step == max(train_steps(workspace, 1)) and point.step % 5 != 0
    # prune never deletes it, even once another run of the nickname has a complete final_model.
    assert point.path.resolve() in protected_checkpoints(workspace, mgr.runs())
    with atomic_directory(final_model_dir(workspace.checkpoints_dir, "kobart")) as tmp:
        write_final_model_meta(tmp, {"nickname": "kobart"})
    planned = {item.path.resolve() for item in prune_plan(workspace, mgr.runs())}
    assert point.path.resolve() not in planned and (point.path.parent / "checkpoint-5").resolve() in planned

    cli("retry", "1", "--resume")
    wait_until(lambda: mgr.get(2).state is RunState.SUCCEEDED, what="the resumed run")
    assert train_steps(workspace, 2)[0] == point.step + 1


def test_set_shows_the_diff_and_takes_effect(workspace: Workspace, make_config, cli) -> None:
    cli("add", str(make_config("kot5", train={"device": "cpu", "batch_size": 8})))
    mgr = Manager.open(workspace)
    wait_until(lambda: mgr.get(1).state.is_final)
    out = cli("retry", "1", "--set", "train.batch_size=4", "--set", "train.grad_accum=2").stdout
    assert "train.batch_size: 8 → 4" in out and "train.grad_accum: 1 → 2" in out
    assert "learning_rate" not in out  # changed keys only
    snapshot = yaml.safe_load(RunFiles(workspace.run_dir(2)).config.read_text(encoding="utf-8"))
    assert snapshot["train"]["batch_size"] == 4 and mgr.get(2).config_yaml.count("batch_size: 4") == 1
    record = read_record(workspace.run_dir(2))
    assert record["from_run"] == 1 and record["diff"]["train.batch_size"] == {"old": 8, "new": 4}
    assert "resume_from" not in record


def test_config_file_is_validated_like_add(workspace: Workspace, make_config, cli) -> None:
    cli("add", str(make_config("kobart")))
    mgr = Manager.open(workspace)
    wait_until(lambda: mgr.get(1).state.is_final)
    bad = workspace.configs_dir / "fixed.yaml"
    tree = yaml.safe_load(Path(make_config("kobart")).read_text())
    bad.write_text(yaml.safe_dump(tree | {"train": {"bacth_size": 4}}), encoding="utf-8")
    done = cli("retry", "1", "--config", str(bad), check=False)
    assert done.returncode == ExitCode.BAD_INPUT and "train.bacth_size" in done.stderr and "fixed.yaml" in done.stderr
    bad.write_text(yaml.safe_dump(tree | {"train": {"device": "cpu", "epochs": 1}}), encoding="utf-8")
    assert "train.epochs: 3.0 → 1" in cli("retry", "1", "--config", str(bad)).stdout


def test_resume_refused_when_the_checkpoint_cannot_take_the_change(workspace: Workspace, make_config, cli) -> None:
    cli("add", str(make_config("llama-3b", lora={"enabled": True, "r": 16})))
    mgr = Manager.open(workspace)
    wait_until(lambda: max(train_steps(workspace, 1), default=0) >= 6, what="step 6")
    mgr.cancel(1)  # what `dialsum-tui cancel 1` does, without a CLI start racing the fake's steps
    wait_until(lambda: mgr.get(1).state.is_final)
    done = cli("retry", "1", "--resume", "--set", "lora.r=32", check=False)
    assert done.returncode == ExitCode.BAD_INPUT
    assert "lora.r: 16 → 32" in done.stderr and "shapes depend on the rank" in done.stderr
    done = cli("retry", "1", "--resume", "--set", "train.learning_rate=0.0001", check=False)
    assert done.returncode == ExitCode.BAD_INPUT and "would not take effect" in done.stderr
    assert len(mgr.runs()) == 1  # nothing queued
    # A checkpoint whose marker is gone (killed while saving) is never resumed.
    point = resumable(workspace, mgr.get(1))
    for ckpt in point.path.parent.glob("checkpoint-*"):
        (ckpt / CHECKPOINT_META).unlink()
    done = cli("retry", "1", "--resume", check=False)
    assert done.returncode == ExitCode.BAD_INPUT and "no complete checkpoint" in done.stderr
    assert "killed while saving" in done.stderr and "starts over" in done.stderr
    assert json.loads(cli("ls", "--json").stdout)[-1]["id"] == 1
