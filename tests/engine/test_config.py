"""The run config: typed sections, errors that name the file and key, --set overrides, hardware checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError, config_from_dict, load_config, parse_overrides
from engine.runtime import Capabilities, check_runtime

MINIMAL = {"model": {"name_or_path": "models/tiny", "nickname": "tiny", "kind": "causal"}}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_typo_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "model: {name_or_path: x, nickname: n, kind: causal}\ntrain: {lerning_rate: 1e-4}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "unknown key 'train.lerning_rate'" in str(err.value)
    assert "did you mean 'train.learning_rate'?" in str(err.value)


@pytest.mark.parametrize(("tree", "said"), [
    ("trian: {epochs: 1}", "unknown key 'trian'; did you mean 'train'?"),
    ("generation: {num_beam: 4}", "unknown key 'generation.num_beam'; did you mean 'generation.num_beams'?"),
    ("train: {xyz: 1}", "unknown key 'train.xyz' (known in train: epochs, "),  # nothing close: the section's keys
])
def test_an_unknown_key_gets_the_closest_known_one(tmp_path: Path, tree: str, said: str) -> None:
    path = write(tmp_path, "model: {name_or_path: x, nickname: n, kind: causal}\n" + tree + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert said in str(err.value)


def test_a_wrong_type_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "model: {name_or_path: x, nickname: n, kind: causal}\ntrain: {batch_size: eight}\n")
    with pytest.raises(ConfigError, match=r"train\.batch_size.*'eight'"):
        load_config(path)


def test_broken_yaml_says_where(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  name_or_path: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: invalid YAML"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"train": {"precision": "fp16"}, "model": {**MINIMAL["model"], "dtype": "bfloat16"}}, "train.precision"),
        ({"train": {"precision": "fp16"}, "model": {**MINIMAL["model"], "name_or_path": "paust/pko-t5-base"}}, "T5"),
        ({"quantization": {"load_in_4bit": True}}, "lora.enabled"),
        ({"quantization": {"load_in_4bit": True, "compute_dtype": "float16"}, "lora": {"enabled": True},
          "model": {**MINIMAL["model"], "dtype": "bfloat16"}}, "quantization.compute_dtype"),
        ({"train": {"eval_strategy": "steps"}}, "train.eval_steps"),
        # The speed levers say which key makes them valid.
        ({"train": {"fused_lora": True}, "lora": {"enabled": True, "dropout": 0.05}}, "lora.dropout: 0"),
        ({"train": {"fused_lora": True}}, "lora.enabled: true"),
        ({"train": {"compile": True}}, "train.pad_to_multiple_of"),
    ],
)
def test_impossible_combinations_are_refused(sections: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_dict({**MINIMAL, **sections}, "f.yaml")


def test_hardware_checks_name_the_key() -> None:
    cpu = Capabilities(cuda=False, bf16=False)
    qlora = config_from_dict({**MINIMAL, "lora": {"enabled": True}, "quantization": {"load_in_4bit": True, "compute_dtype": "float32"}})
    with pytest.raises(ConfigError, match="quantization.load_in_4bit"):
        check_runtime(qlora, cpu)
    bf16 = config_from_dict({**MINIMAL, "model": {**MINIMAL["model"], "dtype": "bfloat16"}, "train": {"precision": "bf16"}})
    with pytest.raises(ConfigError, match="no bf16 support"):
        check_runtime(bf16, Capabilities(cuda=True, bf16=False, device_name="Tesla T4"))
    check_runtime(bf16, cpu)  # bf16 on CPU is slow but valid: the demo's dtype case runs there


def test_set_overrides_by_dotted_path_with_yaml_values(tmp_path: Path) -> None:
    path = write(tmp_path, "model: {name_or_path: x, nickname: n, kind: seq2seq}\n")
    cfg = load_config(path, ["train.max_steps=5", "data.dir=/data/comp", "train.save_strategy=no", "lora.enabled=true"])
    assert (cfg.train.max_steps, cfg.data.dir, cfg.train.save_strategy, cfg.lora.enabled) == (5, "/data/comp", "no", True)


def test_yes_and_no_stay_strings_in_files(tmp_path: Path) -> None:
    # YAML 1.1 would read `no` as False and reject a valid strategy.
    path = write(tmp_path, "model: {name_or_path: x, nickname: n, kind: seq2seq}\ntrain: {save_strategy: no, eval_strategy: no}\n")
    assert load_config(path).train.save_strategy == "no"


def test_a_malformed_set_says_how() -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["train.max_steps"])


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = config_from_dict(MINIMAL)
    again = load_config(write(tmp_path, cfg.to_yaml()))
    assert again == cfg and again.hash() == cfg.hash()
