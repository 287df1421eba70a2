"""Provides session-scoped real fixtures: a synthetic data set and tiny models built once per test
session (through the real ``python -m engine`` CLI) and shared by engine, manager and TUI tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest

from support import SESSION_ENV, engine_cli, fake_engine_workspace, leftover_processes, stop_workers_of


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


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist every worker's torch (in-process and in the stages it starts) would take all
    the cores: with 2 workers on 2 cores their OpenMP threads spin against each other, and a loaded CI
    box then runs out the fixtures' timeouts. Measured here: two tiny-Llama builds side by side took
    23 s with default threads, 16 s with one thread each. An OMP_NUM_THREADS set by the caller wins."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))


_share_the_cores_between_workers()

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
                        "--pretrain-steps", str(TINY_CAUSAL_PRETRAIN_STEPS), timeout=900))  # a hang guard only
    return out


# Every process a test starts inherits this mark (one per pytest process: each xdist worker has its own),
# so what a test leaves running is found whatever its parent became: a detached worker is adopted by
# init, yet still carries it. Tests that build an environment from scratch pass it on (support.SESSION_ENV).
os.environ[SESSION_ENV] = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"

LEFTOVER_GRACE_S = 5.0  # a process told to stop at teardown may take a moment to exit


@pytest.fixture(autouse=True)
def _no_process_left_behind(request: pytest.FixtureRequest):
    """Fail a test that leaves a worker, a CLI or an engine stage running (after killing them): a
    detached worker nobody stops outlives the suite (`make test` left one from the serve-tab test).

    Autouse in the root conftest: set up first, so torn down after the test's own fixtures, which
    stop the workers they started.
    """
    yield
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    left = leftover_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = leftover_processes()
    if not left:
        return
    for pid in left:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
    psutil.wait_procs([p for p in map(_process, left) if p is not None], timeout=5)
    named = "\n".join(f"  pid {pid}: {command}" for pid, command in sorted(left.items()))
    pytest.fail(f"{request.node.nodeid} left {len(left)} process(es) running (killed now):\n{named}", pytrace=False)


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh workspace (``<tmp>/ws``) whose stages run the stand-in engine; its workers are stopped after."""

    ws = fake_engine_workspace(tmp_path / "ws", monkeypatch)
    yield ws
    stop_workers_of(ws.root)
