"""The progress panel tells a failed run's verdict and a waiting run's reason, not just a bar."""

from __future__ import annotations

from dialsum_tui.manager.runs.models import Action, Run, RunState
from dialsum_tui.manager.snapshot import RunSnapshot, run_progress
from dialsum_tui.widgets.progress_panel import render_evals, render_progress


def make_run(**fields) -> Run:
    return Run(id=2, nickname="broken-data", config_path="c.yaml", config_yaml="", action=Action.PIPELINE, **fields)


def test_a_failed_run_shows_kind_stage_message_and_hint() -> None:
    run = make_run(state=RunState.FAILED, stage="train", failed_stage="train", failure_kind="data",
                   failure_message="data-broken/dev.csv: line 73: unclosed quote",
                   failure_hint="run `python -m engine check-data DIR` and fix what it lists")
    text = render_progress(RunSnapshot(run)).plain
    assert "✖ data in train: data-broken/dev.csv: line 73: unclosed quote" in text
    assert "→ run `python -m engine check-data DIR`" in text


def test_a_waiting_run_shows_the_guard_reason() -> None:
    run = make_run(state=RunState.WAITING, reason="pid 4711 (run 12, Llama) holds 14.2 GiB on GPU 0")
    assert "⏸ pid 4711 (run 12, Llama) holds 14.2 GiB on GPU 0" in render_progress(RunSnapshot(run)).plain


def test_progress_and_scores_come_from_the_engines_own_fields() -> None:
    # The store holds what the worker copied from a `progress` event; the panel reads it typed.
    run = make_run(state=RunState.RUNNING, stage="train",
                   progress={"step": 60, "total": 780, "epoch": 0.23, "eta_s": 3725.0, "tokens_per_s": 5123.0,
                             "samples_per_s": 9.5, "stage": "train", "ts": 1.0, "loss": 0.5})
    text = render_progress(RunSnapshot(run, progress=run_progress(run))).plain
    assert "8%  60/780" in text and "epoch 0.23" in text and "5,123 tok/s" in text and "ETA 1h02m" in text
    from engine.contract import Eval, Event

    table = render_evals([Eval(Event.EVAL, epoch=1.0, rouge1=0.41, rouge2=0.22, rougeL=0.39, final=34.0),
                          Eval(Event.EVAL, command="evaluate", split="dev", rouge1=0.5, rouge2=0.3, rougeL=0.45,
                               final=41.7)])
    cells = [list(column.cells) for column in table.columns]
    assert cells[0] == ["ep 1.0", "dev"] and cells[1] == ["41.00", "50.00"] and cells[4] == ["34.00", "41.70"]


def test_a_queued_run_says_what_it_will_add_to_the_disk() -> None:
    run = make_run(state=RunState.QUEUED)
    assert "will add ~2.5 GB to the disk" in render_progress(RunSnapshot(run, footprint=2_500_000_000)).plain
