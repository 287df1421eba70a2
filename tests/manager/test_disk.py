"""Tests for the du-like disk meter, its cache, the footprint projection and the disk guard."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from dialsum_tui.manager.guards.checks import check_disk, check_running_disk
from dialsum_tui.manager.guards.disk import (
    GB,
    estimate_params,
    measure,
    projected_footprint,
    read_cached,
    write_cache,
)
from dialsum_tui.manager.workspace.layout import init_workspace
from engine.config import config_from_dict

LLAMA = {
    "model": {"name_or_path": "Bllossom/llama-3.2-Korean-Bllossom-3B", "nickname": "Llama-3.2-Korean-3B-bf16",
              "kind": "causal", "dtype": "bfloat16"},
    "lora": {"enabled": True, "r": 16},
    "train": {"precision": "bf16", "save_total_limit": 2},
}
KOBART = {
    "model": {"name_or_path": "digit82/kobart-summarization", "nickname": "koBART-summarization", "kind": "seq2seq"},
    "train": {"save_total_limit": 2},
}


def _write(path, n_bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(n_bytes))


@pytest.fixture
def ws(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    # HF caches inside the workspace so the test never touches the real home directory.
    ws.settings_path.write_text("hf_cache_dirs: [cache/hub, cache/xet]\nquota_gb: 0.002\nmargin_gb: 0.0002\nsafe_gb: 0.001\n")
    _write(ws.checkpoints_dir / "koBART-summarization" / "final_model" / "model.safetensors", 300_000)
    _write(ws.runs_dir / "1" / "run.log", 20_000)
    _write(ws.root / "cache" / "hub" / "models--digit82--kobart-summarization" / "blob", 150_000)
    _write(ws.data_dir / "train.csv", 50_000)
    return ws


def test_measure_matches_du_and_counts_hardlinks_once(ws, tmp_path):
    big = ws.checkpoints_dir / "koBART-summarization" / "final_model" / "model.safetensors"
    os.link(big, ws.submissions_dir / "hardlink.bin")  # same inode: counted once, like du
    outside = tmp_path / "outside.bin"
    _write(outside, 400_000)
    (ws.data_dir / "link").symlink_to(outside)  # never followed
    usage = measure(ws)
    if shutil.which("du"):
        du = int(subprocess.run(["du", "-s", "-x", "-B1", str(ws.root)], capture_output=True, text=True, check=True).stdout.split()[0])
        assert usage.used_bytes == du
    labels = dict(usage.consumers)
    assert labels["checkpoints/koBART-summarization"] >= big.stat().st_size
    assert labels["HF hub cache"] > 0 and "other" in labels
    assert sum(labels.values()) == usage.used_bytes
    assert usage.consumers == sorted(usage.consumers, key=lambda c: -c[1])
    assert usage.limit_bytes == int(0.002 * GB)


def test_cache_roundtrip_is_private(ws):
    assert read_cached(ws) is None
    usage = measure(ws)
    write_cache(ws, usage)
    assert read_cached(ws) == usage
    assert stat.S_IMODE(ws.disk_cache_path.stat().st_mode) == 0o600
    ws.disk_cache_path.write_text("{not json")
    assert read_cached(ws) is None


def test_disk_guard_on_small_quota(ws):
    usage = measure(ws)
    room = usage.limit_bytes - usage.margin_bytes - usage.used_bytes
    assert room > 0, "fixture must leave some room under the quota"
    assert check_disk(usage, room // 2).ok
    blocked = check_disk(usage, room + 1)
    assert not blocked.ok and "needs ~" in blocked.reason and "used" in blocked.reason and "prune" in blocked.reason
    assert check_running_disk(usage).ok
    _write(ws.runs_dir / "1" / "ckpt.bin", room + usage.margin_bytes)
    full = measure(ws)
    stop = check_running_disk(full)
    assert not stop.ok and "disk quota guard" in stop.reason  # the failure table maps this to kind disk
    assert check_disk(None, 10**12).ok  # before the first measurement: admitted with a note


def test_projection_is_ordered_sensibly(tmp_path):
    llama = config_from_dict(LLAMA)
    kobart = config_from_dict(KOBART)
    lora = projected_footprint(llama, "train")
    full = projected_footprint(kobart, "train")
    assert lora > 0 and full > 0
    # A full fine-tune saves weights + optimizer per checkpoint; more checkpoints cost more.
    more = config_from_dict({**KOBART, "train": {"save_total_limit": 4}})
    assert projected_footprint(more, "train") > full
    merged = config_from_dict({**LLAMA, "lora": {"enabled": True, "merge_on_save": True}})
    assert projected_footprint(merged, "train") > lora
    assert projected_footprint(kobart, "infer") < full
    assert projected_footprint(kobart, "pipeline") == full + projected_footprint(kobart, "infer")


def test_param_estimates_from_names_and_local_weights(tmp_path):
    assert estimate_params("Qwen/Qwen3-4B-Instruct-2507")[0] == 4e9
    assert estimate_params("HuggingFaceTB/SmolLM2-135M")[0] == 135e6
    assert estimate_params("digit82/kobart-summarization")[1].startswith("known model")
    local = tmp_path / "tiny-llama"
    _write(local / "model.safetensors", 200_000)
    params, why = estimate_params("tiny-llama", root=tmp_path)
    assert params == 100_000 and "tiny-llama" in why
