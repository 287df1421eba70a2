"""The demo workspace as a newcomer gets it: built through real engine subprocesses, reused on a re-run,
its broken data set failing as a data error through the real worker, and ``demo --no-tui`` queueing once.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dialsum_tui.manager import demo
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.workspace.layout import Workspace, init_workspace
from engine.config import ConfigError, load_config
from engine.contract import DATA_FILES

from support import wait_until

REPO = Path(__file__).resolve().parents[2]
FAKE_ENGINE = REPO / "tests" / "fake_engine.py"
# A few pre-training steps keep the build to seconds; the demo's default is tested by its users.
TEST_PRETRAIN_STEPS = 8


def _engine(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _files(root: Path) -> dict[str, int]:
    """Every file outside the state directory, with its mtime in ns."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and ".dialsum" not in p.parts}


def _copy_workspace(src: Workspace, dest: Path) -> Workspace:
    """A fresh workspace with the demo content of ``src`` (no state: no runs, no worker)."""
    shutil.copytree(src.root, dest, ignore=shutil.ignore_patterns(".dialsum"))
    return init_workspace(dest)


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """``init_demo_workspace(DIR)`` once for the module, with the real engine."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(demo.PRETRAIN_STEPS_ENV, str(TEST_PRETRAIN_STEPS))
        return demo.init_demo_workspace(tmp_path_factory.mktemp("demo") / "ws")


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast worker polling and no inherited workspace or GPU script."""
    monkeypatch.setenv("DIALSUM_WORKER_POLL_S", "0.1")
    monkeypatch.setenv("DIALSUM_STOP_GRACE", "1,1")
    for name in ("DIALSUM_WORKSPACE", "DIALSUM_FAKE_GPU", "DIALSUM_ENGINE", "FAKE_FAIL"):
        monkeypatch.delenv(name, raising=False)


def _fast_settings(ws: Workspace) -> None:
    ws.settings_path.write_text("gpu_grace_s: 0\ngpu_samples: 1\ndisk_refresh_s: 1\n", encoding="utf-8")


def test_demo_configs_load_and_point_at_built_models_and_data(demo_ws: Workspace) -> None:
    config_dir = demo_ws.root / demo.DEMO_CONFIG_DIR
    shipped = {p.name for p in demo.REPO_CONFIGS.glob("*.yaml")}
    assert shipped and shipped | {demo.BROKEN_CONFIG} == {p.name for p in config_dir.glob("*.yaml")}
    for nickname, filename in demo.DEMO_RUNS:
        assert load_config(config_dir / filename).model.nickname == nickname
    # File names carry the family, as tests and scripts look them up.
    assert load_config(config_dir / "bart-tiny.yaml").model.kind == "seq2seq"
    assert load_config(config_dir / "llama-tiny-lora.yaml").model.kind == "causal"
    for path in config_dir.glob("*.yaml"):
        cfg = load_config(path)
        model_dir = demo_ws.resolve(cfg.model.name_or_path)
        assert (model_dir / "tiny_model.json").is_file(), f"{path.name}: {model_dir} not built"
        assert all((demo_ws.resolve(cfg.data.dir) / name).is_file() for name in DATA_FILES)
    llama = demo_ws.root / "models" / "tiny-llama" / "tiny_model.json"
    assert f'"pretrain_steps": {TEST_PRETRAIN_STEPS}' in llama.read_text(encoding="utf-8")
    assert not list((demo_ws.root / "models").glob(".*partial")), "a partial model directory was left behind"


def test_demo_data_passes_check_data_and_the_broken_copy_names_its_line(demo_ws: Workspace) -> None:
    good = _engine("check-data", "data", cwd=demo_ws.root)
    assert good.returncode == 0, good.stdout + good.stderr
    broken = _engine("check-data", demo.BROKEN_DATA_DIR, cwd=demo_ws.root)
    assert broken.returncode == 2
    lines = (demo_ws.root / demo.BROKEN_DATA_DIR / "dev.csv").read_text(encoding="utf-8").splitlines()
    # The one record written by hand starts with a quoted fname; the error must point at it.
    bad_line = next(i for i, line in enumerate(lines, 1) if line.startswith('"dev_'))
    assert f"dev.csv: line {bad_line}" in broken.stdout
    errors = [line for line in broken.stdout.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "dev.csv" in errors[0], "only the broken dev.csv may fail"


def test_rebuild_reuses_every_step(demo_ws: Workspace) -> None:
    before = _files(demo_ws.root)
    lines: list[str] = []
    demo.build_demo(demo_ws, report=lines.append)
    assert _files(demo_ws.root) == before
    steps = lines[1:-1]
    assert steps and all(line.strip().startswith("reusing") for line in steps), lines


def test_an_incomplete_model_is_rebuilt_and_nothing_else(demo_ws: Workspace, tmp_path: Path) -> None:
    ws = _copy_workspace(demo_ws, tmp_path / "ws")
    (ws.root / "models" / "tiny-bart" / "tiny_model.json").unlink()  # as if the build died before its marker
    lines: list[str] = []
    demo.build_demo(ws, report=lines.append)
    assert any("building tiny bart" in line for line in lines), lines
    assert not any("building tiny llama" in line or "writing synthetic" in line for line in lines), lines
    assert (ws.root / "models" / "tiny-bart" / "tiny_model.json").is_file()
    load_config(ws.root / demo.DEMO_CONFIG_DIR / "bart-tiny.yaml")


def test_a_failing_engine_step_names_the_step_and_the_log(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    (ws.data_dir / "train.csv").write_text("fname,dialogue\nx,\"unclosed\n", encoding="utf-8")
    for split in ("dev", "test"):  # present, so the synth step is skipped and tiny-model sees the bad train.csv
        (ws.data_dir / f"{split}.csv").write_text("fname,dialogue\nx,y\n", encoding="utf-8")
    with pytest.raises(demo.DemoBuildError) as err:
        demo.build_demo(ws, report=lambda _line: None)
    message = str(err.value)
    assert "tiny bart failed (exit 2)" in message
    assert str(ws.state_dir / demo.BUILD_LOG) in message and "train.csv" in message
    assert not (ws.root / "models" / "tiny-bart").exists()


def test_broken_data_run_fails_as_a_data_error_through_the_real_worker(
    demo_ws: Workspace, tmp_path: Path, worker_env: None
) -> None:
    ws = _copy_workspace(demo_ws, tmp_path / "ws")
    _fast_settings(ws)
    manager = Manager.open(ws)
    with pytest.raises(ConfigError, match="dev.csv: line"):  # refused at add by the preflight ...
        manager.add(str(ws.root / demo.DEMO_CONFIG_DIR / demo.BROKEN_CONFIG))
    # ... and, queued anyway (as the demo does), failed by the worker's preflight before the first step.
    run = manager.add(str(ws.root / demo.DEMO_CONFIG_DIR / demo.BROKEN_CONFIG), check=False)
    try:
        manager.ensure_worker()
        wait_until(lambda: manager.get(run.id).state.is_final, 120, "the broken-data run to end")
    finally:
        manager.stop_worker()
    final = manager.get(run.id)
    assert final.state is RunState.FAILED and final.failure_kind == "data", final
    assert "dev.csv" in (final.failure_message or "")
    row = next(r for r in manager.results() if r.nickname == "broken-data")
    assert row.status == "❌ 실패 (data)"


def test_demo_cli_twice_queues_each_pipeline_once(demo_ws: Workspace, tmp_path: Path, worker_env: None) -> None:
    ws = _copy_workspace(demo_ws, tmp_path / "ws")
    _fast_settings(ws)
    # The stages themselves are the fake engine's: this test is about queueing, not training.
    env = {**os.environ, "DIALSUM_ENGINE": shlex.join([sys.executable, str(FAKE_ENGINE)]), "FAKE_STEP_S": "0.05"}
    try:
        outputs = []
        for _ in range(2):
            done = subprocess.run([sys.executable, "-m", "dialsum_tui", "demo", str(ws.root), "--no-tui"],
                                  capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout)
    finally:
        Manager.open(ws).stop_worker()
    nicknames = [nickname for nickname, _file in demo.DEMO_RUNS] + list(demo.DEMO_SWEEP_NICKNAMES)
    assert [r.nickname for r in Manager.open(ws).runs()] == nicknames
    assert outputs[0].count("queued run") == len(nicknames)
    assert "queued run" not in outputs[1] and outputs[1].count("reusing run") == len(nicknames)
    assert "worker running" in outputs[1]
    sweep = Manager.open(ws).sweep("s1")  # the demo's small sweep: one group row, its best named at its end
    assert [r.nickname for r in sweep.runs] == list(demo.DEMO_SWEEP_NICKNAMES) and sweep.sweep.keys == (
        "train.learning_rate",)


@pytest.fixture(autouse=True)
def _no_stray_worker(tmp_path: Path) -> Iterator[None]:
    """A failed assertion must not leave a detached worker behind on the shared cores."""
    yield
    for root in tmp_path.glob("ws"):
        if (root / ".dialsum").is_dir():
            Manager.open(Workspace(root)).stop_worker()
