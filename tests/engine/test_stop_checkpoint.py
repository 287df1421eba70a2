"""The stop checkpoint's disk accounting (engine.callbacks.DiskGuardCallback with save_on_stop): the
guard keeps room for one checkpoint, stops while it still fits and lets the Trainer save it; a stop
checkpoint that no longer fits is not written; without save_on_stop nothing is reserved."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import TrainerControl

import engine.runtime
from engine.callbacks import DiskGuardCallback, StopOnSignalCallback

CKPT = 1_000
STOP = 10_000
ARGS = SimpleNamespace(world_size=1)


class Measured(DiskGuardCallback):
    """The guard with the tree's size given instead of measured (du is not what is tested here)."""

    def __init__(self, used: int, save_on_stop: bool):
        super().__init__(Path("."), STOP, Path("."), every=1, save_on_stop=save_on_stop)
        self.used = used

    def usage(self) -> int:
        return self.used

    def last_checkpoint_bytes(self) -> int:
        return CKPT


def step_end(guard: DiskGuardCallback, control: TrainerControl, step: int = 40) -> TrainerControl:
    return guard.on_step_end(ARGS, SimpleNamespace(global_step=step), control)


@pytest.fixture(autouse=True)
def no_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.runtime, "_stop_signal", None)


def test_stops_while_a_checkpoint_still_fits_and_saves_it() -> None:
    guard = Measured(used=STOP - 2 * CKPT + 500, save_on_stop=True)  # one checkpoint fits, two do not
    control = step_end(guard, TrainerControl())
    assert control.should_training_stop and control.should_save and guard.saved_at_stop
    assert "checkpoint-40 saved at the stop" in guard.tripped and "kept for a checkpoint at the stop" in guard.tripped


def test_no_stop_checkpoint_when_it_no_longer_fits() -> None:
    guard = Measured(used=STOP - 10, save_on_stop=True)  # the tree grew from elsewhere
    control = step_end(guard, TrainerControl())
    assert control.should_training_stop and not control.should_save and not guard.saved_at_stop


def test_without_save_on_stop_nothing_is_reserved() -> None:
    guard = Measured(used=STOP - 2 * CKPT + 500, save_on_stop=False)
    control = step_end(guard, TrainerControl())
    assert not control.should_training_stop and guard.tripped is None


def test_a_signal_stop_saves_only_what_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.runtime, "_stop_signal", "SIGTERM")
    for used, saved in ((STOP - 2 * CKPT, True), (STOP - CKPT // 2, False)):
        control = StopOnSignalCallback(save_on_stop=True).on_step_end(ARGS, SimpleNamespace(global_step=7), TrainerControl())
        assert control.should_training_stop and control.should_save
        control = step_end(Measured(used=used, save_on_stop=True), control, step=7)
        assert control.should_save is saved and control.should_training_stop
    control = StopOnSignalCallback(save_on_stop=False).on_step_end(ARGS, SimpleNamespace(global_step=7), TrainerControl())
    assert control.should_training_stop and not control.should_save
