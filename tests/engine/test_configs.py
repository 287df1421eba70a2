"""Tests for configs/: every file loads, says how to launch itself, and base.yaml documents every key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from engine.config import ConfigError, RunConfig, load_config
from engine.runtime import Capabilities, check_runtime

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
DEMO = [p for p in CONFIGS if p.parent.name == "demo"]
MODELS = [p for p in CONFIGS if p.parent.name == "configs" and p.name != "base.yaml"]


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def test_the_expected_files_exist():
    names = {_rel(p) for p in CONFIGS}
    assert {"configs/base.yaml", "configs/kobart.yaml", "configs/kot5.yaml", "configs/llama-3.2-korean-3b-bf16.yaml",
            "configs/qwen3-4b.yaml", "configs/demo/bart-tiny.yaml", "configs/demo/llama-tiny-lora.yaml",
            "configs/demo/llama-tiny-lora-bf16.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=_rel)
def test_every_config_loads_and_says_how_to_launch_itself(path):
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    if path.name == "base.yaml":
        assert "dialsum-tui add configs/" in text and "python -m engine train --config" in text
    else:
        assert f"dialsum-tui add {_rel(path)}" in text
        assert f"python -m engine train --config {_rel(path)} --run-dir runs/" in text


def _leaves(model: type, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.update(_leaves(annotation, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = info.get_default(call_default_factory=True)
    return out


def _required(model: type, prefix: str = "") -> dict[str, bool]:
    out: dict[str, bool] = {}
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out.update(_required(info.annotation, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = info.is_required()
    return out


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_base_documents_every_key_with_its_default_and_a_comment():
    path = REPO / "configs" / "base.yaml"
    written = _flatten(yaml.safe_load(path.read_text(encoding="utf-8")))
    schema = _leaves(RunConfig)
    assert set(written) == set(schema), set(written) ^ set(schema)
    required = {key for key, info in _required(RunConfig).items() if info}
    assert required == {"model.name_or_path", "model.nickname", "model.kind"}
    for key, default in schema.items():
        if key not in required:
            assert written[key] == default, (key, written[key], default)
    # Every leaf line carries a comment saying what the key trades off.
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if line.startswith("  ") and stripped and not stripped.startswith("#"):
            assert " # " in line, f"configs/base.yaml: no comment on {stripped!r}"


@pytest.mark.parametrize("path", DEMO, ids=_rel)
def test_demo_configs_run_on_a_cpu_without_downloads(path):
    cfg = load_config(path)
    assert cfg.train.device == "cpu"
    assert cfg.model.name_or_path.startswith("models/") and cfg.data.dir == "data"
    assert cfg.train.max_steps > 0 and cfg.data.max_eval_samples
    check_runtime(cfg, Capabilities(cuda=False, bf16=False), source=_rel(path))


@pytest.mark.parametrize("path", MODELS, ids=_rel)
def test_model_configs_use_hub_ids_and_run_on_a_bf16_gpu(path):
    cfg = load_config(path)
    assert "/" in cfg.model.name_or_path and not Path(cfg.model.name_or_path).exists()
    check_runtime(cfg, Capabilities(cuda=True, bf16=True, device_name="RTX 3090"), source=_rel(path))
    if cfg.quantization.load_in_4bit:
        with pytest.raises(ConfigError, match="4-bit"):
            check_runtime(cfg, Capabilities(cuda=False, bf16=False), source=_rel(path))


def test_qwen_differs_from_llama_only_in_model_and_batch_size():
    llama = load_config(REPO / "configs" / "llama-3.2-korean-3b-bf16.yaml").model_dump()
    qwen = load_config(REPO / "configs" / "qwen3-4b.yaml").model_dump()
    differing = {f"{section}.{key}" for section in llama for key in llama[section]
                 if llama[section][key] != qwen[section][key]}
    assert differing == {"model.name_or_path", "model.nickname", "train.batch_size"}
    assert qwen["train"]["batch_size"] < llama["train"]["batch_size"]


def test_t5_config_avoids_fp16():
    cfg = load_config(REPO / "configs" / "kot5.yaml")
    assert cfg.is_t5 and cfg.train.precision != "fp16" and cfg.model.dtype != "float16"
