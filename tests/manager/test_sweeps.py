"""Sweeps and failure streaks as pure functions: a config expanded into variants (grid, seeds, a sweep
file) validated like ``--set`` and named readably; a sweep's best on one scoring basis; the streak of
early failures that pauses only the runs sharing its cause; admission's priority order and hold.

No worker and no database: configs are real files, runs are records (test_sweeps_queue.py drives the
worker; test_sweeps_cli.py the command line).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dialsum_tui.manager.errors import exit_code_of
from dialsum_tui.manager.runs.models import Action, Run, RunState
from dialsum_tui.manager.runs.streaks import RunScope, failure_streak, holding, run_scope
from dialsum_tui.manager.runs.sweeps import (
    MAX_VARIANTS,
    Sweep,
    SweepError,
    plan_sweep,
    split_values,
    sweep_best,
    sweep_id,
    sweep_status,
)
from dialsum_tui.manager.worker.admission import Launch, Wait, decide
from engine.artifacts import NICKNAME_MAX_CHARS
from engine.contract import ExitCode, Stage

Q, W, R, S, F, C = (RunState.QUEUED, RunState.WAITING, RunState.RUNNING, RunState.SUCCEEDED, RunState.FAILED,
                    RunState.CANCELLED)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "kobart.yaml"
    path.write_text(yaml.safe_dump({"model": {"name_or_path": "models/tiny", "nickname": "kobart", "kind": "seq2seq"},
                                    "train": {"device": "cpu", "seed": 7}}), encoding="utf-8")
    return path


def test_a_grid_of_two_axes_is_four_variants_named_by_their_values(config: Path) -> None:
    plan = plan_sweep(config, ["train.learning_rate=1e-4,2e-4", "lora.r=8,16"])
    assert plan.keys == ("train.learning_rate", "lora.r")
    assert [v.nickname for v in plan.variants] == ["kobart-lr1e-4-r8", "kobart-lr1e-4-r16", "kobart-lr2e-4-r8",
                                                   "kobart-lr2e-4-r16"]
    first = plan.variants[0]
    # Validated exactly like --set: the YAML string "1e-4" is the float the snapshot holds.
    assert first.values == {"train.learning_rate": 0.0001, "lora.r": 8}
    assert first.config.train.learning_rate == 0.0001 and first.config.model.nickname == "kobart-lr1e-4-r8"
    assert first.label == "lr=1e-4 r=8"
    assert plan.record().variants["kobart-lr2e-4-r16"] == {"train.learning_rate": 0.0002, "lora.r": 16}


def test_seeds_count_up_from_the_configs_own_seed_and_set_applies_to_every_variant(config: Path) -> None:
    plan = plan_sweep(config, seeds=3, overrides=["train.max_steps=5"])
    assert [v.nickname for v in plan.variants] == ["kobart-seed7", "kobart-seed8", "kobart-seed9"]
    assert [v.config.train.seed for v in plan.variants] == [7, 8, 9]
    assert {v.config.train.max_steps for v in plan.variants} == {5} and plan.keys == ("train.seed",)


def test_a_sweep_file_lists_override_sets_dotted_or_nested_and_may_name_them(config: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("- {train.learning_rate: 1.0e-4, lora.r: 8}\n"
                    "- train: {learning_rate: 3.0e-4}\n  lora: {r: 32}\n  name: wide\n", encoding="utf-8")
    plan = plan_sweep(config, sweep_file=grid, seeds=2)
    assert [v.nickname for v in plan.variants] == ["kobart-lr1e-4-r8-seed7", "kobart-lr1e-4-r8-seed8",
                                                   "kobart-wide", "kobart-wide-v4"]
    assert plan.variants[2].config.lora.r == 32 and plan.variants[3].config.train.seed == 8


def test_one_bad_value_refuses_the_whole_sweep_naming_the_variant_and_the_key(config: Path) -> None:
    with pytest.raises(SweepError) as err:
        plan_sweep(config, ["train.learning_rate=1e-4,-1", "lora.r=8,16"])
    message = str(err.value)
    assert "sweep not queued: variant kobart-lr-1-r8" in message and "train.learning_rate=-1" in message
    assert "train.learning_rate: Input should be greater than 0" in message
    assert exit_code_of(err.value) is ExitCode.BAD_INPUT
    with pytest.raises(SweepError, match="unknown key 'train.learning_rte'"):
        plan_sweep(config, ["train.learning_rte=1e-4,2e-4"])


@pytest.mark.parametrize(("axes", "kwargs", "says"), [
    (["train.learning_rate=1e-4,0.0001"], {}, "are the same config"),
    (["lora.r=8,8"], {}, "8 is given twice"),
    (["lora.r=8,16", "lora.r=32,64"], {}, "lora.r: the key is swept twice"),
    (["lora.r=8,16"], {"overrides": ["lora.r=4"]}, "lora.r is both --set and swept"),
    (["model.nickname=a,b"], {}, "model.nickname cannot be swept"),
    (["train.seed=1,2"], {"seeds": 2}, "--seeds and a swept train.seed contradict"),
    (["lora.r=8"], {}, "a sweep needs at least 2"),
    (["lora.r"], {}, "expected KEY=V1,V2"),
    ([], {"seeds": MAX_VARIANTS + 1}, f"at most {MAX_VARIANTS} are queued"),
])
def test_sweeps_that_cannot_be_queued_say_why(config: Path, axes: list[str], kwargs: dict, says: str) -> None:
    with pytest.raises(SweepError, match=says):
        plan_sweep(config, axes, **kwargs)


def test_list_values_keep_their_commas_and_long_names_stay_under_the_limit(config: Path, tmp_path: Path) -> None:
    assert split_values("[q_proj,v_proj],all-linear, 'a,b'") == ["[q_proj,v_proj]", "all-linear", "'a,b'"]
    plan = plan_sweep(config, ["lora.target_modules=[q_proj,v_proj],all-linear"])
    assert plan.variants[0].config.lora.target_modules == ["q_proj", "v_proj"]
    long = tmp_path / "long.yaml"
    tree = yaml.safe_load(config.read_text(encoding="utf-8"))
    tree["model"]["nickname"] = "라마-" + "x" * 58
    long.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    names = [v.nickname for v in plan_sweep(long, ["train.learning_rate=1e-4,2e-4"]).variants]
    assert all(len(n) <= NICKNAME_MAX_CHARS for n in names) and names[0].endswith("-lr1e-4") and len(set(names)) == 2


def test_sweep_ids_read_with_or_without_the_s() -> None:
    assert sweep_id("s12") == sweep_id("12") == sweep_id(12) == "s12"
    with pytest.raises(SweepError, match="looks like s12"):
        sweep_id("lr")


def _run(id_: int, state: RunState = Q, **fields) -> Run:
    base = dict(id=id_, nickname=f"n{id_}", config_path="c.yaml", config_yaml="", action=Action.PIPELINE, state=state)
    return Run(**(base | fields))


def _scored(id_: int, final: float, tokenizer: str = "mecab", n: int = 499, stage: str = Stage.EVALUATE) -> Run:
    return _run(id_, S, metrics={"final": final, "tokenizer": tokenizer, "scorer": "competition", "n": n,
                                 "stage": stage})


def test_the_best_is_ranked_on_one_basis_and_the_others_are_named_not_compared() -> None:
    runs = [_scored(1, 40.0), _scored(2, 47.5), _scored(3, 90.0, tokenizer="char"), _scored(4, 60.0, stage="train"),
            _run(5, F)]
    best = sweep_best(runs)
    assert best is not None and (best.run_id, best.final, best.ranked, best.unranked) == (2, 47.5, 2, (3,))
    assert best.text == "n2 (run 2) 47.50 mecab/competition, n=499; 1 scored another way not ranked"
    assert sweep_best([_run(1, S), _scored(2, 50.0, stage="train")]) is None  # no evaluate stage: no best


def test_a_sweeps_progress_counts_its_latest_run_per_variant() -> None:
    sweep = Sweep("s1", "c.yaml", "k", ("lora.r",), {"k-r8": {"lora.r": 8}, "k-r16": {"lora.r": 16}})
    runs = [_run(1, F, nickname="k-r8", sweep="s1"), _run(2, S, nickname="k-r16", sweep="s1"),
            _run(3, R, nickname="k-r8", sweep="s1"), _run(4, S, nickname="other")]
    status = sweep_status(sweep, runs)
    assert [r.id for r in status.runs] == [3, 2] and status.members == (1, 2, 3)
    assert (status.progress_text, status.state, status.ended) == ("1/2 done", "running", False)
    runs[2] = _run(3, F, nickname="k-r8", sweep="s1")
    assert sweep_status(sweep, runs).progress_text == "2/2 done, 1 failed"


# --- failure streaks ---------------------------------------------------------------------------------

ROOT = Path("/ws")
DATA = str(ROOT / "data")


def _scope(run: Run) -> RunScope:
    return RunScope(run.config_path, "models/tiny", tuple(int(g) for g in run.gpus.split(",")) if run.gpus else None)


def _failed(id_: int, kind: str = "data", data: str = DATA, after_s: float = 20.0, gpus: str | None = None,
            at: float | None = None) -> Run:
    finished = at if at is not None else 1000.0 + id_
    return _run(id_, F, failure_kind=kind, config_path=data, gpus=gpus, started_at=finished - after_s,
                finished_at=finished, failure_hint="fix the row")


def test_three_early_data_failures_in_a_row_pause_that_data_dir() -> None:
    runs = [_failed(1), _failed(2), _failed(3)]
    pause = failure_streak(runs, runs[-1], 3, 600, _scope)
    assert pause is not None and pause.runs == (1, 2, 3) and pause.scope == {"data": DATA}
    assert pause.reason.startswith("held: 3 runs on data dir /ws/data failed in a row (data)")
    assert "`dialsum-tui resume`" in pause.message and "fix the row" in pause.message
    assert failure_streak(runs[:2], runs[1], 3, 600, _scope) is None  # two are not three
    assert failure_streak(runs, runs[-1], 0, 600, _scope) is None  # 0 turns it off


def test_independent_runs_neither_break_the_streak_nor_are_held() -> None:
    other = "/ws/data-b"
    runs = [_failed(1), _run(2, S, config_path=other, started_at=1000, finished_at=1002.5), _failed(3), _failed(4)]
    pause = failure_streak(runs, runs[-1], 3, 600, _scope)
    assert pause is not None and pause.runs == (1, 3, 4)
    hold = holding([pause], _scope)
    assert hold is not None and hold(_run(5, config_path=DATA)) == pause.reason
    assert hold(_run(6, config_path=other)) is None  # another data dir goes on
    assert holding([], _scope) is None


@pytest.mark.parametrize("between", [
    _run(2, S, config_path=DATA, started_at=1000, finished_at=1002.5),  # a success on the same data dir
    _failed(2, kind="oom"),  # another kind of reason
    _failed(2, after_s=3600),  # a failure after its first minutes
])
def test_a_related_run_that_is_no_early_failure_of_the_kind_breaks_the_streak(between: Run) -> None:
    runs = [_failed(1), between, _failed(3), _failed(4)]
    assert failure_streak(runs, runs[-1], 3, 600, _scope) is None


def test_cancelled_runs_and_failures_before_the_last_resume_do_not_count() -> None:
    runs = [_failed(1), _run(2, C, config_path=DATA, finished_at=1002.5), _failed(3), _failed(4)]
    assert failure_streak(runs, runs[-1], 3, 600, _scope) is not None
    assert failure_streak(runs, runs[-1], 3, 600, _scope, since=1002.0) is None


def test_an_oom_streak_holds_runs_on_those_gpus_and_a_disk_streak_holds_everything() -> None:
    ooms = [_failed(i, kind="oom", gpus="0") for i in (1, 2)]
    pause = failure_streak(ooms, ooms[-1], 2, 600, _scope)
    assert pause is not None and pause.scope == {"gpus": [0]} and pause.where == "GPU 0"
    assert pause.holds(_scope(_run(3, gpus="0,1"))) and not pause.holds(_scope(_run(4, gpus="1")))
    assert pause.holds(_scope(_run(5)))  # no device named: it may take GPU 0
    disks = [_failed(i, kind="disk", data=f"/ws/d{i}") for i in (1, 2)]
    full = failure_streak(disks, disks[-1], 2, 600, _scope)
    assert full is not None and full.where == "every run" and full.holds(_scope(_run(6, config_path="/x")))


def test_a_run_failed_before_it_started_counts_as_early_and_the_scope_comes_from_the_snapshot() -> None:
    never_started = _run(1, F, failure_kind="data", config_path=DATA, finished_at=50.0)
    runs = [never_started, _failed(2)]
    assert failure_streak(runs, runs[-1], 2, 600, _scope) is not None
    snapshot = yaml.safe_dump({"model": {"name_or_path": "models/x"}, "data": {"dir": "data-b"}})
    scope = run_scope(_run(3, config_yaml=snapshot, gpus="1"), ROOT)
    assert scope == RunScope("/ws/data-b", "models/x", (1,))


# --- admission -----------------------------------------------------------------------------------------


def test_priority_jumps_the_waiting_queue_but_never_a_running_run_and_a_hold_skips_only_its_runs() -> None:
    runs = [_run(1, R, stage="train", pid=11, gpus="0"), _run(2, gpus="1"), _run(3, gpus="1", priority=1),
            _run(4, W, gpus="1", priority=-1)]
    decisions = decide(runs, [1], False, lambda run, stage: None)
    assert isinstance(decisions[-1], Launch) and decisions[-1].run.id == 3  # high first; run 1 goes on
    held = decide(runs, [1], False, lambda run, stage: None, hold=lambda run: "held: x" if run.id == 3 else None)
    assert [(type(d), d.run.id) for d in held] == [(Wait, 3), (Launch, 2)]
