"""train.report_to: the trackers transformers supports pass through to the Trainer, names and installs are
checked when the config is loaded, and the trackers' local files land in runs/<id>/trackers/<name>/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import engine.config
from engine.config import TRACKERS, ConfigError, config_from_dict, load_config
from engine.contract import ExitCode, FailureKind
from engine.recipes import TRACKER_DIR_VARIABLES, tracker_environment, training_arguments, wandb_key_known

from support import REPO, read_event_lines, write_run_config

MODEL = {"name_or_path": "models/tiny", "nickname": "tiny", "kind": "seq2seq"}


def with_trackers(report_to: object) -> dict:
    return {"model": MODEL, "train": {"report_to": report_to}}


def test_the_known_trackers_are_transformers_own() -> None:
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    # azure_ml and flyte log to their platforms' runtimes; kubeflow is added by transformers itself.
    assert set(TRACKERS) | {"azure_ml", "flyte", "kubeflow"} == set(INTEGRATION_TO_CALLBACK)
    assert set(TRACKER_DIR_VARIABLES) <= set(TRACKERS)


@pytest.mark.parametrize(("report_to", "said"), [
    (["tensorbord"], "unknown tracker 'tensorbord'; did you mean 'tensorboard'? (known: none, tensorboard, wandb, trackio"),
    (["aim"], "unknown tracker 'aim' (known: none, tensorboard"),
    ("all", "'all' logs to whatever happens to be installed; name the trackers"),
    (["none", "wandb"], "'none' cannot be listed with trackers"),
])
def test_an_unknown_tracker_is_refused_with_the_known_ones(report_to: object, said: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(with_trackers(report_to), "run.yaml")
    assert f"run.yaml: train.report_to: {said}" in str(err.value)


@pytest.mark.parametrize(("report_to", "kept"), [
    ("none", ["none"]), ([], ["none"]), ("tensorboard", ["tensorboard"]),
    (["wandb", "tensorboard", "wandb"], ["wandb", "tensorboard"]),
])
def test_one_name_or_a_list(report_to: object, kept: list[str]) -> None:
    assert config_from_dict(with_trackers(report_to)).train.report_to == kept


def test_a_tracker_that_is_not_installed_is_refused_with_its_pip_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.config, "_importable", lambda module: module == "mlflow")
    path = write_run_config(tmp_path, with_trackers(["tensorboard", "dagshub", "mlflow"]))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{path}: train.report_to: ") for line in lines)
    assert f"tensorboard is not installed in this environment; install it with `{sys.executable} -m pip install tensorboard`" in lines[0]
    assert "pip install dagshub`" in lines[1]  # mlflow, its other half, is there
    # A run's snapshot stays readable: the install check is load_config's, not the schema's.
    assert config_from_dict(with_trackers(["tensorboard"])).train.report_to == ["tensorboard"]


def test_report_to_and_the_run_name_pass_through_to_the_trainer(tmp_path: Path) -> None:
    from transformers import Seq2SeqTrainingArguments

    output_dir = tmp_path / "checkpoints" / "kobart-r12" / "trainer"
    cfg = config_from_dict(with_trackers(["tensorboard", "wandb"]))
    args = Seq2SeqTrainingArguments(**training_arguments(cfg, output_dir, "cpu", with_eval=False))
    assert args.report_to == ["tensorboard", "wandb"]
    assert args.run_name == "kobart-r12"  # the trackers name the run as the manager does
    quiet = Seq2SeqTrainingArguments(**training_arguments(config_from_dict(with_trackers("none")), output_dir, "cpu", False))
    assert quiet.report_to == []


def test_tracker_files_go_into_the_run_dir_unless_the_user_said_where(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "7"
    env, notes = tracker_environment(["tensorboard", "trackio", "swanlab", "mlflow", "comet_ml"], run_dir,
                                     {"HOME": str(tmp_path)})
    trackers = (run_dir / "trackers").resolve()
    assert env == {
        "TENSORBOARD_LOGGING_DIR": str(trackers / "tensorboard"),
        "TRACKIO_DIR": str(trackers / "trackio"),
        "SWANLAB_LOG_DIR": str(trackers / "swanlab"),
        "MLFLOW_TRACKING_URI": (trackers / "mlflow").as_uri(),
    }
    assert notes == [] and all((trackers / name).is_dir() for name in ("tensorboard", "trackio", "swanlab", "mlflow"))
    # A team's own server or directory wins.
    env, _ = tracker_environment(["mlflow", "tensorboard"], run_dir, {"MLFLOW_TRACKING_URI": "http://mlflow.lab:5000"})
    assert set(env) == {"TENSORBOARD_LOGGING_DIR"}


def test_wandb_logs_offline_into_the_run_dir_without_an_api_key(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "7"
    env, notes = tracker_environment(["wandb"], run_dir, {"HOME": str(tmp_path)})
    wandb_dir = str((run_dir / "trackers" / "wandb").resolve())
    assert env == {"WANDB_DIR": wandb_dir, "WANDB_MODE": "offline"}
    assert len(notes) == 1 and f"wandb sync {wandb_dir}/wandb/offline-run-*" in notes[0] and "WANDB_MODE=online" in notes[0]
    # With a key (variable or `wandb login`'s netrc entry) or a mode of the user's, wandb is left to it.
    assert "WANDB_MODE" not in tracker_environment(["wandb"], run_dir, {"WANDB_API_KEY": "k"})[0]
    assert "WANDB_MODE" not in tracker_environment(["wandb"], run_dir, {"HOME": str(tmp_path), "WANDB_MODE": "disabled"})[0]
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    assert wandb_key_known({"HOME": str(tmp_path)})
    assert not wandb_key_known({"HOME": str(tmp_path), "WANDB_BASE_URL": "https://wandb.lab.example"})
    assert "WANDB_MODE" not in tracker_environment(["wandb"], run_dir, {"HOME": str(tmp_path)})[0]


def engine_train(workspace: Path, run_dir: Path) -> subprocess.CompletedProcess:
    """``python -m engine train`` with this process's PYTHONPATH kept (where a tracker may be installed)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env = {k: v for k, v in env.items() if k not in TRACKER_DIR_VARIABLES.values()}
    return subprocess.run([sys.executable, "-m", "engine", "train", "--config", "config.yaml", "--run-dir", str(run_dir)],
                          cwd=workspace, env=env, capture_output=True, text=True, timeout=600)


def tiny_run(tmp_path: Path, data_dir: Path, model_dir: Path, report_to: list[str]) -> Path:
    workspace = tmp_path / "ws"
    shutil.copytree(data_dir, workspace / "data")
    write_run_config(workspace, {
        "model": {"name_or_path": str(model_dir), "nickname": "tiny-bart", "kind": "seq2seq"},
        "data": {"dir": "data", "max_train_samples": 32},
        "prompt": {"max_source_length": 128, "max_target_length": 32},
        "train": {"max_steps": 4, "batch_size": 8, "logging_steps": 1, "eval_strategy": "no", "save_strategy": "no",
                  "device": "cpu", "report_to": report_to},
    })
    return workspace


def test_a_tracker_missing_at_train_time_fails_the_stage_as_config(tmp_path: Path, synth_data_dir: Path) -> None:
    if engine.config._importable("clearml"):
        pytest.skip("clearml is installed here")
    workspace = tiny_run(tmp_path, synth_data_dir, tmp_path / "no-model", ["clearml"])
    done = engine_train(workspace, workspace / "runs" / "1")
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr[-2000:]
    failed = read_event_lines(workspace / "runs" / "1" / "events.jsonl")[-1]
    assert failed["event"] == "failed" and failed["kind"] == FailureKind.CONFIG
    assert "train.report_to: clearml is not installed" in failed["message"] and "pip install clearml" in failed["message"]


@pytest.mark.skipif(not engine.config._importable("tensorboard") and not engine.config._importable("tensorboardX"),
                    reason="neither tensorboard nor tensorboardX is installed")
def test_tensorboard_event_files_land_in_the_run_dir(tmp_path: Path, synth_data_dir: Path, tiny_bart_dir: Path) -> None:
    workspace = tiny_run(tmp_path, synth_data_dir, tiny_bart_dir, ["tensorboard"])
    run_dir = workspace / "runs" / "1"
    done = engine_train(workspace, run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    files = list((run_dir / "trackers" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1 and files[0].stat().st_size > 0
    # Not transformers' default (output_dir/runs/): nothing of the tracker outside the run dir.
    assert not (workspace / "checkpoints" / "tiny-bart" / "trainer" / "runs").exists()
    logged = [e for e in read_event_lines(run_dir / "events.jsonl") if e["event"] == "train_log"]
    assert len(logged) == 4
    # The event file holds the losses the run's events carry.
    scalars = read_scalars(files[0], "train/loss")
    assert [step for step, _ in scalars] == [1, 2, 3, 4]
    assert [value for _, value in scalars] == pytest.approx([e["loss"] for e in logged], rel=1e-4)


def read_scalars(path: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of ``tag`` in a TensorBoard event file: TFRecords of the Event protobuf tensorboard(X) ships."""
    import struct

    try:
        from tensorboard.compat.proto.event_pb2 import Event
    except ImportError:
        from tensorboardX.proto.event_pb2 import Event

    out, data, offset = [], path.read_bytes(), 0
    while offset < len(data):  # a record: its length (8 bytes), the length's crc (4), the record, its crc (4)
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        event = Event.FromString(data[offset + 12:offset + 12 + length])
        offset += 12 + length + 4
        out += [(event.step, value.simple_value) for value in event.summary.value if value.tag == tag]
    return out
