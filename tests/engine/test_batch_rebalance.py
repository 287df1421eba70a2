"""``train.batch_rebalance``: the Trainer the causal recipe builds feeds each optimizer step exactly
``batch_size x grad_accum`` samples, but sizes its micro-batches by padded cost — more rows of short
samples, fewer of long ones — so larger micro-batches never meet a batch of only the longest samples.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

pytest.importorskip("torch")

from engine.config import RunConfig  # noqa: E402


def _cfg(model_dir: Path, data_dir: Path, **train) -> RunConfig:
    return RunConfig.model_validate({
        "model": {"name_or_path": str(model_dir), "nickname": "rebalance", "kind": "causal", "dtype": "float32"},
        "data": {"dir": str(data_dir), "max_train_samples": 96},
        "prompt": {"max_source_length": 256, "max_target_length": 48},
        "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0},
        "train": {"device": "cpu", "precision": "fp32", "optim": "adamw_torch", "save_strategy": "no",
                  "eval_strategy": "no", **train},
    })


def _micro_batches(cfg: RunConfig, tmp_path: Path, epoch: int = 0) -> list[tuple[int, int]]:
    """(rows, padded length) of every micro-batch of one epoch, as the Trainer would feed them."""
    from engine.artifacts import EventWriter
    from engine.data import load_split
    from engine.modeling import load_for_training
    from engine.recipes.sft import build_dataset, build_trainer

    samples, _ = load_split(Path(cfg.data.dir), "train")
    samples = samples[: cfg.data.max_train_samples]
    loaded = load_for_training(cfg, "cpu")
    train_ds = build_dataset(samples, cfg, loaded.tokenizer, random.Random(0), "train", EventWriter(None))
    trainer = build_trainer(cfg, loaded, train_ds, None, tmp_path / "trainer", "cpu", [])
    loader = trainer.get_train_dataloader()
    loader.set_epoch(epoch)
    return [(int(b["input_ids"].shape[0]), int(b["input_ids"].shape[1])) for b in loader]


def test_each_step_keeps_its_samples_while_micro_batches_follow_their_cost(tmp_path: Path, tiny_llama_dir: Path,
                                                                          synth_data_dir: Path) -> None:
    cfg = _cfg(tiny_llama_dir, synth_data_dir, batch_rebalance=True, batch_size=8, grad_accum=4)
    batches = _micro_batches(cfg, tmp_path)

    steps = [batches[i : i + 4] for i in range(0, len(batches), 4)]
    assert len(steps) == 96 // 32
    assert all(sum(rows for rows, _ in step) == 32 for step in steps)
    # Not 8 rows each: the cheap (short) micro-batches of a step take more rows than its costly ones.
    assert {rows for rows, _ in batches} != {8}
    for step in steps:
        by_length = sorted(step, key=lambda b: b[1])
        assert by_length[0][0] >= by_length[-1][0]


def test_epochs_are_shuffled_differently(tmp_path: Path, tiny_llama_dir: Path, synth_data_dir: Path) -> None:
    cfg = _cfg(tiny_llama_dir, synth_data_dir, batch_rebalance=True, batch_size=8, grad_accum=2)

    assert _micro_batches(cfg, tmp_path, epoch=0) != _micro_batches(cfg, tmp_path, epoch=1)


def test_without_rebalance_every_micro_batch_has_batch_size_rows(tmp_path: Path, tiny_llama_dir: Path,
                                                                 synth_data_dir: Path) -> None:
    cfg = _cfg(tiny_llama_dir, synth_data_dir, batch_size=8, grad_accum=4)

    assert {rows for rows, _ in _micro_batches(cfg, tmp_path)} == {8}
