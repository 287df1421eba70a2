"""The progress panel tells a failed run's verdict and a waiting run's reason, not just a bar."""

from __future__ import annotations

from dialsum_tui.manager.models import Action, Run, RunState
from dialsum_tui.widgets.progress_panel import render_progress


def make_run(**fields) -> Run:
    return Run(id=2, nickname="broken-data", config_path="c.yaml", config_yaml="", action=Action.PIPELINE, **fields)


def test_a_failed_run_shows_kind_stage_message_and_hint() -> None:
    run = make_run(state=RunState.FAILED, stage="train", failed_stage="train", failure_kind="data",
                   failure_message="data-broken/dev.csv: line 73: unclosed quote",
                   failure_hint="run `python -m engine check-data DIR` and fix what it lists")
    text = render_progress(run).plain
    assert "✖ data in train: data-broken/dev.csv: line 73: unclosed quote" in text
    assert "→ run `python -m engine check-data DIR`" in text


def test_a_waiting_run_shows_the_guard_reason() -> None:
    run = make_run(state=RunState.WAITING, reason="pid 4711 (run 12, Llama) holds 14.2 GiB on GPU 0")
    assert "⏸ pid 4711 (run 12, Llama) holds 14.2 GiB on GPU 0" in render_progress(run).plain
