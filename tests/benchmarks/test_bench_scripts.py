"""The GPU benchmark scripts of issues 15 and 16 run their code paths on the CPU on tiny shapes, so
they cannot rot between device sessions: inference_speed.py --fast (cache × attention variants,
outputs compared; with and without the n-gram ban), train_levers.py (eager vs the speed levers, per-step losses compared),
product_multi_gpu.py's headless TUI capture and its reading of the worker's launch log."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import REPO, script_env, wait_until

BENCH = REPO / "benchmarks"


def run_bench(script: str, root: Path, model: Path, data: Path,
              *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """``benchmarks/<script>`` on the CPU with the tiny model and data; its process and its JSON rows."""
    out = root / "rows.json"
    proc = subprocess.run([sys.executable, str(BENCH / script), "--device", "cpu", "--root", str(root),
                           "--model", str(model), "--data", str(data), *args, "--out", str(out)],
                          capture_output=True, text=True, env=script_env(), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


@pytest.mark.slow
def test_inference_speed_fast_mode_compares_variants_with_the_reference(tmp_path: Path, synth_data_dir: Path,
                                                                     tiny_llama_dir: Path) -> None:
    _, rows = run_bench("inference_speed.py", tmp_path, tiny_llama_dir, synth_data_dir, "--fast", "--batch-sizes", "8",
                        "--new-tokens", "4", "--fast-variants", "eager-sdpa,static-gqa,eager-gqa", "--limit", "20",
                        "--fast-beams", "1,4", "--beam-batch-sizes", "4", "--beam-limit", "8")
    assert [r["variant"].split(",")[0] for r in rows] == (
        ["eager-sdpa bs 8", "static-gqa bs 8", "static-gqa bs 8", "eager-gqa bs 8"]
        + ["eager-sdpa bs 4", "static-gqa bs 4", "static-gqa bs 4", "eager-gqa bs 4"])
    assert all("beams 1" in r["variant"] for r in rows[:4]) and all("beams 4" in r["variant"] for r in rows[4:])
    greedy, beams = rows[:4], rows[4:]
    assert all(r["dialogues"] == 20 and "(first 20, extrapolated)" in r["variant"] for r in greedy)
    assert all(r["dialogues"] == 8 and "(first 8, extrapolated)" in r["variant"] for r in beams)
    # A prefix of the 24 synthetic test dialogues, extrapolated to all 24.
    assert all(r["test_set_s"] > 0 and abs(r["test_set_s"] - r["seconds"] * 24 / r["dialogues"]) <= 0.1 for r in rows)
    # On the CPU the engine falls back to the dynamic cache and the GQA attention gives stock SDPA's
    # results: every pass agrees exactly with the reference of its beam count.
    assert [r.get("identical_to_reference") for r in rows] == [None] + ["20/20"] * 3 + [None] + ["8/8"] * 3


def test_decode_profile_splits_each_batch_into_prefill_and_decoding(tmp_path: Path, synth_data_dir: Path,
                                                                   tiny_llama_dir: Path) -> None:
    proc, result = run_bench("decode_profile.py", tmp_path, tiny_llama_dir, synth_data_dir, "--batch-size", "8",
                             "--new-tokens", "6", "--profile-tokens", "3", "--limit", "20", "--top", "5", "--repeats", "2")
    # 20 dialogues in length-sorted batches of 8, longest first, as generate_summaries makes them.
    assert [b["rows"] for b in result["batches"]] == [8, 8, 4]
    assert [b["width"] for b in result["batches"]] == sorted((b["width"] for b in result["batches"]), reverse=True)
    for b in result["batches"]:
        # Timings are only checked for shape: on a busy CI box 1 and 6 tiny-model tokens can time alike.
        assert b["prefill_s"] > 0 and b["generate_1_s"] > 0 and b["generate_6_s"] > 0
        assert b["decode_ms_per_token"] == pytest.approx((b["generate_6_s"] - b["generate_1_s"]) / 5 * 1e3, abs=0.05)
        assert b["real_tokens"] <= b["rows"] * b["width"]
    assert result["total"]["generate_6_s"] == pytest.approx(sum(b["generate_6_s"] for b in result["batches"]), abs=2e-3)
    # On the CPU the profile ranks host ops; there is no GPU time to share out.
    profiled = result["profile_longest_batch"]
    assert profiled["tokens"] == 3 and profiled["gpu_busy_share"] is None and len(profiled["top"]) == 5
    assert "profile of 3 tokens on the longest batch" in proc.stdout


@pytest.mark.slow
def test_decode_profile_with_beams_times_the_prompt_pass_on_the_expanded_rows(tmp_path: Path, synth_data_dir: Path,
                                                                             tiny_llama_dir: Path) -> None:
    _, result = run_bench("decode_profile.py", tmp_path, tiny_llama_dir, synth_data_dir, "--batch-size", "4",
                          "--num-beams", "2", "--new-tokens", "4", "--profile-tokens", "2", "--limit", "6")
    assert result["num_beams"] == 2
    assert [(b["rows"], b["prefill_rows"]) for b in result["batches"]] == [(4, 8), (2, 4)]
    assert all(b["generate_4_s"] > 0 and b["generate_1_s"] > 0 for b in result["batches"])


def test_inference_speed_runs_each_variant_with_and_without_the_ngram_ban(tmp_path: Path, synth_data_dir: Path,
                                                                         tiny_llama_dir: Path) -> None:
    _, rows = run_bench("inference_speed.py", tmp_path, tiny_llama_dir, synth_data_dir, "--fast", "--batch-sizes", "8",
                        "--new-tokens", "8", "--fast-variants", "eager-sdpa", "--no-repeat-ngrams", "0,3", "--limit", "8")
    assert [r["variant"] for r in rows] == ["eager-sdpa bs 8, beams 1 (first 8, extrapolated)",
                                            "eager-sdpa no-repeat 3 bs 8, beams 1 (first 8, extrapolated)"]
    # The banned row is compared with the unbanned reference: the tiny model repeats itself, so the
    # ban changes some summaries (the count shows the ban was at work).
    same, total = rows[1]["identical_to_reference"].split("/")
    assert total == "8" and int(same) < 8


def test_inference_speed_default_mode_times_the_baselines_and_the_engine(tmp_path: Path, synth_data_dir: Path,
                                                                          tiny_llama_dir: Path) -> None:
    proc, rows = run_bench("inference_speed.py", tmp_path, tiny_llama_dir, synth_data_dir, "--batch-sizes", "8",
                           "--beam-batch-sizes", "4", "--one-by-one", "2", "--team-prefix", "4", "--new-tokens", "4")
    assert [r["variant"] for r in rows] == [
        "one-by-one generate, beams 1 (first 2, extrapolated)", "one-by-one generate, beams 4 (first 4, extrapolated)",
        "team setting: bs 4 in file order, greedy (first 4, extrapolated)", "engine: length-sorted bs 8, greedy",
        "engine: length-sorted bs 4, beams 4"]
    assert all(r["s_per_dialogue"] > 0 for r in rows)
    assert "engine: length-sorted bs 8, greedy" in proc.stdout  # the printed table


def run_levers(root: Path, model: Path, data: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    """train_levers.py on the CPU with the tiny model; its process and its result rows by variant."""
    proc, rows = run_bench("train_levers.py", root, model, data, *args)
    return proc, {r["variant"]: r for r in rows}


@pytest.mark.slow
def test_train_levers_matches_eager_losses_step_by_step(tmp_path: Path, synth_data_dir: Path,
                                                       tiny_llama_dir: Path) -> None:
    proc, rows = run_levers(tmp_path, tiny_llama_dir, synth_data_dir, "--variants", "fused,compile+fused",
                            "--steps", "3", "--skip", "1", "--batch", "4")
    assert list(rows) == ["eager", "fused", "compile+fused"]  # the reference ran first, unasked
    assert all(r["exit"] == 0 and r["tokens_per_s"] > 0 and len(r["losses"]) == 3 for r in rows.values())
    for name in ("fused", "compile+fused"):  # float32 on the CPU: the same computation, reordered at most
        assert rows[name]["loss_steps_compared"] == 3 and rows[name]["loss_max_rel_diff"] < 1e-4, rows[name]
    assert "compile_s" in rows["compile+fused"] and "loss max rel diff" in proc.stdout
    run_log = (tmp_path / "runs" / "levers-compile-fused" / "run.log").read_text()
    assert "speed levers: fused_lora_modules" in run_log and "compiled_layers" in run_log


def test_product_capture_renders_the_gpu_panel_headless(tmp_path: Path) -> None:
    from dialsum_tui.manager.workspace.layout import init_workspace

    ws = init_workspace(tmp_path / "ws").root
    svg = tmp_path / "tui.svg"
    env = script_env() | {"DIALSUM_FAKE_GPU": str(REPO / "tests" / "fixtures" / "gpu" / "foreign_on_gpu0.json")}
    proc = subprocess.run([sys.executable, str(BENCH / "product_multi_gpu.py"), "--capture", str(ws), "--svg", str(svg),
                           "--expect", "not ours", "--timeout", "20"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GPU0" in proc.stdout and "GPU1" in proc.stdout and "alice (not ours)" in proc.stdout
    assert svg.read_text().lstrip().startswith("<svg")


def test_product_reads_stage_launches_from_the_worker_log(workspace) -> None:
    sys.path.insert(0, str(BENCH))
    from product_multi_gpu import launches

    from dialsum_tui.manager.service import Manager

    config = workspace.root / "configs" / "tiny.yaml"
    config.write_text("model: {name_or_path: org/tiny, nickname: tiny, kind: seq2seq}\n", encoding="utf-8")
    manager = Manager.open(workspace)
    run = manager.add(str(config), action="train")
    before = time.time() - 1
    manager.ensure_worker()
    found = wait_until(lambda: [x for x in launches(workspace.root) if x[1] == run.id], timeout=60,
                       what="the worker's launch line for the run")
    when, run_id, stage, pid = found[0]
    assert (run_id, stage) == (run.id, "train") and pid > 0 and before <= when <= time.time()


@pytest.mark.slow
def test_train_levers_rebalanced_micro_batches_track_the_eager_loss(tmp_path: Path, synth_data_dir: Path,
                                                                    tiny_llama_dir: Path) -> None:
    # 64 train samples and an effective batch of 64: every step sees the same samples, split into
    # 4 grouped micro-batches by the reference and 2 cost-sized ones by the variant.
    proc, rows = run_levers(tmp_path, tiny_llama_dir, synth_data_dir, "--variants", "rebalance32-eb64",
                            "--steps", "10", "--skip", "1")
    assert list(rows) == ["eager-eb64", "rebalance32-eb64"]
    assert rows["rebalance32-eb64"]["loss_mean10_rel_diff"] < 1e-3, rows["rebalance32-eb64"]
    assert "10-step mean diff" in proc.stdout


def test_train_throughput_runs_the_team_recipe_and_a_lever_and_profiles_one(tmp_path: Path, synth_data_dir: Path,
                                                                          tiny_llama_dir: Path,
                                                                          tiny_bart_dir: Path) -> None:
    proc, rows = run_bench("train_throughput.py", tmp_path, tiny_llama_dir, synth_data_dir,
                           "--seq2seq-model", str(tiny_bart_dir), "--only", "llama3b,kobart",
                           "--pick", "llama3b:0,5;kobart:1", "--steps", "5", "--profile", "LoRA dropout 0")
    assert [r["name"] for r in rows] == [
        "llama3b team recipe (QLoRA nf4, ckpt, bs8x8, random, paged AdamW) [cpu dry run]",
        "llama3b no ckpt, bs16, grouped, Liger, LoRA dropout 0 [cpu dry run]",
        "kobart engine (bf16 AMP, bs50, grouped, fused AdamW) [cpu dry run]"]
    # Each variant trained in its own engine process; the steady window is read from its progress events.
    assert all(r["exit"] == 0 and r["tokens_per_s"] > 0 and r["steps"] >= 1 for r in rows), rows
    assert [r["samples_per_step"] for r in rows] == [64, 16, 50]
    assert all(r["mfu_pct"] is None for r in rows)  # MFU is against an H100's peak: GPU runs only
    # The profiled variant ran three more steps under the profiler; on the CPU no CUDA kernel is counted.
    assert set(rows[1]["profile_ms_per_step"]) == {"attention", "matmul", "liger/triton", "optimizer", "copy/cast",
                                                   "elementwise/other"}
    assert "profile_ms_per_step" not in rows[0] and "tok/s" in proc.stdout
    config = (tmp_path / "configs" / "bench00.yaml").read_text()
    assert "quantization" not in config and "device: cpu" in config


def test_train_throughput_on_the_cpu_asks_for_the_models_it_stands_in_for(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "train_throughput.py"), "--device", "cpu", "--root", str(tmp_path),
                           "--data", str(tmp_path), "--model", str(tmp_path), "--only", "kobart"],
                          capture_output=True, text=True, env=script_env(), timeout=120)
    assert proc.returncode == 2 and "--seq2seq-model DIR for kobart" in proc.stderr
