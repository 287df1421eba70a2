"""The progress panel tells a failed run's verdict (its cause first) and a waiting run's reason, not just a bar;
its curves fit one line each."""

from __future__ import annotations

from rich.cells import cell_len

from dialsum_tui.manager.runs.models import Action, Run, RunState
from dialsum_tui.manager.snapshot import RunSnapshot, run_progress
from dialsum_tui.screens.run_detail import render_run
from dialsum_tui.widgets.formatting import fit_cell, run_note, sparkline
from dialsum_tui.widgets.progress_panel import render_curves, render_evals, render_progress, render_verdict
from dialsum_tui.widgets.queue_table import render_detail


def make_run(**fields) -> Run:
    return Run(id=2, nickname="broken-data", config_path="c.yaml", config_yaml="", action=Action.PIPELINE, **fields)


def test_a_failed_run_shows_kind_stage_message_and_hint() -> None:
    run = make_run(state=RunState.FAILED, stage="train", failed_stage="train", failure_kind="data",
                   failure_message="data-broken/dev.csv: line 73: unclosed quote",
                   failure_hint="run `python -m engine check-data DIR` and fix what it lists")
    text = render_verdict(RunSnapshot(run)).plain
    assert "✖ data-broken/dev.csv: line 73: unclosed quote · data in train" in text  # the cause first
    assert "→ run `python -m engine check-data DIR`" in text


PREFLIGHT = ("preflight before train:\n  - data-broken/dev.csv line 73: unescaped quote (a field opens with \" "
             "and never closes)\n    fix: quote the field\n  - data-broken/test.csv: 0 rows")


def test_every_one_line_view_of_a_failure_leads_with_its_cause() -> None:
    # The worker's preflight message opens with a heading; the queue's note, the detail line and the
    # progress panel show the cause, and the detail screen (enter) the whole text.
    run = make_run(state=RunState.FAILED, stage="train", failed_stage="train", failure_kind="data",
                   failure_message=PREFLIGHT, failure_hint="fix the CSV")
    cause = "data-broken/dev.csv line 73: unescaped quote (a field opens with \" and never closes)"
    assert run_note(run) == f"{cause} · data in train"
    assert render_detail(run).plain.splitlines()[1] == f"✖ {cause} · data in train"
    assert render_verdict(RunSnapshot(run)).plain.splitlines()[0] == f"✖ {cause} · data in train"
    full = render_run(run).plain
    assert PREFLIGHT in full and "→ fix the CSV" in full and "data-broken/test.csv: 0 rows" in full
    assert fit_cell(run_note(run), 30).endswith("…") and fit_cell(run_note(run), 30).startswith("data-broken/dev.csv")


def test_curves_fit_one_line_each_with_the_last_value() -> None:
    from engine.contract import Eval, Event

    loss = tuple((float(s * 10), 3 / s ** 0.5) for s in range(1, 40))
    evals = (Eval(Event.EVAL, epoch=1.0, final=34.0), Eval(Event.EVAL, epoch=2.0, final=41.5))
    lines = render_curves(loss, evals, width=30).plain.splitlines()
    assert len(lines) == 2 and all(cell_len(line) <= 30 for line in lines)
    assert lines[0].startswith("loss  █") and "0.480 @390" in lines[0]  # falling: high block first, last value
    assert lines[1].startswith("ROUGE ▁█") and "41.50 (2 evals)" in lines[1]
    assert render_curves((), (), 30).plain == "loss  no loss logged yet\nROUGE no evaluation yet"
    assert sparkline([1.0, 1.0], 5) == "▄▄" and sparkline([], 5) == ""


def test_a_waiting_run_shows_the_guard_reason() -> None:
    run = make_run(state=RunState.WAITING, reason="pid 4711 (run 12, Llama) holds 14.2 GiB on GPU 0")
    assert "⏸ pid 4711 (run 12, Llama) holds 14.2 GiB on GPU 0" in render_verdict(RunSnapshot(run)).plain


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
    assert "will add ~2.5 GB to the disk" in render_verdict(RunSnapshot(run, footprint=2_500_000_000)).plain
