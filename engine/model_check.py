"""Provides the config mistakes that the model's own files show before any weights load: ``model.kind``
against the checkpoint's architecture, a causal prompt on a tokenizer without a chat template, LoRA
target modules the architecture does not have, and lengths past a BART's learned positions.

Torch-free (JSON files only): the manager's preflight runs it at ``add``, and ``python -m engine
train`` runs it before loading. It reads a local model directory (relative to the workspace, as the
engine resolves it) or the model's snapshot in the Hugging Face hub cache; a model that is not on
this machine yet has nothing to say: unknown is not a mistake. Each table below is compared with the
installed transformers by tests/engine/test_model_check.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import RunConfig

# model_type values whose checkpoints are encoder-decoder models (AutoModelForSeq2SeqLM).
ENCODER_DECODER_TYPES = frozenset({
    "bart", "mbart", "t5", "mt5", "umt5", "longt5", "pegasus", "pegasus_x", "marian", "led", "m2m_100",
    "blenderbot", "blenderbot-small", "fsmt", "plbart", "prophetnet", "bigbird_pegasus", "mvp", "nllb-moe",
    "switch_transformers",
})

# model_type values of decoder-only language models, which AutoModelForSeq2SeqLM refuses.
DECODER_ONLY_TYPES = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "phi", "phi3",
    "gpt2", "gpt_neox", "gptj", "falcon", "olmo", "olmo2", "exaone4", "granite", "stablelm", "starcoder2",
    "cohere", "opt", "bloom",
})

# The module names of an architecture (the last part of every ``named_modules()`` name): a LoRA
# target that is none of them matches nothing. The first set of each pair is the linear layers
# (what a message suggests); the second the other modules, which PEFT would also match by name.
_DECODER_LINEAR = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"})
_DECODER_OTHER = frozenset({
    "model", "layers", "self_attn", "mlp", "act_fn", "embed_tokens", "rotary_emb", "norm", "input_layernorm",
    "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm", "q_norm", "k_norm",
})
_BART_LINEAR = frozenset({"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "lm_head"})
_BART_OTHER = frozenset({
    "model", "shared", "encoder", "decoder", "layers", "embed_tokens", "embed_positions", "layernorm_embedding",
    "self_attn", "self_attn_layer_norm", "encoder_attn", "encoder_attn_layer_norm", "activation_fn",
    "final_layer_norm", "layer_norm",
})
# T5 v1.0 has wi, v1.1 and mT5 (gated) wi_0 and wi_1: a config can be either, so all three count.
_T5_LINEAR = frozenset({"q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo", "lm_head"})
_T5_OTHER = frozenset({
    "shared", "encoder", "decoder", "block", "layer", "SelfAttention", "EncDecAttention", "DenseReluDense", "act",
    "dropout", "embed_tokens", "relative_attention_bias", "layer_norm", "final_layer_norm",
})
MODULE_NAMES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "exaone4"), (_DECODER_LINEAR, _DECODER_OTHER)),
    **dict.fromkeys(("bart", "mbart"), (_BART_LINEAR, _BART_OTHER)),
    **dict.fromkeys(("t5", "mt5"), (_T5_LINEAR, _T5_OTHER)),
}

# Learned absolute positions (an embedding table of max_position_embeddings rows): a longer input
# fails with "index out of range in self".
LEARNED_POSITION_TYPES = frozenset({"bart", "mbart"})

CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


@dataclass(frozen=True)
class ConfigMistake:
    """A config key that cannot work with this model, what is wrong, and the change that fixes it."""

    key: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}; {self.fix}"


@dataclass(frozen=True)
class ModelFiles:
    """Where a model's files are on this machine.

    A hub-cache snapshot holds only the files downloaded so far: a file missing there is known to be
    missing from the repo only when the hub said so (``.no_exist/<commit>/<file>``, recorded by
    ``huggingface_hub`` when a loader asked for it). A local directory is all there is.
    """

    path: Path
    cached: bool = False
    absent: frozenset[str] = frozenset()

    def read_json(self, name: str) -> dict[str, Any] | None:
        """The JSON object in ``name``, or None when it is not here or not an object."""
        try:
            data = json.loads((self.path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def lacks(self, name: str) -> bool:
        """Whether the model certainly has no file ``name`` (not merely a file not downloaded yet)."""
        if (self.path / name).exists():
            return False
        return not self.cached or name in self.absent


def hub_cache_dir(environ: Mapping[str, str]) -> Path:
    """The hub cache as ``huggingface_hub`` finds it: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    explicit = environ.get("HF_HUB_CACHE") or environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = environ.get("HF_HOME") or str(Path(environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface")
    return Path(home).expanduser() / "hub"


def locate_model(name_or_path: str, workspace_root: Path | str | None = None,
                 environ: Mapping[str, str] | None = None) -> ModelFiles | None:
    """The model's files on this machine: a local directory, else its hub-cache snapshot, else None.

    Args:
        name_or_path: ``model.name_or_path``: a directory (relative to the workspace) or a hub id.
        workspace_root: where relative paths start (the engine runs in the workspace); default the CWD.
        environ: where HF_HUB_CACHE / HF_HOME are read; default ``os.environ``.
    """
    environ = os.environ if environ is None else environ
    local = Path(name_or_path).expanduser()
    if not local.is_absolute():
        local = Path(workspace_root or Path.cwd()) / local
    if local.is_dir():
        return ModelFiles(local)
    try:
        return _cached_snapshot(hub_cache_dir(environ) / ("models--" + name_or_path.replace("/", "--")))
    except OSError:  # an unreadable cache (another user's HF_HOME) or a snapshot removed while we looked
        return None


def _cached_snapshot(repo: Path) -> ModelFiles | None:
    """The snapshot ``refs/main`` points at in a hub-cache repo folder (else the newest one), or None."""
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
    else:
        found = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
        commit = found[-1].name if found else ""
    if not commit or not (snapshots / commit).is_dir():
        return None
    no_exist = repo / ".no_exist" / commit
    absent = frozenset(p.name for p in no_exist.iterdir()) if no_exist.is_dir() else frozenset()
    return ModelFiles(snapshots / commit, cached=True, absent=absent)


def model_mistakes(cfg: RunConfig, workspace_root: Path | str | None = None,
                   environ: Mapping[str, str] | None = None) -> list[ConfigMistake]:
    """The config mistakes the model's files show (none when the model is not on this machine yet).

    Args:
        cfg: the run config.
        workspace_root: the workspace (relative ``model.name_or_path`` starts there); default the CWD.
        environ: the environment that names the hub cache; default ``os.environ``.

    Returns:
        One :class:`ConfigMistake` per key to change, in the order they are best fixed.
    """
    files = locate_model(cfg.model.name_or_path, workspace_root, environ)
    if files is None:
        return []
    config = files.read_json("config.json")
    if config is None:  # an adapter directory, or a snapshot without it yet: nothing certain to say
        return []
    mistakes = kind_mistakes(cfg, config)
    # Judge the prompt by the kind the model will be trained as once model.kind is fixed: all at one add.
    trained_as = cfg.model.kind if not mistakes else {"causal": "seq2seq", "seq2seq": "causal"}[cfg.model.kind]
    if trained_as == "causal":
        mistakes += chat_template_mistakes(cfg, files)
    mistakes += lora_target_mistakes(cfg, config)
    mistakes += position_mistakes(cfg, config)
    return mistakes


def _describe(config: Mapping[str, Any]) -> str:
    arch = ", ".join(a for a in config.get("architectures") or [] if isinstance(a, str))
    model_type = config.get("model_type")
    return " ".join(filter(None, [arch, f"(model_type {model_type})" if model_type else ""])) or "this model"


def kind_mistakes(cfg: RunConfig, config: Mapping[str, Any]) -> list[ConfigMistake]:
    """``model.kind`` against what config.json says the checkpoint is."""
    model_type = config.get("model_type")
    architectures = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    # A BartForCausalLM checkpoint says is_encoder_decoder: false; older BART/T5 configs may not say it at all.
    encoder_decoder = config.get("is_encoder_decoder", model_type in ENCODER_DECODER_TYPES) is True
    decoder_only = not encoder_decoder and (
        model_type in DECODER_ONLY_TYPES or (bool(architectures) and all(a.endswith("ForCausalLM") for a in architectures))
    )
    name = cfg.model.name_or_path
    if cfg.model.kind == "causal" and encoder_decoder:
        return [ConfigMistake(
            "model.kind",
            f"causal, but {name} is an encoder-decoder model: {_describe(config)}; AutoModelForCausalLM would "
            "load its decoder alone or refuse it",
            "set model.kind: seq2seq",
        )]
    if cfg.model.kind == "seq2seq" and decoder_only:
        return [ConfigMistake(
            "model.kind",
            f"seq2seq, but {name} is a decoder-only model: {_describe(config)}; AutoModelForSeq2SeqLM refuses it "
            "('Unrecognized configuration class')",
            "set model.kind: causal",
        )]
    return []


def chat_template_mistakes(cfg: RunConfig, files: ModelFiles) -> list[ConfigMistake]:
    """A causal run renders every prompt with the tokenizer's chat template (engine/prompts.py: causal_prompt)."""
    tokenizer_config = files.read_json("tokenizer_config.json")
    if tokenizer_config is None or tokenizer_config.get("chat_template"):
        return []
    if not all(files.lacks(name) for name in CHAT_TEMPLATE_FILES):
        return []
    return [ConfigMistake(
        "model.name_or_path",
        f"{cfg.model.name_or_path} has no chat template (none in tokenizer_config.json, no chat_template.jinja), "
        "and model.kind: causal renders every prompt with it",
        "use the model's instruct/chat variant, or add its chat template as chat_template.jinja next to "
        "tokenizer_config.json",
    )]


def lora_target_mistakes(cfg: RunConfig, config: Mapping[str, Any]) -> list[ConfigMistake]:
    """LoRA target names that match no module of a known architecture (PEFT matches by the name's last parts)."""
    targets = cfg.lora.target_modules
    names = MODULE_NAMES.get(str(config.get("model_type")))
    if not cfg.lora.enabled or not isinstance(targets, list) or names is None:
        return []
    linear, other = names
    # A dotted target ('self_attn.q_proj') matches a longer suffix, a number a layer index: left to PEFT.
    unknown = [t for t in targets if "." not in t and not t.isdigit() and t not in linear | other]
    if not unknown:
        return []
    return [ConfigMistake(
        "lora.target_modules",
        f"{', '.join(unknown)}: no module of a {config.get('model_type')} model has that name",
        f"use its linear layers ({', '.join(sorted(linear))}) or all-linear",
    )]


def position_mistakes(cfg: RunConfig, config: Mapping[str, Any]) -> list[ConfigMistake]:
    """Token lengths past the learned position table of a BART-type model."""
    limit = config.get("max_position_embeddings")
    if config.get("model_type") not in LEARNED_POSITION_TYPES or not isinstance(limit, int):
        return []
    out = []
    for key, value in (("prompt.max_source_length", cfg.prompt.max_source_length),
                       ("prompt.max_target_length", cfg.prompt.max_target_length)):
        if value > limit:
            out.append(ConfigMistake(
                key,
                f"{value} tokens, but {cfg.model.name_or_path} has {limit} learned positions "
                "(max_position_embeddings); a longer text fails with 'index out of range in self'",
                f"set {key}: {limit} or less",
            ))
    return out
