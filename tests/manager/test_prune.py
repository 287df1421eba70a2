"""Tests for the prune plan and deletion on real directories and a real store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dialsum_tui.manager.guards.prune import PruneItem, prune, prune_plan
from dialsum_tui.manager.store.database import Store
from dialsum_tui.manager.workspace.layout import init_workspace
from engine.artifacts import final_model_dir, write_final_model_meta
from engine.config import config_from_dict


def _fill(path, n=4096):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(n))


def _ckpt(ws, nick, step, best=None):
    d = ws.checkpoints_dir / nick / "trainer" / f"checkpoint-{step}"
    _fill(d / "model.safetensors")
    state = {"global_step": step, "best_model_checkpoint": best}
    (d / "trainer_state.json").write_text(json.dumps(state))
    return d


def _complete(ws, nick):
    d = final_model_dir(ws.checkpoints_dir, nick)
    _fill(d / "model.safetensors")
    write_final_model_meta(d, {"nickname": nick})


@pytest.fixture
def ws(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    ws.settings_path.write_text("hf_cache_dirs: [cache/hub]\n")
    store = Store(ws.db_path)
    yield ws, store
    store.close()


def _add(store, nick, hub, state):
    yaml_text = config_from_dict({"model": {"name_or_path": hub, "nickname": nick, "kind": "causal"}}).to_yaml()
    run = store.add(nickname=nick, config_path="c.yaml", config_yaml=yaml_text, action="train")
    if state != "queued":
        store.transition(run.id, "running")
        if state != "running":
            store.transition(run.id, state)
    return run


def test_plan_keeps_final_best_active_and_unfinished(ws):
    ws, store = ws
    _add(store, "done", "org/done-1B", "succeeded")
    _complete(ws, "done")
    old = _ckpt(ws, "done", 100, best=None)
    best = _ckpt(ws, "done", 200)
    latest = _ckpt(ws, "done", 300, best=str(best))
    _add(store, "busy", "org/busy-3B", "running")
    _complete(ws, "busy")
    busy_ckpt = _ckpt(ws, "busy", 50)
    _add(store, "Qwen3-4B-Instruct", "Qwen/Qwen3-4B-Instruct-2507", "interrupted")
    qwen_ckpt = _ckpt(ws, "Qwen3-4B-Instruct", 758)  # no complete final_model: the only copy
    cache = ws.root / "cache" / "hub"
    _fill(cache / "models--org--busy-3B" / "blobs" / "a", 8192)
    _fill(cache / "models--org--old-7B" / "blobs" / "a", 16384)

    plan = prune_plan(ws, store.list())
    paths = {item.path for item in plan}
    assert paths == {old, latest, cache / "models--org--old-7B"}
    assert best not in paths and busy_ckpt not in paths and qwen_ckpt not in paths
    assert all(item.bytes > 0 and item.reason for item in plan)
    assert [i.bytes for i in plan] == sorted((i.bytes for i in plan), reverse=True)
    assert any("best checkpoint-200 kept" in i.reason for i in plan)

    freed = prune(plan)
    assert freed == sum(i.bytes for i in plan)
    assert not any(p.exists() for p in paths)
    assert best.exists() and final_model_dir(ws.checkpoints_dir, "done").exists()
    assert (cache / "models--org--busy-3B").exists()


def test_prune_refuses_paths_outside_their_root(ws, tmp_path):
    ws, _store = ws
    outside = tmp_path / "precious" / "checkpoint-1"
    _fill(outside / "w.bin")
    link = ws.checkpoints_dir / "x" / "checkpoint-9"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    items = [
        PruneItem(outside, 1, "forged", ws.checkpoints_dir),
        PruneItem(link, 1, "symlink", ws.checkpoints_dir),
        PruneItem(ws.checkpoints_dir / "x", 1, "wrong name", ws.checkpoints_dir),
        PruneItem(outside, 1, "no root"),
    ]
    assert prune(items) == 0
    assert outside.exists() and link.is_symlink()


def test_prune_says_why_it_keeps_a_checkpoint_and_what_it_frees_against_the_quota(tmp_path: Path) -> None:
    from dialsum_tui.manager.guards.prune import prune_kept, quota_effect

    ws = init_workspace(tmp_path / "ws")
    store = Store(ws.db_path)
    nick_dir = ws.checkpoints_dir / "kobart-r1"
    (nick_dir / "checkpoint-200").mkdir(parents=True)
    (nick_dir / "checkpoint-200" / "w.bin").write_bytes(b"\0" * 4096)
    run = store.add(nickname="kobart", config_path="c.yaml", config_yaml="model: {}\n", action="pipeline")
    kept = prune_kept(ws, store.list())  # run 1 (kobart-r1) is queued: its checkpoints stay, and say so
    assert [(k.path.name, k.reason) for k in kept] == [("checkpoint-200", f"kept: run {run.id} (kobart, queued) "
                                                                          "may still need it")]
    assert quota_effect(12_300_000_000, 141_000_000_000, 150_000_000_000) == \
        "12.3 GB can go: 141.0 GB → 128.7 GB of 150.0 GB used"
