"""Tests of engine/footprint.py and engine/model_dims.py: the predicted GPU memory per stage against
the peaks measured on an H100 (docs/benchmarks.md; the table and the fit are in docs/memory.md),
unknown models, the cheapest fix, the JSON shape, and that the module stays torch-free."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.config import load_config
from engine.footprint import (
    IDLE_BASELINE_GIB,
    STAGES,
    Lengths,
    cheapest_fix,
    lora_parameters,
    predict,
)
from engine.model_dims import find_model_config, load_model_dims

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "fixtures" / "model_configs"
H100_GIB = 81559 / 1024  # NVML's total of an H100 80GB HBM3
LLAMA, QWEN, KOBART, KOT5 = (str(MODELS / name) for name in ("llama-3.2-korean-3b", "qwen3-4b", "kobart", "pko-t5-base"))
H100_CONFIG = ROOT / "configs" / "llama-3.2-korean-3b-h100.yaml"
NO_EVAL = {"train.eval_strategy": "no", "train.save_strategy": "no", "train.early_stopping_patience": None}
# benchmarks/train_levers.py's eager variant: train_throughput's CAUSAL_BASE (topic never, all-linear)
# with the shipped H100 shape (bs 16, no checkpointing, Liger, LoRA dropout 0), one micro-batch per step.
LEVERS_EAGER = {**NO_EVAL, "model.name_or_path": LLAMA, "prompt.topic": "never", "lora.target_modules": "all-linear",
                "train.batch_size": 16, "train.grad_accum": 1, "train.compile": False,
                "train.pad_to_multiple_of": None, "train.fused_lora": False}
# The longest training sample of the benchmarks' data (engine synth --profile competition --train 4000
# --seed 7, the 800-entry BPE of benchmarks/common.py): a 938-token prompt and a 159-token summary, which
# length-grouped batching puts in the first batch. docs/memory.md says how these were measured.
BENCH_4000 = Lengths(source=938, target=159)


@dataclass(frozen=True)
class Case:
    """One measured peak and the config it was measured with."""

    name: str
    config: Path
    overrides: dict[str, Any]
    stage: str
    measured_gib: float
    nvml_total: bool  # benchmarks/pipeline.py reports NVML's total (the idle baseline included)
    lengths: Lengths = field(default_factory=Lengths)


CALIBRATION = [
    # train_levers.py `levers2` eager (and multi_gpu.py's 1-GPU row): 55.5 GiB above the idle baseline.
    Case("3B LoRA bf16 bs 16, no checkpointing", H100_CONFIG, LEVERS_EAGER, "train", 55.5, False, BENCH_4000),
    # The same with the shipped compile + fused LoRA (lengths padded to 64-token buckets): 58.2.
    Case("3B LoRA bf16 bs 16, compiled + fused", H100_CONFIG,
         {**LEVERS_EAGER, "train.compile": True, "train.pad_to_multiple_of": 64, "train.fused_lora": True},
         "train", 58.2, False, BENCH_4000),
    # multi_gpu.py --qlora --batch 8 --ckpt (job qlora2), 1 GPU: 9.3.
    Case("3B QLoRA nf4 bs 8, checkpointing", H100_CONFIG,
         {**NO_EVAL, "model.name_or_path": LLAMA, "quantization.load_in_4bit": True, "train.batch_size": 8,
          "train.grad_accum": 1, "train.gradient_checkpointing": True, "train.compile": False,
          "train.pad_to_multiple_of": None, "train.fused_lora": False},
         "train", 9.3, False, BENCH_4000),
    # multi_gpu.py --shape qwen3-4b --batch 8 (job qwen2): the shipped H100 LoRA recipe on Qwen3-4B: 47.0.
    Case("Qwen3-4B LoRA bf16 bs 8, no checkpointing", ROOT / "configs" / "qwen3-4b.yaml",
         {**NO_EVAL, "model.name_or_path": QWEN, "model.attn_implementation": "sdpa",
          "quantization.load_in_4bit": False, "lora.dropout": 0.0, "train.batch_size": 8, "train.grad_accum": 1,
          "train.gradient_checkpointing": False, "train.use_liger_kernel": True, "train.optim": "adamw_torch_fused"},
         "train", 47.0, False, BENCH_4000),
    # benchmarks/pipeline.py, job pipeline-kobart: configs/kobart.yaml with 3 epochs (in-training
    # evaluation on): 16.2 and 15.3 (NVML totals). KoBART's 512/100 token limits are reached by the data.
    Case("KoBART train (with in-training evaluation)", ROOT / "configs" / "kobart.yaml",
         {"model.name_or_path": KOBART, "train.epochs": 3}, "train", 16.2, True),
    Case("KoBART infer", ROOT / "configs" / "kobart.yaml", {"model.name_or_path": KOBART}, "infer", 15.3, True),
    # benchmarks/pipeline.py, job pipeline: the 3B config's infer (bs 64, beams 4, 150 new tokens),
    # longest prompt of dev/test 901 tokens: 55.7 (NVML total).
    Case("3B infer bs 64, beams 4", H100_CONFIG, {"model.name_or_path": LLAMA}, "infer", 55.7, True,
         Lengths(generation_source=901)),
]
# Measured peaks the factors were NOT fitted to: the same model checked on other settings.
VALIDATION = [
    Case("KoBART train, no evaluation (train_throughput.py)", ROOT / "configs" / "kobart.yaml",
         {**NO_EVAL, "model.name_or_path": KOBART, "train.precision": "bf16", "train.optim": "adamw_torch_fused"},
         "train", 11.7, False),
    Case("3B LoRA bs 32, checkpointing", H100_CONFIG,
         {**LEVERS_EAGER, "train.batch_size": 32, "train.gradient_checkpointing": True}, "train", 19.7, False,
         BENCH_4000),
    Case("3B LoRA bs 8, checkpointing, LoRA dropout 0.05 (24 GB card)", H100_CONFIG,
         {**LEVERS_EAGER, "train.batch_size": 8, "train.gradient_checkpointing": True, "lora.dropout": 0.05},
         "train", 10.6, False, BENCH_4000),
    # pipeline.py's 3B train stage (before compile was shipped), in-training evaluation of dev[:100]
    # (longest prompt 882) beside the training pool; its data's longest sample 944 + 161 tokens.
    Case("3B train with in-training evaluation (pipeline)", H100_CONFIG,
         {"model.name_or_path": LLAMA, "train.compile": False, "train.pad_to_multiple_of": None,
          "train.fused_lora": False}, "train", 72.8, True, Lengths(944, 161, 882)),
]


def predicted_as_measured(case: Case) -> float:
    stage = predict(load_config(case.config, case.overrides), ROOT, lengths=case.lengths).stages[case.stage]
    assert stage.predicted_gib is not None
    return stage.predicted_gib + (IDLE_BASELINE_GIB if case.nvml_total else 0.0)


@pytest.mark.parametrize("case", CALIBRATION, ids=lambda c: c.name)
def test_prediction_is_within_15_percent_of_each_measured_peak(case):
    predicted = predicted_as_measured(case)
    assert abs(predicted - case.measured_gib) <= 0.15 * case.measured_gib, (
        f"{case.name}: predicted {predicted:.2f} GiB, measured {case.measured_gib} GiB")


@pytest.mark.parametrize("case", VALIDATION, ids=lambda c: c.name)
def test_peaks_left_out_of_the_fit_are_predicted_too(case):
    predicted = predicted_as_measured(case)
    assert abs(predicted - case.measured_gib) <= 0.15 * case.measured_gib, (
        f"{case.name}: predicted {predicted:.2f} GiB, measured {case.measured_gib} GiB")


def test_parameter_counts_from_dimensions_match_the_benchmark_models():
    # benchmarks/common.py counted the random-init models: 3.213 B, 4.022 B, 0.124 B.
    for path, billions in ((LLAMA, 3.213), (QWEN, 4.022), (KOBART, 0.124)):
        dims, reason = load_model_dims(path)
        assert dims is not None, reason
        assert dims.parameters() / 1e9 == pytest.approx(billions, abs=0.0006)
    # LoRA r16 on all seven projections: ~25 M (3B) and ~33 M (Qwen3-4B), as the DDP section says.
    cfg = load_config(H100_CONFIG, {"model.name_or_path": LLAMA})
    assert lora_parameters(cfg, load_model_dims(LLAMA)[0]) == 24_313_856
    kot5, _ = load_model_dims(KOT5)
    assert kot5.family == "t5" and kot5.gated and not kot5.tied


def test_lengths_default_to_the_config_maxima():
    cfg = load_config(H100_CONFIG, {"model.name_or_path": LLAMA})
    maxima = Lengths(cfg.prompt.max_source_length, cfg.prompt.max_target_length, cfg.prompt.max_source_length)
    assert predict(cfg, ROOT).to_json() == predict(cfg, ROOT, lengths=maxima).to_json()
    shorter = predict(cfg, ROOT, lengths=BENCH_4000).stages["train"].predicted_gib
    assert shorter < predict(cfg, ROOT).stages["train"].predicted_gib


def test_levers_move_the_prediction_the_way_they_should():
    cfg = load_config(H100_CONFIG, {**LEVERS_EAGER})
    base = predict(cfg, ROOT).stages["train"].predicted_gib
    ckpt = predict(load_config(H100_CONFIG, {**LEVERS_EAGER, "train.gradient_checkpointing": True}), ROOT)
    quant = predict(load_config(H100_CONFIG, {**LEVERS_EAGER, "quantization.load_in_4bit": True}), ROOT)
    two_gpus = predict(cfg, ROOT, gpus=2).stages["train"].predicted_gib
    assert ckpt.stages["train"].predicted_gib < base / 2
    assert quant.stages["train"].parts["weights"] < predict(cfg, ROOT).stages["train"].parts["weights"] / 2
    assert quant.stages["infer"] == predict(cfg, ROOT).stages["infer"]  # infer loads the base in bf16 anyway
    assert two_gpus > base


def test_evaluate_uses_no_gpu_and_a_cpu_run_none_at_all():
    cfg = load_config(ROOT / "configs" / "kobart.yaml", {"model.name_or_path": KOBART})
    evaluate = predict(cfg, ROOT).stages["evaluate"]
    assert evaluate.predicted_gib == 0.0 and "CPU" in evaluate.note
    cpu = predict(load_config(ROOT / "configs" / "kobart.yaml", {"train.device": "cpu"}), ROOT)
    assert cpu.known and all(stage.predicted_gib == 0.0 for stage in cpu.stages.values())


def test_a_model_not_on_disk_is_unknown_and_says_where_it_looked(tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf")}
    cfg = load_config(H100_CONFIG, {"model.name_or_path": "Bllossom/llama-3.2-Korean-Bllossom-3B"})
    footprint = predict(cfg, tmp_path, env=env)
    assert not footprint.known
    assert str(tmp_path / "hf" / "hub" / "models--Bllossom--llama-3.2-Korean-Bllossom-3B") in footprint.reason
    assert str(tmp_path / "Bllossom" / "llama-3.2-Korean-Bllossom-3B" / "config.json") in footprint.reason
    assert footprint.stages["train"].predicted_gib is None and footprint.stages["infer"].predicted_gib is None
    assert footprint.stages["train"].note.startswith("unknown: ")
    assert footprint.fits(H100_GIB) is None
    assert cheapest_fix(cfg, H100_GIB, tmp_path, env=env) is None


def test_the_hub_cache_is_found_where_huggingface_hub_keeps_it(tmp_path):
    config_text = (MODELS / "qwen3-4b" / "config.json").read_text(encoding="utf-8")
    repo = tmp_path / "cache" / "models--Qwen--Qwen3-4B-Instruct-2507"
    for snapshot in ("old", "new"):
        (repo / "snapshots" / snapshot).mkdir(parents=True)
        (repo / "snapshots" / snapshot / "config.json").write_text(config_text, encoding="utf-8")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("old\n", encoding="utf-8")
    # HF_HUB_CACHE wins over HF_HOME; refs/main names the snapshot.
    env = {"HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "elsewhere")}
    found = find_model_config("Qwen/Qwen3-4B-Instruct-2507", tmp_path, env)
    assert found.path == repo / "snapshots" / "old" / "config.json"
    cfg = load_config(ROOT / "configs" / "qwen3-4b.yaml")
    footprint = predict(cfg, tmp_path, env=env)
    assert footprint.known and footprint.model_config == str(found.path)
    # HF_HOME/hub when HF_HUB_CACHE is unset.
    assert find_model_config("Qwen/Qwen3-4B-Instruct-2507", tmp_path, {"HF_HOME": str(tmp_path)}).path is None


def test_a_relative_model_path_resolves_against_the_workspace(tmp_path):
    (tmp_path / "models" / "kobart").mkdir(parents=True)
    (tmp_path / "models" / "kobart" / "config.json").write_text(
        (MODELS / "kobart" / "config.json").read_text(encoding="utf-8"), encoding="utf-8")
    cfg = load_config(ROOT / "configs" / "kobart.yaml", {"model.name_or_path": "models/kobart"})
    assert predict(cfg, tmp_path, env={}).known
    assert not predict(cfg, tmp_path / "elsewhere", env={}).known


def test_a_config_too_big_for_80_gib_gets_the_cheapest_fix_that_fits():
    # bs 64 without checkpointing (~4x the shipped micro-batch) and 256 dialogues x 4 beams per generate().
    big = {"model.name_or_path": LLAMA, "train.batch_size": 64, "train.grad_accum": 1, "generation.batch_size": 256}
    cfg = load_config(H100_CONFIG, big)
    assert predict(cfg, ROOT).fits(H100_GIB) is False
    fix = cheapest_fix(cfg, H100_GIB, ROOT)
    assert fix is not None and fix.footprint.fits(H100_GIB)
    assert fix.changes["train.gradient_checkpointing"] is True
    assert "generation.batch_size 256 → 64" in fix.text
    # The changes are real config keys: applied as --set overrides they give the same fitting prediction.
    fixed = load_config(H100_CONFIG, {**big, **fix.changes})
    assert predict(fixed, ROOT).fits(H100_GIB)


def test_halving_the_batch_keeps_the_effective_batch_and_comes_first():
    cfg = load_config(H100_CONFIG, {**LEVERS_EAGER, "train.batch_size": 32, "train.grad_accum": 2})
    fix = cheapest_fix(cfg, H100_GIB, ROOT, lengths=BENCH_4000)
    assert fix is not None
    assert fix.changes == {"train.batch_size": 16, "train.grad_accum": 4}
    assert fix.text == ["train.batch_size 32 → 16 (train.grad_accum 2 → 4)"]


def test_a_config_that_fits_needs_no_change():
    cfg = load_config(ROOT / "configs" / "kobart.yaml", {"model.name_or_path": KOBART})
    fix = cheapest_fix(cfg, H100_GIB, ROOT)
    assert fix is not None and fix.changes == {} and fix.text == []


def test_json_shape():
    cfg = load_config(ROOT / "configs" / "kobart.yaml", {"model.name_or_path": KOBART})
    data = json.loads(json.dumps(predict(cfg, ROOT).to_json()))
    assert set(data) == {"stages", "known", "reason", "model_config"}
    assert list(data["stages"]) == list(STAGES)
    for stage in data["stages"].values():
        assert set(stage) == {"predicted_gib", "required_gib", "parts", "note"}
        assert all(isinstance(v, float) for v in stage["parts"].values())
    train = data["stages"]["train"]
    assert train["predicted_gib"] == pytest.approx(sum(train["parts"].values()), abs=0.05)
    fix = cheapest_fix(cfg, 10.0, ROOT)
    assert fix is not None and set(json.loads(json.dumps(fix.to_json()))) == {"changes", "text", "footprint"}


def test_importing_the_predictor_leaves_torch_and_transformers_out():
    code = ("import sys, engine.footprint, engine.model_dims; "
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
