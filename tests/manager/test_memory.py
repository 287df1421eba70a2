"""GPU memory on the admission side (issue 27): the memory key a retry or sweep variant shares, what a
stage is judged by (measured, else predicted, else unknown), the fit against the chosen or largest GPU
with the cheapest fix (at add, at admission, `estimate`, `check`), the sharing arithmetic, the GPU
guard on a shared device, admission with sharing, and the GPU panel's runs per device. The GPUs are
scripted (no NVML here); the model shapes are the real config.json files in tests/fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dialsum_tui.cli import main
from dialsum_tui.manager.guards.checks import GpuGuard
from dialsum_tui.manager.guards.gpu import MIB, GpuDevice, GpuProcess, NoGpuSource, ScriptedGpuSource
from dialsum_tui.manager.guards.memory import (
    MEASURED,
    PREDICTED,
    SAME_DEVICE_REASON,
    Need,
    Resident,
    SharePlan,
    completed_stages,
    device_total,
    measured_peaks,
    memory_key,
    share_problem,
    snapshot_key,
    stage_need,
)
from dialsum_tui.manager.guards.preflight import estimate
from dialsum_tui.manager.runs.models import Action, Run, RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.snapshot import BoardSnapshot
from dialsum_tui.manager.worker.admission import Blocked, Launch, Wait, decide
from dialsum_tui.manager.workspace.layout import Workspace
from dialsum_tui.manager.workspace.settings import Settings
from engine.config import ConfigError, load_config
from engine.units import GIB

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "model_configs"
KOBART, LLAMA = MODELS / "kobart", MODELS / "llama-3.2-korean-3b"


def gpu(index: int = 0, total_gib: float = 80.0, *procs: GpuProcess, name: str = "H100") -> GpuDevice:
    return GpuDevice(index, name, 480 * MIB + sum(p.used_bytes for p in procs), int(total_gib * GIB), 0, 30, procs)


def write_shipped(ws: Workspace, shipped: str, nickname: str, model: Path, **dotted: Any) -> Path:
    """One of configs/*.yaml with its model pointed at a fixture's config.json, written into the workspace."""
    tree = yaml.safe_load((REPO / "configs" / shipped).read_text(encoding="utf-8"))
    tree["model"].update(name_or_path=str(model), nickname=nickname)
    tree["data"] = {**tree.get("data", {}), "dir": "data"}
    tree.pop("paths", None)
    for key, value in dotted.items():
        section, name = key.split(".")
        tree.setdefault(section, {})[name] = value
    path = ws.configs_dir / f"{nickname}.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def run_of(cfg_path: Path, run_id: int, state: RunState = RunState.SUCCEEDED, gpus: str | None = None,
           **fields: Any) -> Run:
    yaml_text = load_config(cfg_path).to_yaml()
    return Run(run_id, "m", str(cfg_path), yaml_text, Action.PIPELINE, state, gpus=gpus, **fields)


# --- the memory key -------------------------------------------------------------------------------


def test_a_sweep_over_non_memory_keys_shares_the_key_but_a_memory_key_or_the_gpu_count_does_not() -> None:
    base = load_config(REPO / "configs" / "kobart.yaml")
    same = [{"train.learning_rate": 3e-5}, {"train.epochs": 5}, {"model.nickname": "other"},
            {"paths.checkpoints": "elsewhere"}, {"train.seed": 7}, {"generation.length_penalty": 1.0}]
    for overrides in same:
        assert memory_key(load_config(REPO / "configs" / "kobart.yaml", overrides)) == memory_key(base), overrides
    differ = [{"train.batch_size": 8}, {"train.gradient_checkpointing": True}, {"prompt.max_source_length": 256},
              {"generation.num_beams": 2}, {"train.max_steps": 10}, {"data.max_train_samples": 100}]
    for overrides in differ:
        assert memory_key(load_config(REPO / "configs" / "kobart.yaml", overrides)) != memory_key(base), overrides
    assert memory_key(base, gpus=2) != memory_key(base, gpus=1)


# --- what a stage is judged by ----------------------------------------------------------------------


def test_completed_stages_are_the_ones_that_ran_to_their_end(tmp_path: Path) -> None:
    cfg = REPO / "configs" / "kobart.yaml"
    assert completed_stages(run_of(cfg, 1)) == ("train", "infer", "evaluate")
    assert completed_stages(run_of(cfg, 2, RunState.FAILED, stage="infer", failed_stage="infer")) == ("train",)
    assert completed_stages(run_of(cfg, 3, RunState.RUNNING, stage="infer")) == ("train",)
    assert completed_stages(run_of(cfg, 4, RunState.CANCELLED, stage="train")) == ()
    assert completed_stages(run_of(cfg, 5, RunState.QUEUED)) == ()


def test_a_retry_or_variant_uses_the_newest_whole_measured_peak_else_the_prediction(tmp_path: Path) -> None:
    cfg = REPO / "configs" / "kobart.yaml"
    variant = tmp_path / "variant.yaml"  # a sweep variant: another learning rate, same memory key
    variant.write_text((REPO / "configs" / "kobart.yaml").read_text(encoding="utf-8").replace(
        "learning_rate: 1.0e-5", "learning_rate: 3.0e-5"), encoding="utf-8")
    other = tmp_path / "other.yaml"  # a different micro-batch: another key
    other.write_text((REPO / "configs" / "kobart.yaml").read_text(encoding="utf-8").replace(
        "batch_size: 50", "batch_size: 25"), encoding="utf-8")
    runs = [
        run_of(cfg, 1, gpu_peaks={"train": 15.0, "infer": 14.0}),
        run_of(cfg, 2, gpu_peaks={"train": 16.2, "infer": 15.3}),
        # Its train stage failed: a part of a stage is not its peak.
        run_of(cfg, 3, RunState.FAILED, stage="train", failed_stage="train", gpu_peaks={"train": 3.0}),
        run_of(other, 4, gpu_peaks={"train": 9.0}),
    ]
    candidate = run_of(variant, 9, RunState.QUEUED, gpu_predicted={"train": 17.07, "infer": 14.62, "evaluate": 0.0})
    assert stage_need(candidate, "train", runs, snapshot_key) == Need(16.2, MEASURED, 2)
    assert stage_need(candidate, "infer", runs, snapshot_key) == Need(15.3, MEASURED, 2)
    assert stage_need(candidate, "evaluate", runs, snapshot_key) == Need(0.0, PREDICTED)
    on_two = run_of(variant, 10, RunState.QUEUED, gpus="0,1", gpu_predicted={"train": 18.0})
    assert stage_need(on_two, "train", runs, snapshot_key) == Need(18.0, PREDICTED)  # DDP: another key
    unknown = run_of(variant, 11, RunState.QUEUED)  # the model was not on disk at add: nothing stored
    assert stage_need(unknown, "train", [], snapshot_key) == Need(None) and not Need(None).known
    assert measured_peaks(None, runs, snapshot_key) == {}
    assert "16.2 GiB measured (run 2)" == Need(16.2, MEASURED, 2).text


# --- does it fit ------------------------------------------------------------------------------------


def test_the_chosen_gpu_is_judged_else_the_largest_of_the_host() -> None:
    host = [gpu(0, 24.0, name="RTX 3090"), gpu(1, 79.6, name="H100")]
    assert device_total(host, [0]) == (24.0, "GPU 0 (RTX 3090, 24.0 GiB)")
    assert device_total(host, None) == (79.6, "GPU 1, the largest here (H100, 79.6 GiB)")
    assert device_total(host, [0, 1])[0] == 24.0  # DDP: every rank needs the same
    assert device_total([], None) == (None, "no GPU visible")
    assert device_total(host, [3])[0] is None


def test_a_config_too_big_for_the_gpu_gets_the_cheapest_fix_and_one_that_fits_none(workspace: Workspace) -> None:
    cfg = load_config(write_shipped(workspace, "llama-3.2-korean-3b-h100.yaml", "big", LLAMA))
    small = estimate(workspace, cfg, ("train", "infer", "evaluate"), [0], [gpu(0, 24.0, name="RTX 3090")])
    assert small.fits is False and small.too_big == ["train", "infer"]
    assert small.fix is not None and small.fix.changes == {"train.gradient_checkpointing": True,
                                                            "generation.batch_size": 16}
    problem = small.problem()
    assert problem.startswith("train needs 65.0 GiB predicted (activations 55.8")
    assert "GPU 0 (RTX 3090, 24.0 GiB)" in problem and "train.gradient_checkpointing false → true" in problem
    assert "--set train.gradient_checkpointing=true --set generation.batch_size=16" in problem
    body = small.to_json()
    assert body["fits"] is False and body["fix"]["changes"] == small.fix.changes
    assert body["stages"]["train"]["need_source"] == "predicted" and body["stages"]["train"]["fits"] is False
    assert set(body["stages"]["train"]["parts"]) >= {"weights", "activations", "cuda_context"}
    big = estimate(workspace, cfg, ("train", "infer", "evaluate"), None, [gpu(0, 79.6)])
    assert big.fits is True and big.problem() is None and big.fix is None
    # A measured peak of the same config wins: it ran in 20 GiB, so 24 GiB is enough for its train stage.
    measured = estimate(workspace, cfg, ("train",), [0], [gpu(0, 24.0)], {"train": Need(20.0, MEASURED, 4)})
    assert measured.fits is True and measured.to_json()["stages"]["train"]["measured_run"] == 4


def test_no_gpu_or_an_unknown_model_is_said_and_never_refused(workspace: Workspace) -> None:
    cfg = load_config(write_shipped(workspace, "llama-3.2-korean-3b-h100.yaml", "big", LLAMA))
    blind = estimate(workspace, cfg, ("train",), None, [], no_gpu="no GPU visible here: NVML not found")
    assert blind.fits is None and blind.problem() is None and "NVML not found" in blind.note
    assert "fits: unknown (no GPU visible here: NVML not found" in blind.text()
    absent = load_config(write_shipped(workspace, "kobart.yaml", "gone", workspace.root / "models" / "absent"))
    unknown = estimate(workspace, absent, ("train", "infer"), None, [gpu(0, 24.0)])
    assert unknown.fits is None and unknown.problem() is None and unknown.to_json()["known"] is False
    assert unknown.to_json()["stages"]["train"]["predicted_gib"] is None and "model unknown" in unknown.note


def test_add_refuses_what_cannot_fit_with_the_fix_and_stores_the_prediction(workspace: Workspace) -> None:
    manager = Manager.open(workspace)
    manager._gpu = ScriptedGpuSource([[gpu(0, 24.0, name="RTX 3090")]])
    with pytest.raises(ConfigError) as refused:
        manager.add(str(write_shipped(workspace, "llama-3.2-korean-3b-h100.yaml", "big", LLAMA)), gpus="0")
    text = str(refused.value)
    assert "not queued" in text and "  - GPU memory: train needs 65.0 GiB predicted" in text
    assert "cheapest fix: train.gradient_checkpointing false → true" in text
    fits = manager.add(str(write_shipped(workspace, "kobart.yaml", "small", KOBART)), gpus="0")
    assert fits.gpu_predicted == {"train": 17.07, "infer": 14.62, "evaluate": 0.0} and fits.gpu_peaks == {}
    train_only = manager.add(str(write_shipped(workspace, "kobart.yaml", "small2", KOBART)), action="train")
    assert train_only.gpu_predicted == {"train": 17.07}
    manager._gpu = NoGpuSource()  # nothing to check against: said by `estimate`, never refused
    blind = manager.add(str(write_shipped(workspace, "llama-3.2-korean-3b-h100.yaml", "big2", LLAMA)))
    assert blind.state is RunState.QUEUED and blind.gpu_predicted["train"] == pytest.approx(92.97)


def test_estimate_and_check_print_the_prediction(workspace: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    script = tmp_path / "gpu.json"
    script.write_text(json.dumps({"frames": [{"devices": [
        {"index": 0, "name": "RTX 3090", "used_mib": 480, "total_mib": 24576, "processes": []}]}]}), encoding="utf-8")
    monkeypatch.setenv("DIALSUM_FAKE_GPU", str(script))
    big = write_shipped(workspace, "llama-3.2-korean-3b-h100.yaml", "big", LLAMA)
    ws = ["--workspace", str(workspace.root)]
    assert main([*ws, "estimate", str(big), "--gpu", "0", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert {"config", "known", "gpu", "gpu_total_gib", "stages", "fits", "too_big", "fix", "note"} <= set(body)
    assert body["fits"] is False and body["gpu_total_gib"] == 24.0 and body["known"] is True
    assert set(body["stages"]) == {"train", "infer", "evaluate"}
    assert body["stages"]["train"]["predicted_gib"] == pytest.approx(92.97) and body["stages"]["train"]["parts"]
    assert main([*ws, "estimate", str(write_shipped(workspace, "kobart.yaml", "small", KOBART))]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "17.1 GiB predicted (runs in 11.8)" in text and text.rstrip().endswith("fits: yes")
    assert main([*ws, "estimate", str(big), "--gpu", "3", "--json"]) == 2  # no such device
    assert "GPU 3 not on this host" in json.loads(capsys.readouterr().out)["error"]

    manager = Manager.open(workspace)
    manager.pause()
    queued = manager.add(str(big), check=False)  # queued past the preflight: admission will refuse it
    code = main([*ws, "check", "--json"])
    memory = json.loads(capsys.readouterr().out)["memory"]
    assert [(m["id"], m["fits"]) for m in memory] == [(queued.id, False)]
    assert "cheapest fix" in memory[0]["problem"] and memory[0]["estimate"]["too_big"] == ["train", "infer"]
    main([*ws, "check"])
    assert f"predicted not to fit: run {queued.id} (big): train needs" in capsys.readouterr().out
    assert code in (0, 1)  # the worker is down here; the memory line alone never makes check fail
    manager.stop_worker()


# --- sharing ------------------------------------------------------------------------------------------


def plan(need: float | None, *residents: Resident, margin: float = 2.0) -> SharePlan:
    return SharePlan(Need(need, PREDICTED if need is not None else "unknown"), residents, margin)


def test_sharing_counts_each_resident_at_its_expected_peak_and_keeps_the_margin() -> None:
    a = Resident(1, "a", [0], Need(17.0, PREDICTED))
    share = plan(17.0, a)
    on = share.on_device(0)
    total, idle = int(80 * GIB), 480 * MIB
    # a holds 5 GiB now but will reach 17: 80 - 0.47 - 17 - 2 = 60.5 left, enough for 17.
    assert share_problem(0, total, idle + 5 * GIB, {1: 5 * GIB}, share, on) is None
    # On a 36 GiB card: 36 - 0.47 - 17 - 2 = 16.5 < 17.
    tight = share_problem(0, int(36 * GIB), idle + 5 * GIB, {1: 5 * GIB}, share, on)
    assert tight.startswith(SAME_DEVICE_REASON) and "16.5 GiB left beside run 1 (a, 17.0 GiB predicted)" in tight
    # A resident above its expectation counts at what it holds.
    assert share_problem(0, int(40 * GIB), idle + 21 * GIB, {1: 21 * GIB}, share, on) is not None
    unknown = share_problem(0, total, idle, {}, plan(None, a), on)
    assert "this stage's" in unknown and "unknown" in unknown
    alone = Resident(1, "a", [0], Need(17.0, PREDICTED), exclusive=True)
    assert "runs alone" in share_problem(0, total, idle, {}, plan(3.0, alone), {1: alone})
    assert plan(1.0, Resident(2, "b", None, Need(1.0))).on_device(5)  # no device named: on every one


def test_the_gpu_guard_shares_a_device_that_holds_only_our_residents(sleeper) -> None:
    ours = GpuProcess(sleeper.pid, 0, 5 * 1024 * MIB)
    owners = {sleeper.pid: (1, "a")}
    resident = Resident(1, "a", [0], Need(17.0, PREDICTED))
    guard = GpuGuard(ScriptedGpuSource([[gpu(0, 80.0, ours)]]), Settings(gpu_samples=1, gpu_grace_s=0))
    assert guard.check([0], owners).ok is False  # sharing off: any holder blocks
    assert guard.check([0], owners, share=plan(17.0, resident)).ok is True
    # Just after a launch the GPU is not judged free, but a shared one counts that stage at its peak already.
    graced = GpuGuard(ScriptedGpuSource([[gpu(0, 80.0, ours)]]), Settings(gpu_samples=1, gpu_grace_s=60))
    graced.note_launch([0])
    assert graced.check([0], owners, share=plan(17.0, resident)).ok is True
    tight = GpuGuard(ScriptedGpuSource([[gpu(0, 30.0, ours)]]), Settings(gpu_samples=1, gpu_grace_s=0))
    verdict = tight.check([0], owners, share=plan(17.0, resident))
    assert not verdict.ok and verdict.queueing and verdict.reason.startswith(SAME_DEVICE_REASON)
    foreign = GpuProcess(999_999, 0, 2 * 1024 * MIB, "python", "kim")
    mixed = GpuGuard(ScriptedGpuSource([[gpu(0, 80.0, ours, foreign)]]), Settings(gpu_samples=1, gpu_grace_s=0))
    blocked = mixed.check([0], owners, share=plan(3.0, resident))
    assert not blocked.ok and not blocked.queueing and "pid 999999" in blocked.reason and "ask kim" in blocked.reason
    # One of ours that is not running (a finished run's leftover) still blocks: it must be killed, not shared.
    left = GpuGuard(ScriptedGpuSource([[gpu(0, 80.0, ours)]]), Settings(gpu_samples=1, gpu_grace_s=0))
    assert not left.check([0], owners, share=plan(3.0, Resident(7, "other", [0], Need(1.0, PREDICTED)))).ok


def test_admission_lets_a_sharing_run_past_a_busy_device_to_the_gpu_guard() -> None:
    running = Run(1, "a", "a.yaml", "", Action.TRAIN, RunState.RUNNING, stage="train", gpus="0", pid=4242)
    queued = Run(2, "b", "b.yaml", "", Action.TRAIN, RunState.QUEUED, gpus="0")
    asked: list[int] = []

    def guards(run: Run, stage: str) -> Blocked | None:
        asked.append(run.id)
        return None

    [wait] = decide([running, queued], {1}, False, guards)
    assert isinstance(wait, Wait) and wait.reason == SAME_DEVICE_REASON and asked == []
    [launch] = decide([running, queued], {1}, False, guards, shares=lambda run: True)
    assert isinstance(launch, Launch) and asked == [2]
    no_room = lambda run, stage: Blocked([0], f"{SAME_DEVICE_REASON}: GPU 0 has 3.0 GiB left", queueing=True)  # noqa: E731
    [held] = decide([running, queued], {1}, False, no_room, shares=lambda run: True)
    assert isinstance(held, Wait) and held.by_guard is False  # queueing, not a guard holding it: no ping, no exit 1
    [alone] = decide([running, queued], {1}, False, guards, shares=lambda run: False)  # fell back to exclusive
    assert isinstance(alone, Wait) and alone.reason == SAME_DEVICE_REASON


def test_the_board_lists_every_run_on_each_gpu() -> None:
    a = Run(1, "a", "a.yaml", "", Action.PIPELINE, RunState.RUNNING, stage="train", gpus="0", pid=11,
            gpu_predicted={"train": 17.07}, gpu_peaks={"train": 9.5})
    b = Run(2, "b", "b.yaml", "", Action.PIPELINE, RunState.RUNNING, stage="infer", gpus="0", pid=12)
    c = Run(3, "c", "c.yaml", "", Action.TRAIN, RunState.RUNNING, stage="train", pid=13)  # no --gpu: where it is
    d = Run(4, "d", "d.yaml", "", Action.TRAIN, RunState.QUEUED, gpus="1")
    devices = (gpu(0, 80.0, GpuProcess(11, 0, 9 * 1024 * MIB)), gpu(1, 80.0, GpuProcess(13, 1, 1024 * MIB)))
    board = BoardSnapshot(runs=(a, b, c, d), paused=False, worker_pid=1, gpus=devices, gpu_note="",
                          disk=None, owners={11: (1, "a"), 13: (3, "c")})
    on = board.device_runs
    assert [(r.run_id, r.stage, r.used_bytes) for r in on[0]] == [(1, "train", 9 * 1024 * MIB), (2, "infer", 0)]
    assert (on[0][0].predicted_gib, on[0][0].measured_gib) == (17.07, 9.5)
    assert [r.run_id for r in on[1]] == [3]


def test_a_retry_of_a_measured_config_is_judged_by_its_peaks_and_a_changed_one_by_the_prediction(
        workspace: Workspace) -> None:
    manager = Manager.open(workspace)
    manager._gpu = ScriptedGpuSource([[gpu(0, 24.0, name="RTX 3090")]])
    big = write_shipped(workspace, "llama-3.2-korean-3b-h100.yaml", "big", LLAMA)
    ran = manager.add(str(big), check=False)  # predicted 65 GiB to train: refused at add on this card
    manager.store.transition(ran.id, RunState.RUNNING, stage="evaluate")
    manager.store.transition(ran.id, RunState.SUCCEEDED, gpu_peaks={"train": 21.0, "infer": 19.5})
    again = manager.retry(ran.id)  # it ran in 21 GiB (shorter data than the maxima the prediction assumes)
    assert again.state is RunState.QUEUED
    plan = manager.plan_retry(ran.id, overrides=["train.learning_rate=3e-5"])  # a sweep variant: same key
    assert manager.retry(ran.id, plan=plan).state is RunState.QUEUED
    plan = manager.plan_retry(ran.id, overrides=["train.batch_size=32"])  # another key: the prediction judges
    with pytest.raises(ConfigError, match="GPU memory: train needs"):
        manager.retry(ran.id, plan=plan)
