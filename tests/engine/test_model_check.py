"""engine/model_check.py: config mistakes the model's files show (kind vs architecture, a causal prompt
without a chat template, LoRA targets, BART positions) are found without torch, from a local directory
or the hub cache; the same mistakes met at run time are classified `config`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import config_from_dict
from engine.contract import ExitCode, FailureKind
from engine.failures import classify_exception
from engine.model_check import (
    DECODER_ONLY_TYPES,
    ENCODER_DECODER_TYPES,
    MODULE_NAMES,
    ConfigMistake,
    locate_model,
    model_mistakes,
)

from support import REPO, engine_cli, read_event_lines, write_run_config


def cfg(path: str | Path, kind: str, **sections: dict):
    return config_from_dict({"model": {"name_or_path": str(path), "nickname": "m", "kind": kind}, **sections})


def model_files(source: Path, target: Path, drop: tuple[str, ...] = ()) -> Path:
    """A copy of a tiny model's JSON and template files (the weights are not needed to judge it)."""
    target.mkdir(parents=True)
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json", "chat_template.jinja"):
        if (source / name).exists() and name not in drop:
            shutil.copy(source / name, target / name)
    return target


def edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_importing_it_leaves_torch_and_transformers_out() -> None:
    code = ("import sys, engine.model_check; "
            "assert not {'torch', 'transformers'} & set(sys.modules), sorted({'torch', 'transformers'} & set(sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_right_kinds_pass(tiny_bart_dir: Path, tiny_llama_dir: Path) -> None:
    assert model_mistakes(cfg(tiny_bart_dir, "seq2seq")) == []
    lora = {"enabled": True, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    assert model_mistakes(cfg(tiny_llama_dir, "causal", lora=lora)) == []


def test_causal_on_a_bart_is_refused_with_the_key_and_the_fix(tiny_bart_dir: Path) -> None:
    (mistake,) = model_mistakes(cfg(tiny_bart_dir, "causal"))  # no chat-template mistake: it will be seq2seq
    assert mistake.key == "model.kind" and mistake.fix == "set model.kind: seq2seq"
    assert "encoder-decoder model: BartForConditionalGeneration (model_type bart)" in mistake.message
    assert str(mistake).startswith("model.kind: causal, but ") and str(mistake).endswith("; set model.kind: seq2seq")


def test_seq2seq_on_a_llama_is_refused_and_a_missing_template_said_at_once(tiny_llama_dir: Path, tmp_path: Path) -> None:
    (mistake,) = model_mistakes(cfg(tiny_llama_dir, "seq2seq"))
    assert mistake == ConfigMistake(
        "model.kind",
        f"seq2seq, but {tiny_llama_dir} is a decoder-only model: LlamaForCausalLM (model_type llama); "
        "AutoModelForSeq2SeqLM refuses it ('Unrecognized configuration class')",
        "set model.kind: causal",
    )
    base = model_files(tiny_llama_dir, tmp_path / "base", drop=("chat_template.jinja",))
    assert [m.key for m in model_mistakes(cfg(base, "seq2seq"))] == ["model.kind", "model.name_or_path"]


def test_a_causal_prompt_needs_a_chat_template(tiny_llama_dir: Path, tmp_path: Path) -> None:
    base = model_files(tiny_llama_dir, tmp_path / "base", drop=("chat_template.jinja",))
    (mistake,) = model_mistakes(cfg(base, "causal"))
    assert mistake.key == "model.name_or_path" and "has no chat template" in mistake.message
    assert "instruct/chat variant" in mistake.fix and "chat_template.jinja" in mistake.fix
    # The template inside tokenizer_config.json (the older place) is a template too.
    edit_json(base / "tokenizer_config.json", chat_template=(tiny_llama_dir / "chat_template.jinja").read_text())
    assert model_mistakes(cfg(base, "causal")) == []


def test_lora_targets_that_name_no_module(tiny_llama_dir: Path, tiny_bart_dir: Path) -> None:
    def lora(*targets: str) -> dict:
        return {"lora": {"enabled": True, "target_modules": list(targets)}}

    (mistake,) = model_mistakes(cfg(tiny_llama_dir, "causal", **lora("q_proj", "qkv_proj", "out_proj", "self_attn.q_proj")))
    assert mistake.key == "lora.target_modules"
    assert mistake.message == "qkv_proj, out_proj: no module of a llama model has that name"
    assert "use its linear layers (down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj)" in mistake.fix
    assert model_mistakes(cfg(tiny_bart_dir, "seq2seq", **lora("q_proj", "v_proj", "out_proj", "fc1"))) == []
    assert [m.key for m in model_mistakes(cfg(tiny_bart_dir, "seq2seq", **lora("o_proj")))] == ["lora.target_modules"]
    assert model_mistakes(cfg(tiny_llama_dir, "causal", lora={"enabled": True, "target_modules": "all-linear"})) == []


def test_lengths_past_a_barts_learned_positions(tiny_bart_dir: Path, tmp_path: Path) -> None:
    bart = model_files(tiny_bart_dir, tmp_path / "bart")
    edit_json(bart / "config.json", max_position_embeddings=512)
    (mistake,) = model_mistakes(cfg(bart, "seq2seq", prompt={"max_source_length": 1024}))
    assert mistake.key == "prompt.max_source_length" and mistake.fix == "set prompt.max_source_length: 512 or less"
    assert "index out of range in self" in mistake.message
    assert model_mistakes(cfg(bart, "seq2seq", prompt={"max_source_length": 512})) == []


def test_a_model_not_on_this_machine_says_nothing(tmp_path: Path) -> None:
    empty = {"HF_HUB_CACHE": str(tmp_path / "hub")}
    assert model_mistakes(cfg("org/not-downloaded", "causal"), tmp_path, empty) == []
    assert model_mistakes(cfg("models/missing", "causal"), tmp_path, empty) == []
    adapter = tmp_path / "final_model"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert model_mistakes(cfg(adapter, "seq2seq"), tmp_path, empty) == []


def test_a_relative_path_starts_at_the_workspace(tiny_bart_dir: Path, tmp_path: Path) -> None:
    model_files(tiny_bart_dir, tmp_path / "ws" / "models" / "bart")
    assert [m.key for m in model_mistakes(cfg("models/bart", "causal"), tmp_path / "ws", {})] == ["model.kind"]


def hub_snapshot(cache: Path, repo_id: str, source: Path, drop: tuple[str, ...] = ()) -> Path:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("c0ffee")
    model_files(source, repo / "snapshots" / "c0ffee", drop)
    return repo


def test_the_hub_cache_is_read_where_huggingface_hub_keeps_it(tiny_bart_dir: Path, tmp_path: Path) -> None:
    config = cfg("digit82/kobart-summarization", "causal")
    for environ, cache in (({"HF_HUB_CACHE": str(tmp_path / "a")}, tmp_path / "a"),
                           ({"HF_HOME": str(tmp_path / "b")}, tmp_path / "b" / "hub"),
                           ({"XDG_CACHE_HOME": str(tmp_path / "c")}, tmp_path / "c" / "huggingface" / "hub")):
        assert model_mistakes(config, tmp_path, environ) == []  # not downloaded yet
        hub_snapshot(cache, config.model.name_or_path, tiny_bart_dir)
        found = locate_model(config.model.name_or_path, tmp_path, environ)
        assert found is not None and found.cached and found.path == cache / "models--digit82--kobart-summarization" / "snapshots" / "c0ffee"
        assert [m.key for m in model_mistakes(config, tmp_path, environ)] == ["model.kind"]


def test_a_template_not_downloaded_yet_is_not_a_missing_one(tiny_llama_dir: Path, tmp_path: Path) -> None:
    environ = {"HF_HUB_CACHE": str(tmp_path / "hub")}
    repo = hub_snapshot(tmp_path / "hub", "org/base-llama", tiny_llama_dir, drop=("chat_template.jinja",))
    assert model_mistakes(cfg("org/base-llama", "causal"), tmp_path, environ) == []
    # huggingface_hub records a file the repo does not have once a loader asked for it.
    (repo / ".no_exist" / "c0ffee").mkdir(parents=True)
    (repo / ".no_exist" / "c0ffee" / "chat_template.jinja").touch()
    (repo / ".no_exist" / "c0ffee" / "chat_template.json").touch()
    assert [m.key for m in model_mistakes(cfg("org/base-llama", "causal"), tmp_path, environ)] == ["model.name_or_path"]


def test_train_refuses_before_loading_the_model(tiny_bart_dir: Path, tmp_path: Path) -> None:
    write_run_config(tmp_path, {"model": {"name_or_path": str(tiny_bart_dir), "nickname": "m", "kind": "causal"}})
    done = engine_cli("train", "--config", "config.yaml", "--run-dir", "runs/1", cwd=tmp_path)
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr[-2000:]
    (failed,) = read_event_lines(tmp_path / "runs" / "1" / "events.jsonl")
    assert failed["event"] == "failed" and failed["kind"] == FailureKind.CONFIG
    assert failed["message"].startswith("config.yaml: model.kind: causal, but ")
    assert failed["message"].endswith("set model.kind: seq2seq")


def test_the_same_mistakes_met_at_run_time_are_config_failures(tiny_bart_dir: Path, tiny_llama_dir: Path) -> None:
    """A model downloaded only by the stage itself is judged by transformers' and PEFT's errors instead."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from engine.data import Sample
    from engine.prompts import causal_prompt

    errors = []
    with pytest.raises(ValueError, match="Unrecognized configuration class") as err:
        AutoModelForSeq2SeqLM.from_pretrained(tiny_llama_dir)
    errors.append(err.value)
    with pytest.raises(ValueError, match="no chat template") as err:
        causal_prompt(AutoTokenizer.from_pretrained(tiny_bart_dir), Sample("train_0", "#Person1#: 안녕하세요.", "인사한다."),
                      cfg(tiny_bart_dir, "causal").prompt, with_topic=False)
    errors.append(err.value)
    with pytest.raises(ValueError, match="not found in the base model") as err:
        get_peft_model(AutoModelForSeq2SeqLM.from_pretrained(tiny_bart_dir), LoraConfig(target_modules=["qkv_proj"]))
    errors.append(err.value)
    assert [classify_exception(e).kind for e in errors] == [FailureKind.CONFIG] * 3


def test_the_tables_agree_with_transformers() -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    assert ENCODER_DECODER_TYPES <= set(MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)
    assert DECODER_ONLY_TYPES <= set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    assert not DECODER_ONLY_TYPES & set(MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)

    decoder = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                   num_key_value_heads=1, head_dim=16)
    bart = dict(vocab_size=64, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64)
    t5 = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2)
    # T5 v1.0 feeds forward through wi, v1.1 and mT5 through wi_0 and wi_1: each type can be either.
    t5s = [{**t5, "feed_forward_proj": "relu"}, {**t5, "feed_forward_proj": "gated-gelu"}]
    variants = {"bart": [bart], "mbart": [bart], "t5": t5s, "mt5": t5s}
    for model_type, (linear, other) in MODULE_NAMES.items():
        auto = AutoModelForSeq2SeqLM if model_type in ENCODER_DECODER_TYPES else AutoModelForCausalLM
        seen_linear: set[str] = set()
        for kwargs in variants.get(model_type, [decoder]):
            with torch.device("meta"):
                model = auto.from_config(AutoConfig.for_model(model_type, **kwargs))
            modules = dict(model.named_modules())
            names = {name.rsplit(".", 1)[-1] for name in modules if name and not name.rsplit(".", 1)[-1].isdigit()}
            seen_linear |= {name.rsplit(".", 1)[-1] for name, m in modules.items() if isinstance(m, torch.nn.Linear)}
            assert names <= linear | other, (model_type, names - linear - other)
        assert seen_linear == linear, (model_type, seen_linear ^ linear)
