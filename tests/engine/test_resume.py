"""Resume through the real engine CLI: a tiny BART killed with SIGKILL at step k of n continues from
its last complete checkpoint in a NEW run directory and ends at step n after n - k steps, its loss
going on where it stopped; a half-written checkpoint is skipped, never loaded; a SIGINT stop saves a
checkpoint to resume from; a config that changed a key the checkpoint depends on is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.checkpoints import checkpoint_problem, read_checkpoint_meta
from engine.contract import CHECKPOINT_META, ExitCode

from support import REPO, engine_cli, read_event_lines, write_run_config

TOTAL = 40
SAVE_EVERY = 5


def config(model_dir: Path, **train: object) -> dict:
    return {
        "model": {"name_or_path": str(model_dir), "nickname": "tiny-bart", "kind": "seq2seq"},
        "data": {"dir": "data", "max_eval_samples": 4},
        "prompt": {"max_source_length": 128, "max_target_length": 32},
        "train": {"epochs": 1, "max_steps": TOTAL, "learning_rate": 1e-3, "batch_size": 4, "eval_strategy": "no",
                  "save_strategy": "steps", "save_steps": SAVE_EVERY, "save_total_limit": 2, "logging_steps": 1,
                  "warmup_ratio": 0.0, "lr_scheduler": "linear", "device": "cpu", **train},
        "generation": {"batch_size": 8, "num_beams": 1, "max_new_tokens": 16},
    }


def start_train(ws: Path, cfg: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "engine", "train", "--config", str(cfg), "--run-dir", str(run_dir),
                             *extra], cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_event(proc: subprocess.Popen, events_file: Path, match, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in events_file.read_text().splitlines() if events_file.exists() else []:
            event = json.loads(line)
            if match(event):
                return event
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.05)
    pytest.fail(f"no matching event in {events_file} after {timeout} s")


def losses(events: list[dict]) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events if e["event"] == "train_log"}


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory, synth_data_dir: Path, tiny_bart_dir: Path) -> dict:
    """A training SIGKILLed once its checkpoint at step 10 of 40 was announced (it may have gone a bit further)."""
    ws = tmp_path_factory.mktemp("resume") / "ws"
    ws.mkdir()
    shutil.copytree(synth_data_dir, ws / "data")
    cfg = write_run_config(ws, config(tiny_bart_dir))
    run_dir = ws / "runs" / "1"
    proc = start_train(ws, cfg, run_dir)
    wait_for_event(proc, run_dir / "events.jsonl",
                   lambda e: e["event"] == "artifact" and e.get("kind") == "checkpoint" and e["path"].endswith("-10"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    events = read_event_lines(run_dir / "events.jsonl")
    assert events[-1]["event"] != "finished"
    return {"ws": ws, "cfg": cfg, "run_dir": run_dir, "events": events,
            "trainer": ws / "checkpoints" / "tiny-bart" / "trainer"}


@pytest.mark.slow  # ~45 s on a shared CPU: 30 more steps and the final save
def test_killed_run_resumes_in_a_new_run_and_finishes(killed: dict) -> None:
    ws, trainer = killed["ws"], killed["trainer"]
    before = losses(killed["events"])
    resumed_dir = ws / "runs" / "2"
    result = engine_cli("train", "--config", str(killed["cfg"]), "--run-dir", str(resumed_dir),
                        "--resume-from", str(trainer), cwd=ws)
    assert result.returncode == 0, result.stderr[-3000:]
    events = read_event_lines(resumed_dir / "events.jsonl")
    started = events[0]
    k = started["resumed_step"]
    assert started["event"] == "started" and k >= 10 and k % SAVE_EVERY == 0 and started["resumed_total"] == TOTAL
    assert Path(started["resumed_from"]).name == f"checkpoint-{k}"
    after = losses(events)
    # It trained only steps k+1 … n, and ended at n (the Trainer's global step came back).
    assert sorted(after) == list(range(k + 1, TOTAL + 1))
    assert events[-1]["event"] == "finished" and events[-1]["metrics"]["steps"] == TOTAL
    # The loss goes on from where it was: the first loss after the resume is near the last ones before,
    # far from the loss of a fresh start.
    initial, last_before, first_after = before[1], before[k], after[k + 1]
    assert abs(first_after - last_before) < 0.5 * abs(initial - last_before), (initial, last_before, first_after)
    assert (ws / "checkpoints" / "tiny-bart" / "final_model" / "dialsum_model.json").exists()


def test_half_written_checkpoints_are_skipped(killed: dict, tmp_path: Path) -> None:
    trainer = tmp_path / "trainer"
    shutil.copytree(killed["trainer"], trainer)
    complete = sorted((p for p in trainer.glob("checkpoint-*") if checkpoint_problem(p) is None),
                      key=lambda p: int(p.name.split("-")[1]))[-1]
    step = int(complete.name.split("-")[1])
    # Killed while saving: no marker. A full disk: the marker is there but a file was cut short.
    no_marker = trainer / f"checkpoint-{step + 100}"
    shutil.copytree(complete, no_marker)
    (no_marker / CHECKPOINT_META).unlink()
    truncated = trainer / f"checkpoint-{step + 200}"
    shutil.copytree(complete, truncated)
    weights = next(truncated.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    assert read_checkpoint_meta(no_marker) is None and "truncated" in checkpoint_problem(truncated)

    run_dir = killed["ws"] / "runs" / "3"
    result = engine_cli("train", "--config", str(killed["cfg"]), "--run-dir", str(run_dir), "--resume-from",
                        str(trainer), "--set", f"train.max_steps={step + 1}", cwd=killed["ws"])
    assert result.returncode == 0, result.stderr[-3000:]
    events = read_event_lines(run_dir / "events.jsonl")
    assert events[0]["resumed_step"] == step
    notes = [e["message"] for e in events if e["event"] == "warning" and "skipped checkpoint" in e["message"]]
    assert len(notes) == 2
    assert any("no dialsum_checkpoint.json" in n for n in notes) and any("truncated" in n for n in notes)


def test_changed_lora_or_optimizer_is_refused(killed: dict) -> None:
    run_dir = killed["ws"] / "runs" / "4"
    result = engine_cli("train", "--config", str(killed["cfg"]), "--run-dir", str(run_dir), "--resume-from",
                        str(killed["trainer"]), "--set", "train.optim=adafactor", cwd=killed["ws"])
    assert result.returncode == ExitCode.BAD_INPUT
    failed = read_event_lines(run_dir / "events.jsonl")[-1]
    assert failed["kind"] == "config" and "train.optim" in failed["message"] and "adamw_torch" in failed["message"]


def test_sigint_saves_a_checkpoint_at_the_stop(tmp_path: Path, synth_data_dir: Path, tiny_bart_dir: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copytree(synth_data_dir, ws / "data")
    cfg = write_run_config(ws, config(tiny_bart_dir, max_steps=5000, save_strategy="no"))
    run_dir = ws / "runs" / "1"
    proc = start_train(ws, cfg, run_dir)
    wait_for_event(proc, run_dir / "events.jsonl", lambda e: e["event"] == "train_log" and e["step"] >= 3)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, stderr[-2000:]
    events = read_event_lines(run_dir / "events.jsonl")
    saved = [e for e in events if e["event"] == "artifact" and e["kind"] == "checkpoint"]
    assert len(saved) == 1 and events[-1]["kind"] == "interrupted" and "saved, resumable" in events[-1]["message"]
    meta = read_checkpoint_meta(saved[0]["path"])
    assert meta is not None and meta["total"] == 5000 and meta["step"] == max(losses(events))
    assert meta["run_dir"] == str(run_dir.resolve())


def test_rebalanced_batches_resume_where_they_stopped(tmp_path: Path, synth_data_dir: Path, tiny_bart_dir: Path) -> None:
    """batch_rebalance hands the Trainer a batch sampler, not a sampler: a run resumed from its step-5
    checkpoint must still see the very batches the uninterrupted run saw after step 5 — in its second
    epoch too — so its losses match step for step."""
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copytree(synth_data_dir, ws / "data")
    # 48 samples, 4 x 2 per step: 6 steps an epoch; the resumed part crosses into epoch 2.
    cfg = write_run_config(ws, config(tiny_bart_dir, max_steps=9, grad_accum=2, batch_rebalance=True,
                                      save_total_limit=None) | {"data": {"dir": "data", "max_train_samples": 48}})
    full = engine_cli("train", "--config", str(cfg), "--run-dir", str(ws / "runs" / "1"), cwd=ws)
    assert full.returncode == 0, full.stderr[-3000:]
    reference = losses(read_event_lines(ws / "runs" / "1" / "events.jsonl"))
    shutil.rmtree(ws / "checkpoints" / "tiny-bart" / "final_model")

    checkpoint = ws / "checkpoints" / "tiny-bart" / "trainer" / f"checkpoint-{SAVE_EVERY}"
    resumed = engine_cli("train", "--config", str(cfg), "--run-dir", str(ws / "runs" / "2"), "--resume-from", str(checkpoint),
                         cwd=ws)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = losses(read_event_lines(ws / "runs" / "2" / "events.jsonl"))
    assert sorted(after) == [6, 7, 8, 9]
    assert after == pytest.approx({step: reference[step] for step in after}, rel=1e-5)
