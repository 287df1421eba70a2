"""Compare and samples on runs made by the tiny BART through the real engine CLI: one training, then
two inferences that differ only in generation settings (the seed team's 36.1 → 47.5 story), scored
by ``engine evaluate``; the screens are driven with Pilot."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from textual.widgets import DataTable

from dialsum_tui.app import make_app
from dialsum_tui.manager.insights.compare import compare_runs
from dialsum_tui.manager.insights.samples import load_samples
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.screens.compare import CompareScreen
from dialsum_tui.screens.samples import SamplesScreen
from dialsum_tui.widgets.queue_table import QueueTable
from engine.artifacts import dev_predictions_path, final_model_dir
from engine.contract import DEV_CSV, RunFiles

from support import engine_cli
from tui_support import scripted_gpu, wait_for


def _config(model_dir, nickname: str, **generation) -> dict:
    return {
        "model": {"name_or_path": str(model_dir), "nickname": nickname, "kind": "seq2seq"},
        "data": {"dir": "data", "max_eval_samples": 8},
        "prompt": {"max_source_length": 256, "max_target_length": 64},
        "train": {"device": "cpu", "epochs": 1, "max_steps": 16, "learning_rate": 1e-3, "batch_size": 16,
                  "eval_strategy": "steps", "eval_steps": 8, "save_strategy": "no", "logging_steps": 4},
        "generation": {"batch_size": 16, "num_beams": 1, "max_new_tokens": 32, **generation},
    }


def _stage(ws, run_id: int, *args: str) -> None:
    files = RunFiles(ws.run_dir(run_id))
    done = engine_cli(*args, "--run-dir", str(files.root), cwd=ws.root)
    assert done.returncode == 0, done.stderr[-3000:]


def _run(manager, cfg: dict, stages: list[str]) -> int:
    ws = manager.workspace
    path = ws.configs_dir / f"{cfg['model']['nickname']}.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    run = manager.add(str(path), action="pipeline" if "train" in stages else "infer")
    config = str(RunFiles(ws.run_dir(run.id)).config)
    for stage in stages:
        if stage == "evaluate":
            predictions = dev_predictions_path(ws.submissions_dir, cfg["model"]["nickname"])
            _stage(ws, run.id, "evaluate", "--predictions", str(predictions), "--references", str(ws.data_dir / DEV_CSV),
                   "--json")
        else:
            _stage(ws, run.id, stage, "--config", config)
    manager.store.transition(run.id, RunState.RUNNING, stage="evaluate")
    manager.store.transition(run.id, RunState.SUCCEEDED, exit_code=0)
    return run.id


async def test_compare_and_samples_on_tiny_bart_runs(workspace, manager, synth_data_dir, tiny_bart_dir) -> None:
    shutil.copytree(synth_data_dir, workspace.data_dir, dirs_exist_ok=True)
    greedy = _run(manager, _config(tiny_bart_dir, "tiny-bart-greedy-탐욕"), ["train", "infer", "evaluate"])
    # Same weights, other generation settings: only generation.* may differ in the comparison.
    shutil.copytree(final_model_dir(workspace.checkpoints_dir, "tiny-bart-greedy-탐욕"),
                    final_model_dir(workspace.checkpoints_dir, "tiny-bart-beam-빔"))
    beam = _run(manager, _config(tiny_bart_dir, "tiny-bart-beam-빔", num_beams=3, no_repeat_ngram_size=2),
                ["infer", "evaluate"])

    comparison = compare_runs(workspace, [manager.get(greedy), manager.get(beam)])
    assert {row.key for row in comparison.config_diff} == {"generation.num_beams", "generation.no_repeat_ngram_size"}
    assert len(comparison.curves[0].loss) >= 3 and [len(c.rouge) for c in comparison.curves] == [2, 0]
    sample_set = load_samples(workspace, manager.get(greedy), manager.get(beam))
    finals = [m["final"] for m in comparison.metrics]
    assert sample_set.means() == pytest.approx(finals, abs=1e-9)
    assert json.loads(json.dumps(comparison.to_json()))["metrics"][1]["n"] == len(sample_set.samples)

    app = make_app(workspace, gpu_source=scripted_gpu(), manager=manager, poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.main.query_one(QueueTable).row_count == 2, what="both runs")
        await pilot.press("home", "m", "down", "m", "c")  # from the first run (the queue opens on the latest)
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), what="the compare screen")
        assert app.screen.query_one("#compare-metrics", DataTable).row_count == 2
        await pilot.press("escape", "up", "s")
        await wait_for(pilot, lambda: isinstance(app.screen, SamplesScreen), what="the samples screen")
        assert app.screen.query_one("#samples-list", DataTable).row_count == len(sample_set.samples)
