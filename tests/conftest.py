"""Provides session-scoped real fixtures: a synthetic data set and tiny models built once per test
session (through the real ``python -m engine`` CLI) and shared by engine, manager and TUI tests.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from support import engine_cli, fake_engine_workspace, stop_workers_of


def _let_children_take_signals() -> None:
    """A suite started under ``nohup`` or as a background job (``make test &``) inherits SIGHUP and
    SIGINT ignored, and an ignored signal stays ignored across ``exec``: the stages, shells and TUIs
    the tests start would shrug off the very signals the tests send them (three tests failed so).
    A no-op handler leaves this process as immune as its launcher wanted, while ``exec`` resets a
    handled signal to its default in every child."""
    for sig in (signal.SIGHUP, signal.SIGINT):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, lambda *_: None)


_let_children_take_signals()

# Steps of LM pre-training for the tiny causal base: enough that LoRA has a language model to adapt.
TINY_CAUSAL_PRETRAIN_STEPS = 60


def _checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="session")
def synth_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/dev/test.csv of the deterministic synthetic Korean set (demo profile)."""
    out = tmp_path_factory.mktemp("synth") / "data"
    _checked(engine_cli("synth", "--out", str(out), "--train", "240", "--dev", "24", "--test", "24"))
    return out


@pytest.fixture(scope="session")
def tiny_bart_dir(tmp_path_factory: pytest.TempPathFactory, synth_data_dir: Path) -> Path:
    """A tiny random-init BART + tokenizer trained on the synthetic train.csv."""
    out = tmp_path_factory.mktemp("tiny") / "bart"
    _checked(engine_cli("tiny-model", "--arch", "bart", "--data", str(synth_data_dir), "--out", str(out)))
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, synth_data_dir: Path) -> Path:
    """A tiny Llama, LM-pre-trained for a few steps on the synthetic corpus, with a chat template."""
    out = tmp_path_factory.mktemp("tiny") / "llama"
    _checked(engine_cli("tiny-model", "--arch", "llama", "--data", str(synth_data_dir), "--out", str(out),
                        "--pretrain-steps", str(TINY_CAUSAL_PRETRAIN_STEPS)))
    return out


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh workspace (``<tmp>/ws``) whose stages run the stand-in engine; its workers are stopped after."""

    ws = fake_engine_workspace(tmp_path / "ws", monkeypatch)
    yield ws
    stop_workers_of(ws.root)
