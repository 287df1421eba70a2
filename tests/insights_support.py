"""Provides two finished runs as real files for the compare / samples / leaderboard tests: config
snapshots queued through the Manager, events written with ``EventWriter``, dev predictions and
submissions in ``submissions/``, and a dev ROUGE scored by the real metric.

Run A (``koBART-요약``) is plain; run B (``라마-3B-요약``) differs in generation and learning rate,
and its outputs show each failure the filters look for: an empty output, foreign words, a long one.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from dialsum_tui.manager.runs.identity import run_key
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from engine.artifacts import EventWriter, artifact_key, dev_predictions_path, submission_path
from engine.contract import DEV_CSV, TEST_CSV, RunFiles
from engine.evaluate import score_files

from support import write_config

FIXTURES = Path(__file__).parent / "fixtures" / "insights"
NICK_A, NICK_B = "koBART-요약", "라마-3B-요약"


@dataclass
class InsightRuns:
    a: int
    b: int
    dev_csv: Path
    predictions_a: Path
    predictions_b: Path


def _finish(manager: Manager, nick: str, sections: dict, tag: str, losses: list[float], evals: list[float],
            eval_tokenizer: str = "mecab") -> int:
    ws = manager.workspace
    run = manager.add(str(write_config(ws, nick, **sections)))
    predictions = dev_predictions_path(ws.submissions_dir, run_key(run))  # files are keyed by run
    submission = submission_path(ws.submissions_dir, run_key(run))
    shutil.copyfile(FIXTURES / f"predictions_{tag}.csv", predictions)
    shutil.copyfile(FIXTURES / f"submission_{tag}.csv", submission)
    scores = score_files(predictions, ws.data_dir / DEV_CSV, tokenizer=eval_tokenizer).to_dict()
    events = RunFiles(ws.run_dir(run.id)).events
    with EventWriter(events, command="train") as ev:
        ev.emit("started", nickname=nick, model="models/tiny", config_hash="0", device="cpu", dtype="float32", pid=1)
        for step, loss in enumerate(losses, start=1):
            ev.emit("train_log", step=step * 10, epoch=step / len(losses), loss=loss, lr=1e-4)
        for n, final in enumerate(evals, start=1):
            ev.emit("eval", step=n * 10 * len(losses) // len(evals), epoch=float(n), rouge1=final / 100,
                    rouge2=final / 100, rougeL=final / 100, final=final, tokenizer="mecab", scorer="competition",
                    n=6, split="dev")
        ev.emit("finished", seconds=12.0)
    with EventWriter(events, command="infer") as ev:
        ev.emit("artifact", kind="submission", path=str(submission), bytes=submission.stat().st_size)
        ev.emit("artifact", kind="dev_predictions", path=str(predictions), bytes=predictions.stat().st_size)
        ev.emit("finished", seconds=3.0)
    with EventWriter(events, command="evaluate") as ev:
        fields = {k: v for k, v in scores.items() if k not in ("refs_per_item", "empty_predictions")}
        ev.emit("eval", **fields, split="dev")
        ev.emit("finished", seconds=1.0)
    manager.store.transition(run.id, RunState.RUNNING, stage="evaluate", pid=None)
    manager.store.transition(run.id, RunState.SUCCEEDED, exit_code=0)
    return run.id


def make_insight_runs(manager: Manager) -> InsightRuns:
    """Copy the fixture data into the workspace and record the two finished runs."""
    ws = manager.workspace
    for name in (DEV_CSV, TEST_CSV):
        shutil.copyfile(FIXTURES / name, ws.data_dir / name)
    a = _finish(manager, NICK_A, {}, "a", [2.4, 1.9, 1.5, 1.2, 1.05, 0.98], [31.0, 38.5])
    b = _finish(manager, NICK_B, {"generation": {"num_beams": 1, "no_repeat_ngram_size": 3},
                                  "train": {"device": "cpu", "learning_rate": 1e-4}},
                "b", [2.8, 2.0, 1.4, 1.0, 0.8, 0.7], [28.0, 35.0, 41.0])
    return InsightRuns(a, b, ws.data_dir / DEV_CSV, dev_predictions_path(ws.submissions_dir, artifact_key(NICK_A, a)),
                       dev_predictions_path(ws.submissions_dir, artifact_key(NICK_B, b)))
