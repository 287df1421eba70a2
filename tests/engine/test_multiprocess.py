"""`accelerate launch` with 2 CPU ranks (gloo) trains the tiny BART through the worker's own launch
argv: one stream of events from rank 0, one final_model, and a group SIGINT that stops every rank."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import psutil

from dialsum_tui.manager import process
from dialsum_tui.manager.worker.launching import accelerate_argv
from engine.artifacts import is_complete_model

from support import read_event_lines, script_env, write_run_config


def tiny_config(model_dir: Path, **train: object) -> dict:
    """Short CPU training without evaluation: the launch path is under test, not the model."""
    return {
        "model": {"name_or_path": str(model_dir), "nickname": "tiny-bart", "kind": "seq2seq"},
        "data": {"dir": "data", "max_train_samples": 64},
        "prompt": {"max_source_length": 128, "max_target_length": 32},
        "train": {"epochs": 1, "max_steps": 6, "learning_rate": 1e-3, "batch_size": 4, "eval_strategy": "no",
                  "save_strategy": "no", "logging_steps": 2, "device": "cpu", **train},
    }


def launch_two_ranks(tmp_path: Path, data_dir: Path, model_dir: Path, **train: object):
    """Start ``accelerate launch`` (2 ranks) of ``engine train`` the way the worker does: own session, log file."""
    ws = tmp_path / "ws"
    shutil.copytree(data_dir, ws / "data")
    config = write_run_config(ws, tiny_config(model_dir, **train))
    run_dir = ws / "runs" / "1"
    argv = accelerate_argv([sys.executable, "-m", "engine"], 2) + ["train", "--config", str(config), "--run-dir", str(run_dir)]
    env = script_env(CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    popen, ident = process.launch(argv, cwd=ws, log_path=run_dir / "run.log", env=env)
    return ws, run_dir, popen, ident


def test_two_cpu_ranks_train_with_rank0_events_only(tmp_path: Path, synth_data_dir: Path, tiny_bart_dir: Path) -> None:
    ws, run_dir, popen, _ident = launch_two_ranks(tmp_path, synth_data_dir, tiny_bart_dir)
    rc = popen.wait(timeout=120)
    log = (run_dir / "run.log").read_text(errors="replace")
    assert rc == 0, log[-4000:]
    events = read_event_lines(run_dir / "events.jsonl")
    names = [e["event"] for e in events]
    assert names.count("started") == 1 and names.count("finished") == 1 and "failed" not in names
    assert events[0]["world_size"] == 2
    steps = [e["step"] for e in events if e["event"] == "train_log"]
    assert steps and len(steps) == len(set(steps))  # one rank logs each step, not two
    assert [e["kind"] for e in events if e["event"] == "artifact"] == ["final_model"]
    assert is_complete_model(ws / "checkpoints" / "tiny-bart" / "final_model")
    assert not list((ws / "checkpoints" / "tiny-bart").glob(".final_model.tmp-*"))  # rank 1 wrote no copy


def test_two_ranks_finish_with_cost_balanced_micro_batches(tmp_path: Path, synth_data_dir: Path,
                                                           tiny_bart_dir: Path) -> None:
    # batch_rebalance hands each rank its own share of every step's samples: if the ranks disagreed
    # on how many micro-batches a step has, one would wait for the other's gradients forever.
    _ws, run_dir, popen, _ident = launch_two_ranks(tmp_path, synth_data_dir, tiny_bart_dir, batch_rebalance=True,
                                                   grad_accum=2)
    rc = popen.wait(timeout=120)
    assert rc == 0, (run_dir / "run.log").read_text(errors="replace")[-4000:]
    events = read_event_lines(run_dir / "events.jsonl")
    assert [e["step"] for e in events if e["event"] == "train_log"] == [2, 4, 6]
    assert events[-1]["event"] == "finished"


def test_sigint_to_the_launch_group_stops_every_rank(tmp_path: Path, synth_data_dir: Path, tiny_bart_dir: Path) -> None:
    _ws, run_dir, popen, ident = launch_two_ranks(tmp_path, synth_data_dir, tiny_bart_dir, max_steps=100000,
                                                  logging_steps=1)
    deadline = time.monotonic() + 90
    ranks: list[process.Identity] = []
    while not any(e["event"] == "train_log" for e in read_events_or_empty(run_dir)):
        assert popen.poll() is None, (run_dir / "run.log").read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "training never started"
        ranks = process.group_leaders_below(ident.pid) or ranks
        time.sleep(0.2)
    ranks = process.group_leaders_below(ident.pid) or ranks
    assert len(ranks) == 2, ranks  # torchrun's two ranks, each leading its own group
    assert all(os.getpgid(r.pid) != ident.pid for r in ranks)  # so only the launcher gets the group signal

    assert process.signal_group(ident, signal.SIGINT)
    rc = popen.wait(timeout=60)
    for rank in ranks:
        assert not process.is_alive(rank.pid, rank.start_time), f"rank pid {rank.pid} survived the cancel"
    assert not any(psutil.pid_exists(r.pid) and process.is_alive(r.pid, r.start_time) for r in ranks)
    assert rc != 0
    events = read_events_or_empty(run_dir)
    names = [e["event"] for e in events]
    assert names.count("started") == 1 and "finished" not in names
    failed = [e for e in events if e["event"] == "failed"]
    assert failed and {e["kind"] for e in failed} == {"interrupted"}
    assert {e["rank"] for e in failed} <= {0, 1} and 0 in {e["rank"] for e in failed}


def read_events_or_empty(run_dir: Path) -> list[dict]:
    from engine.artifacts import read_events

    return read_events(run_dir / "events.jsonl")
