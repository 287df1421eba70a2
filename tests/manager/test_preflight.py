"""The preflight: what would fail a run later is refused at `add` (exit 2, what to change) and, when
it appears while the run waits, fails the run at admission before its first stage starts.
Real files, real SQLite, the real CLI in a subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dialsum_tui.manager.guards.gpu import GpuDevice, NoGpuSource, ScriptedGpuSource
from dialsum_tui.manager.guards.preflight import DataChecks, check_model, preflight
from dialsum_tui.manager.runs.models import RunState
from dialsum_tui.manager.service import Manager
from dialsum_tui.manager.worker.loop import Worker
from dialsum_tui.manager.workspace.layout import Workspace
from engine import artifacts
from engine.config import ConfigError, load_config

from support import stop_workers_of, wait_until

CLI = [sys.executable, "-m", "dialsum_tui"]


def add_cli(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, "--workspace", str(ws.root), "add", *args], capture_output=True, text=True,
                          timeout=60, cwd=ws.root)
    stop_workers_of(ws.root)
    return done


def test_a_duplicate_fname_in_test_csv_is_refused_at_add_before_any_training(workspace: Workspace, make_config) -> None:
    test_csv = workspace.data_dir / "test.csv"
    text = test_csv.read_text(encoding="utf-8")
    test_csv.write_text(text.rstrip("\n") + '\ntest_0,"#Person1#: 또 왔어요."\n', encoding="utf-8")
    done = add_cli(workspace, str(make_config("m")))
    assert done.returncode == 2
    assert "test.csv" in done.stderr and "duplicate fname 'test_0'" in done.stderr and "not queued" in done.stderr
    assert Manager.open(workspace).runs() == []


def test_a_missing_test_csv_is_refused_but_a_train_only_run_does_not_need_it(workspace: Workspace, make_config) -> None:
    (workspace.data_dir / "test.csv").unlink()
    done = add_cli(workspace, str(make_config("m")))
    assert done.returncode == 2 and "test.csv" in done.stderr and "missing" in done.stderr
    assert add_cli(workspace, str(make_config("m")), "--action", "train").returncode == 0


def test_model_path_data_dir_and_outputs_outside_the_quota_name_their_keys(workspace: Workspace, make_config) -> None:
    (workspace.root / "models").mkdir()  # a workspace with local models: models/typo is a path, not a hub id
    config = make_config("m", data={"dir": "no-such-data"}, paths={"checkpoints": "../outside"})
    config.write_text(config.read_text(encoding="utf-8").replace("models/tiny", "models/typo"), encoding="utf-8")
    done = add_cli(workspace, str(config))
    assert done.returncode == 2, done.stderr
    for key in ("model.name_or_path", "data.dir", "paths.checkpoints", "allow_outside_quota"):
        assert key in done.stderr
    assert "huggingface" not in done.stderr


def test_allow_outside_quota_is_an_explicit_opt_out(workspace: Workspace, make_config) -> None:
    manager = Manager.open(workspace)
    config = make_config("m", paths={"checkpoints": "../outside"})
    with pytest.raises(ConfigError, match="outside the quota'd tree"):
        manager.add(str(config))
    workspace.settings_path.write_text("allow_outside_quota: true\n", encoding="utf-8")
    assert manager.add(str(config)).state is RunState.QUEUED


@pytest.mark.parametrize(("name", "ok"), [
    ("digit82/kobart-summarization", True),  # a hub id
    ("Bllossom/llama-3.2-Korean-Bllossom-3B", True),
    ("models/tiny", True),  # no models/ directory here: a hub id as far as anyone can tell
    ("/no/such/model", False),
    ("./kobart", False),
    ("kobart", False),  # neither a directory nor org/name
    ("a/b/c", False),
])
def test_model_name_is_a_model_directory_or_a_hub_id(workspace: Workspace, name: str, ok: bool) -> None:
    assert (check_model(workspace, name) == []) is ok


def test_a_directory_without_a_model_is_refused(workspace: Workspace) -> None:
    (workspace.root / "models" / "empty").mkdir(parents=True)
    assert "not a model" in str(check_model(workspace, "models/empty")[0])
    (workspace.root / "models" / "empty" / "config.json").write_text("{}", encoding="utf-8")
    assert check_model(workspace, "models/empty") == []


def test_gpu_ids_must_exist_on_this_host(workspace: Workspace, make_config) -> None:
    done = add_cli(workspace, str(make_config("m")), "--gpu", "7")  # this machine has no GPU at all
    assert done.returncode == 2 and "--gpu" in done.stderr and "GPU 7 not on this host" in done.stderr
    two = ScriptedGpuSource([[GpuDevice(i, "H100", 0, 80 * 2**30, 0, 30) for i in (0, 1)]])
    manager = Manager(workspace, Manager.open(workspace).store, two)
    with pytest.raises(ConfigError, match=r"GPU 7 not on this host \(devices: 0,1\)"):
        manager.add(str(make_config("m")), gpus="0,7")
    assert manager.add(str(make_config("m")), gpus="1").gpus == "1"


def test_infer_needs_a_complete_final_model_and_evaluate_needs_dev_predictions(workspace: Workspace,
                                                                              make_config) -> None:
    manager = Manager.open(workspace)
    config = make_config("m")
    with pytest.raises(ConfigError, match="no complete final_model"):
        manager.add(str(config), action="infer")
    model = artifacts.final_model_dir(workspace.checkpoints_dir, "m")
    model.mkdir(parents=True)  # a half-written model (no marker) is not complete either
    with pytest.raises(ConfigError, match="no complete final_model"):
        manager.add(str(config), action="infer")
    artifacts.write_final_model_meta(model, {})
    assert manager.add(str(config), action="infer").state is RunState.QUEUED
    with pytest.raises(ConfigError, match="no dev predictions"):
        manager.add(str(config), action="evaluate")


def test_data_broken_while_the_run_waits_fails_it_at_admission_before_the_first_step(
        workspace: Workspace, make_config) -> None:
    manager = Manager.open(workspace)
    run = manager.add(str(make_config("m")))
    (workspace.data_dir / "test.csv").write_text("fname,dialogue\ntest_0,a\ntest_0,b\n", encoding="utf-8")
    worker = Worker(workspace, poll_s=0.05, gpu_source=NoGpuSource())
    done = wait_until(lambda: (worker.tick(), manager.get(run.id))[1].state.is_final and manager.get(run.id),
                      what="the run to be refused")
    assert done.state is RunState.FAILED and done.failure_kind == "data" and done.failed_stage == "train"
    assert "duplicate fname 'test_0'" in done.failure_message and "preflight before train" in done.failure_message
    assert done.pid is None and not artifacts.read_events(workspace.run_dir(run.id) / artifacts.EVENTS_FILE)
    assert not worker.active  # nothing was started


def test_a_waiting_queue_does_not_re_read_unchanged_csvs(workspace: Workspace, make_config) -> None:
    cfg = load_config(make_config("m"))
    checks = DataChecks()
    assert preflight(workspace, cfg, ("train", "infer", "evaluate"), None, NoGpuSource(), checks) == []
    assert len(checks._seen) == 3
    (workspace.data_dir / "dev.csv").write_text("fname,dialogue,summary\n", encoding="utf-8")  # now empty
    problems = preflight(workspace, cfg, ("train",), None, NoGpuSource(), checks)
    assert [p.where for p in problems] == ["data/dev.csv"] and len(checks._seen) == 4  # named inside the workspace


def test_a_model_kind_its_checkpoint_contradicts_is_refused_at_add_naming_the_key(workspace: Workspace,
                                                                                  make_config) -> None:
    # The model's own config.json says encoder-decoder (BART); the config says causal: known before
    # the first step (it used to pass add and fail hours later as `unknown`).
    model = workspace.root / "models" / "kobart-like"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "bart", "architectures": ["BartForConditionalGeneration"], '
                                       '"is_encoder_decoder": true}', encoding="utf-8")
    config = make_config("m", model={"name_or_path": "models/kobart-like", "nickname": "m", "kind": "causal"})
    done = add_cli(workspace, str(config))
    assert done.returncode == 2, done.stdout
    assert "model.kind" in done.stderr and "not queued" in done.stderr
    assert Manager.open(workspace).runs() == []
