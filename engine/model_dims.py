"""Provides a model's dimensions from its ``config.json`` alone (local directory or the Hugging Face
hub cache) and the inventory of its parameters: linear layers, embeddings, norms.

Torch-free (stdlib only): the manager reads it to predict GPU memory before anything starts
(:mod:`engine.footprint`). A model whose ``config.json`` is nowhere on disk is *not found*, with the
places looked at; nothing is downloaded and nothing is guessed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Family = Literal["decoder", "bart", "t5"]

# Decoder-only model types whose MLP is gated (gate_proj, up_proj, down_proj: SwiGLU/GeGLU).
GATED_DECODERS = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "exaone", "olmo2"}
BART_TYPES = {"bart", "mbart"}
T5_TYPES = {"t5", "mt5", "umt5", "longt5"}


@dataclass(frozen=True)
class Linear:
    """One linear layer of every layer in a stack: ``name`` is the leaf name LoRA's target_modules match."""

    stack: Literal["encoder", "decoder"]
    name: str
    d_in: int
    d_out: int
    group: str  # the input it reads: "attn_in", "o", "mlp_in", "down"; cross-attention: "cross_q", "cross_kv", "cross_o"
    bias: bool = False


@dataclass(frozen=True)
class ModelDims:
    """The shape facts the memory model needs, read from ``config.json``."""

    model_type: str
    family: Family
    hidden: int
    layers: int  # decoder layers (all layers of a decoder-only model)
    encoder_layers: int  # 0 for decoder-only models
    intermediate: int  # decoder FFN width
    encoder_intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool  # lm_head shares the input embedding
    gated: bool  # three-matrix MLP (SwiGLU, gated-GELU)
    qk_norm: bool  # Qwen3: an RMSNorm on each head's q and k
    attention_bias: bool
    positions: int  # learned position rows per stack (BART), 0 otherwise
    source: str  # the config.json that was read
    dropout: float = 0.0  # dropout on hidden states in training (BART dropout, T5 dropout_rate)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linears(self) -> list[Linear]:
        """Every linear layer inside the transformer blocks (not the LM head), one entry per layer kind."""
        h, q, kv = self.hidden, self.q_dim, self.kv_dim
        if self.family == "decoder":
            bias = self.attention_bias
            mlp = ([Linear("decoder", "gate_proj", h, self.intermediate, "mlp_in")] if self.gated else [])
            return [
                Linear("decoder", "q_proj", h, q, "attn_in", bias),
                Linear("decoder", "k_proj", h, kv, "attn_in", bias),
                Linear("decoder", "v_proj", h, kv, "attn_in", bias),
                Linear("decoder", "o_proj", q, h, "o"),
                *mlp,
                Linear("decoder", "up_proj", h, self.intermediate, "mlp_in"),
                Linear("decoder", "down_proj", self.intermediate, h, "down"),
            ]
        if self.family == "bart":
            def attn(stack, q_group: str, kv_group: str, o_group: str) -> list[Linear]:
                return [Linear(stack, "q_proj", h, h, q_group, True), Linear(stack, "k_proj", h, h, kv_group, True),
                        Linear(stack, "v_proj", h, h, kv_group, True), Linear(stack, "out_proj", h, h, o_group, True)]

            def ffn(stack, width: int) -> list[Linear]:
                return [Linear(stack, "fc1", h, width, "mlp_in", True), Linear(stack, "fc2", width, h, "down", True)]

            return [*attn("encoder", "attn_in", "attn_in", "o"), *ffn("encoder", self.encoder_intermediate),
                    *attn("decoder", "attn_in", "attn_in", "o"), *attn("decoder", "cross_q", "cross_kv", "cross_o"),
                    *ffn("decoder", self.intermediate)]
        # T5: no biases; gated-GELU (v1.1, pko-t5) has wi_0/wi_1, the original T5 one wi.
        def t5_attn(stack, q_group: str, kv_group: str, o_group: str) -> list[Linear]:
            return [Linear(stack, "q", h, q, q_group), Linear(stack, "k", h, q, kv_group),
                    Linear(stack, "v", h, q, kv_group), Linear(stack, "o", q, h, o_group)]

        def t5_ffn(stack, width: int) -> list[Linear]:
            wi = ([Linear(stack, "wi_0", h, width, "mlp_in"), Linear(stack, "wi_1", h, width, "mlp_in")]
                  if self.gated else [Linear(stack, "wi", h, width, "mlp_in")])
            return [*wi, Linear(stack, "wo", width, h, "down")]

        return [*t5_attn("encoder", "attn_in", "attn_in", "o"), *t5_ffn("encoder", self.encoder_intermediate),
                *t5_attn("decoder", "attn_in", "attn_in", "o"), *t5_attn("decoder", "cross_q", "cross_kv", "cross_o"),
                *t5_ffn("decoder", self.intermediate)]

    def layer_count(self, stack: str) -> int:
        return self.encoder_layers if stack == "encoder" else self.layers

    def linear_params(self) -> int:
        """Parameters of the block linears (weights and biases): what 4-bit quantization shrinks."""
        return sum((lin.d_in * lin.d_out + (lin.d_out if lin.bias else 0)) * self.layer_count(lin.stack)
                   for lin in self.linears())

    def other_params(self) -> int:
        """Embeddings, an untied LM head, positions and norms: what 4-bit loading keeps unquantized."""
        h, v = self.hidden, self.vocab
        head = 0 if self.tied else v * h
        if self.family == "decoder":
            norms = self.layers * (2 * h + (2 * self.head_dim if self.qk_norm else 0)) + h
            return v * h + head + norms
        if self.family == "bart":
            # Learned positions carry an offset of 2 rows; LayerNorms have weight and bias.
            positions = 2 * (self.positions + 2) * h
            norms = 2 * h * (2 * self.encoder_layers + 3 * self.layers + 2)
            return v * h + head + positions + norms
        relative_bias = 2 * 32 * self.heads  # 32 buckets per head, first layer of each stack
        norms = h * (2 * self.encoder_layers + 3 * self.layers + 2)
        return v * h + head + relative_bias + norms

    def parameters(self) -> int:
        """All parameters, counted from the dimensions."""
        return self.linear_params() + self.other_params()


def _get(config: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
    if default is not None:
        return default
    raise KeyError(" / ".join(names))


def dims_from_config(config: Mapping[str, Any], source: str = "config.json") -> ModelDims:
    """Read :class:`ModelDims` from a parsed ``config.json``.

    Raises:
        ValueError: a key the memory model needs is missing (names the file and the key).
    """
    model_type = str(config.get("model_type", "")).lower()
    try:
        if model_type in BART_TYPES:
            hidden = int(_get(config, "d_model"))
            heads = int(_get(config, "decoder_attention_heads", "encoder_attention_heads"))
            return ModelDims(
                model_type, "bart", hidden, int(_get(config, "decoder_layers")), int(_get(config, "encoder_layers")),
                int(_get(config, "decoder_ffn_dim")), int(_get(config, "encoder_ffn_dim")), heads, heads,
                hidden // heads, int(_get(config, "vocab_size")), True, False, False, True,
                int(_get(config, "max_position_embeddings", default=1024)), source, float(config.get("dropout", 0.1)),
            )
        if model_type in T5_TYPES:
            hidden = int(_get(config, "d_model"))
            heads = int(_get(config, "num_heads"))
            layers = int(_get(config, "num_layers"))
            gated = str(config.get("feed_forward_proj", "relu")).startswith("gated")
            return ModelDims(
                model_type, "t5", hidden, int(_get(config, "num_decoder_layers", default=layers)), layers,
                int(_get(config, "d_ff")), int(_get(config, "d_ff")), heads, heads, int(_get(config, "d_kv")),
                int(_get(config, "vocab_size")), bool(config.get("tie_word_embeddings", True)), gated, False, False, 0,
                source, float(config.get("dropout_rate", 0.1)),
            )
        hidden = int(_get(config, "hidden_size"))
        heads = int(_get(config, "num_attention_heads"))
        return ModelDims(
            model_type or "decoder", "decoder", hidden, int(_get(config, "num_hidden_layers")), 0,
            int(_get(config, "intermediate_size")), 0, heads, int(_get(config, "num_key_value_heads", default=heads)),
            int(_get(config, "head_dim", default=hidden // heads)), int(_get(config, "vocab_size")),
            bool(config.get("tie_word_embeddings", False)), model_type in GATED_DECODERS or model_type == "",
            model_type == "qwen3", bool(config.get("attention_bias", model_type == "qwen2")), 0, source,
        )
    except KeyError as missing:
        raise ValueError(f"{source}: no {missing} (model_type {model_type or '?'}); cannot size the model") from None


# --- finding config.json --------------------------------------------------------------------


def hub_cache_dirs(env: Mapping[str, str]) -> list[Path]:
    """Where huggingface_hub keeps downloaded repos, in its own order: HF_HUB_CACHE, else HF_HOME/hub,
    else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub."""
    if env.get("HF_HUB_CACHE"):
        return [Path(env["HF_HUB_CACHE"]).expanduser()]
    if env.get("HF_HOME"):
        return [Path(env["HF_HOME"]).expanduser() / "hub"]
    cache = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return [cache / "huggingface" / "hub"]


def _snapshot_config(repo_dir: Path) -> Path | None:
    """The config.json of the snapshot ``refs/main`` names, else of the newest snapshot that has one."""
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        named = repo_dir / "snapshots" / ref.read_text(encoding="utf-8").strip() / "config.json"
        if named.is_file():
            return named
    found = [p for p in (repo_dir / "snapshots").glob("*/config.json") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


@dataclass(frozen=True)
class ConfigLookup:
    """Where a model's ``config.json`` was found (``path``), or every place looked at (``looked``)."""

    path: Path | None
    looked: list[str]


def find_model_config(name_or_path: str, workspace: Path | str | None = None,
                      env: Mapping[str, str] | None = None) -> ConfigLookup:
    """Find ``config.json`` for ``model.name_or_path`` without downloading anything.

    A local directory (absolute, or relative to ``workspace`` as the engine resolves it) wins, as in
    :func:`engine.modeling.model_source`; then the hub cache's ``models--ORG--NAME/snapshots/*/``.
    """
    env = os.environ if env is None else env
    base = Path(workspace) if workspace is not None else Path.cwd()
    local = Path(name_or_path).expanduser()
    local = local if local.is_absolute() else base / local
    looked = [str(local / "config.json")]
    if (local / "config.json").is_file():
        return ConfigLookup(local / "config.json", looked)
    if local.is_dir():  # a directory without config.json is not a hub id either
        return ConfigLookup(None, looked)
    if name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~")):
        for cache in hub_cache_dirs(env):
            repo_dir = cache / ("models--" + name_or_path.replace("/", "--"))
            looked.append(str(repo_dir / "snapshots" / "*" / "config.json"))
            found = _snapshot_config(repo_dir)
            if found is not None:
                return ConfigLookup(found, looked)
    return ConfigLookup(None, looked)


def load_model_dims(name_or_path: str, workspace: Path | str | None = None,
                    env: Mapping[str, str] | None = None) -> tuple[ModelDims | None, str]:
    """:class:`ModelDims` of a model from its config.json on disk, or None with the reason.

    Returns:
        (dims, "") when found and readable; (None, why) otherwise — the reason lists the places looked at.
    """
    lookup = find_model_config(name_or_path, workspace, env)
    if lookup.path is None:
        return None, f"no config.json for {name_or_path}; looked at {', '.join(lookup.looked)}"
    try:
        config = json.loads(lookup.path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return None, f"{lookup.path}: unreadable ({err})"
    if not isinstance(config, dict):
        return None, f"{lookup.path}: not a JSON object"
    try:
        return dims_from_config(config, str(lookup.path)), ""
    except ValueError as err:
        return None, str(err)
