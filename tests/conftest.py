"""Provides session-scoped real fixtures: a synthetic data set and tiny models built once per test
session (through the real ``python -m engine`` CLI) and shared by engine, manager and TUI tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Steps of LM pre-training for the tiny causal base: enough that LoRA has a language model to adapt.
TINY_CAUSAL_PRETRAIN_STEPS = 60


def engine_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m engine ARGS`` in a subprocess (the way the manager runs it) and return the result."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


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


def write_run_config(workspace: Path, tree: dict) -> Path:
    """Write ``tree`` as ``workspace/config.yaml`` (paths in it are relative to the workspace, the CWD)."""
    import yaml

    workspace.mkdir(parents=True, exist_ok=True)
    path = workspace / "config.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def read_event_lines(path: Path) -> list[dict]:
    """Parse every line of an ``events.jsonl`` strictly: a torn or invalid line fails the test."""
    import json

    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, f"{path} is empty"
    events = [json.loads(line) for line in lines]
    for event in events:
        assert event["v"] == 1 and isinstance(event["ts"], float | int) and event["event"]
    return events


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh workspace (``<tmp>/ws``) whose stages run the stand-in engine; its workers are stopped after."""
    from support import fake_engine_workspace, stop_workers_of

    ws = fake_engine_workspace(tmp_path / "ws", monkeypatch)
    yield ws
    stop_workers_of(ws.root)
