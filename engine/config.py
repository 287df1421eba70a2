"""Provides the typed run configuration: YAML → validated sections, ``--set`` overrides, and
errors that name the file and the key to change.

Torch-free: the manager loads configs to queue runs and project their disk footprint. Checks that
need the hardware (bf16 support, CUDA for 4-bit) live in :func:`engine.runtime.check_runtime`; the
engine's own environment variables in :mod:`engine.profile_settings`.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The C parser where libyaml is there (~10x faster: a 200-run sweep parses 200 snapshots), the same
# resolvers either way, so the result does not depend on it.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """SafeLoader with YAML 1.2 booleans: only true/false are booleans.

    YAML 1.1 also reads yes/no/on/off as booleans, so ``save_strategy: no`` would become False.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 booleans (see :class:`_Loader`)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


class ConfigError(ValueError):
    """A config problem the user fixes by editing a file or a ``--set`` (exit status 2)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Dtype = Literal["float32", "bfloat16", "float16"]


class ModelConfig(_Section):
    name_or_path: str = Field(description="Hub id (e.g. digit82/kobart-summarization) or a local directory.")
    nickname: str = Field(
        description="Names the run's files: checkpoints/<nickname>-r<run id>/final_model and submissions/<nickname>-r<run id>_submission.csv "
        "(the manager adds the run id; a standalone engine run uses the nickname alone). At most 64 characters, no / or control characters."
    )
    kind: Literal["seq2seq", "causal"] = Field(description="seq2seq (BART/T5, Seq2SeqTrainer) or causal (SFTTrainer).")
    dtype: Dtype = Field("float32", description="dtype the base weights are loaded in.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] | None = Field(
        None, description="Attention kernel; None lets transformers choose (sdpa where supported)."
    )
    trust_remote_code: bool = Field(False, description="Run modelling code shipped with a hub repo. Leave off unless needed.")


class DataConfig(_Section):
    dir: str = Field("data", description="Directory with train.csv, dev.csv, test.csv (competition schema).")
    max_train_samples: int | None = Field(None, ge=1, description="Use only the first N training rows (quick runs).")
    max_eval_samples: int | None = Field(
        None, ge=1, description="Dev rows scored with ROUGE at each evaluation during training (None = all)."
    )
    normalize: bool = Field(True, description="Turn literal '\\n' and '<br>' into newlines, CRLF into LF.")


class PromptConfig(_Section):
    topic: Literal["never", "always", "dropout"] = Field(
        "never",
        description=(
            "Use the topic in the input. test.csv has no topic, so 'always' makes train and test prompts differ; "
            "'dropout' trains with the topic on a random share of samples so the model also sees topic-less prompts."
        ),
    )
    topic_dropout: float = Field(0.5, ge=0.0, le=1.0, description="With topic=dropout: share of training samples without topic.")
    system: str = Field(
        "당신은 유능한 AI 어시스턴트입니다. 사용자의 질문에 대해 친절하게 답변해주세요.",
        description="System message of the chat template (causal models).",
    )
    speaker_label: str = Field("화자", description="A leading '#PersonN#:' becomes '<speaker_label>N:' (causal prompt).")
    max_source_length: int = Field(1024, ge=8, description="Max prompt/encoder tokens; longer dialogues are truncated from the left.")
    max_target_length: int = Field(200, ge=4, description="Max summary tokens in training.")


class LoraConfig(_Section):
    enabled: bool = Field(False, description="Train a LoRA adapter instead of all weights.")
    r: int = Field(16, ge=1, description="Rank: higher = more capacity and memory.")
    alpha: int = Field(32, ge=1, description="Scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or 'all-linear'."
    )
    merge_on_save: bool = Field(False, description="Save merged full weights instead of the adapter (larger on disk).")


class QuantizationConfig(_Section):
    load_in_4bit: bool = Field(False, description="QLoRA: load the base in 4-bit with bitsandbytes (CUDA only).")
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Dtype = Field("bfloat16", description="dtype of the 4-bit matmuls; must match model.dtype.")


# The trackers ``train.report_to`` may name: transformers' report_to integrations, each with what it
# imports and the pip package that provides it (any of the modules will do). Checked with find_spec,
# never imported: the manager validates configs without the ML stack. Left out of transformers'
# list: azure_ml and flyte, which log to their own platform's job runtime, and kubeflow, which
# transformers adds by itself when KUBEFLOW_TRAINER_SERVER_URL is set
# (tests/engine/test_report_to.py compares this table with the installed transformers).
TRACKERS: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "tensorboard": ((("tensorboard", "tensorboardX"), "tensorboard"),),
    "wandb": ((("wandb",), "wandb"),),
    "trackio": ((("trackio",), "trackio"),),
    "mlflow": ((("mlflow",), "mlflow"),),
    "swanlab": ((("swanlab",), "swanlab"),),
    "dvclive": ((("dvclive",), "dvclive"),),
    "comet_ml": ((("comet_ml",), "comet-ml"),),
    "neptune": ((("neptune",), "neptune"),),
    "clearml": ((("clearml",), "clearml"),),
    "dagshub": ((("dagshub",), "dagshub"), (("mlflow",), "mlflow")),
    "codecarbon": ((("codecarbon",), "codecarbon"),),
}


class TrainConfig(_Section):
    epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1 = run all epochs).")
    learning_rate: float = Field(2e-5, gt=0)
    batch_size: int = Field(8, ge=1, description="Per-device batch size.")
    grad_accum: int = Field(1, ge=1)
    eval_batch_size: int = Field(16, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler: str = "cosine"
    max_grad_norm: float = Field(1.0, gt=0)
    optim: str = Field("adamw_torch", description="transformers optimizer name, e.g. paged_adamw_32bit.")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="Mixed-precision (AMP) mode.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations: less memory, ~30% slower.")
    group_by_length: bool = Field(True, description="Batch similar lengths together: less padding waste.")
    batch_rebalance: bool = Field(
        False,
        description=(
            "Instead of group_by_length: each optimizer step's batch_size x grad_accum (x GPUs) samples are split into "
            "micro-batches of similar padded cost (more short samples, fewer long ones), so the effective batch stays "
            "the same while micro-batches can be larger without the longest ones running out of memory. Measured "
            "slower than group_by_length on the 3B H100 config, 1 and 4 GPUs (more padding; docs/benchmarks.md)."
        ),
    )
    use_liger_kernel: bool = Field(
        False,
        description=(
            "GPU: Liger's fused linear+cross-entropy (never materialises the 128k-vocabulary logits), RMSNorm, "
            "RoPE and SwiGLU kernels; needs the 'gpu' extra (liger-kernel)."
        ),
    )
    compile: bool = Field(
        False,
        description=(
            "GPU speed: torch.compile each decoder layer (one graph shared by all layers, symbolic lengths). Pays "
            "~1 min of compilation at the first step; needs train.pad_to_multiple_of so lengths fall in few buckets."
        ),
    )
    compile_backend: Literal["inductor", "aot_eager", "eager"] = Field(
        "inductor", description="torch.compile backend: inductor generates fused kernels; the others only check tracing (CPU tests)."
    )
    pad_to_multiple_of: int | None = Field(
        None, ge=1, description="Pad every batch's length up to a multiple of this (64: few compiled shapes; the loss ignores pads)."
    )
    fused_lora: bool = Field(
        False,
        description=(
            "Run each LoRA linear as base GEMM + x@A + one addmm that adds (x@A)@B*scale into the base output: fewer "
            "kernels and no activation-sized scale/add. Needs lora.dropout: 0."
        ),
    )
    seed: int = 42
    logging_steps: int = Field(10, ge=1)
    eval_strategy: Literal["no", "steps", "epoch"] = "epoch"
    eval_steps: int | None = Field(None, ge=1)
    save_strategy: Literal["no", "steps", "epoch"] = "epoch"
    save_steps: int | None = Field(None, ge=1)
    save_total_limit: int | None = Field(2, ge=1, description="Intermediate checkpoints kept (final_model is separate).")
    save_on_stop: bool = Field(
        True,
        description=(
            "Save a checkpoint when training is stopped (cancel, SIGTERM/SIGHUP, the disk guard) if it fits under "
            "the quota, so `dialsum-tui retry ID --resume` continues from there. The disk guard keeps room for it."
        ),
    )
    early_stopping_patience: int | None = Field(None, ge=1)
    report_to: list[str] = Field(
        default_factory=lambda: ["none"],
        description=(
            "Experiment trackers the Trainer also logs to: [none], or names of TRACKERS such as [tensorboard], "
            "[wandb], [trackio]. Each must be installed (checked when the config is loaded); their local files go "
            "under runs/<id>/trackers/<name>/ unless the tracker's own variable says elsewhere."
        ),
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA when available.")
    dataloader_num_workers: int = Field(0, ge=0)

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_tracker_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("report_to")
    @classmethod
    def _known_trackers(cls, names: list[str]) -> list[str]:
        if "all" in names:
            raise ValueError("'all' logs to whatever happens to be installed; name the trackers, e.g. [tensorboard]")
        unknown = [name for name in names if name != "none" and name not in TRACKERS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(TRACKERS), n=1, cutoff=0.7)
            guess = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"unknown tracker '{unknown[0]}'{guess} (known: none, {', '.join(TRACKERS)})")
        if "none" in names and len(set(names)) > 1:
            raise ValueError("'none' cannot be listed with trackers; list the trackers alone, or [none]")
        return list(dict.fromkeys(names)) or ["none"]


class GenerationConfig(_Section):
    batch_size: int = Field(32, ge=1, description="Dialogues per generate() call (length-sorted).")
    num_beams: int = Field(4, ge=1)
    max_new_tokens: int = Field(100, ge=1)
    no_repeat_ngram_size: int = Field(
        0, ge=0, description="The summary never repeats one of its own n-grams of this size (0 = off); quoting the dialogue is allowed."
    )
    length_penalty: float = 1.0
    early_stopping: bool = True
    do_sample: bool = False
    cache_implementation: Literal["dynamic", "static"] | None = Field(
        None, description="KV cache; 'static' lets transformers compile the decoding step (GPU; first batch pays compilation)."
    )
    attention: Literal["gqa", "sdpa"] = Field(
        "gqa",
        description="Decode attention of causal models in `infer` on CUDA: 'gqa' reads each KV head once per token "
                    "(engine/attention.py), 'sdpa' is transformers' own path (repeats KV heads when compiled). "
                    "Same outputs; training and in-training evaluation are not affected.",
    )


class PathsConfig(_Section):
    checkpoints: str = Field("checkpoints", description="checkpoints/<key>/final_model lives here (key: nickname-r<run id>).")
    submissions: str = Field("submissions", description="<key>_submission.csv lives here (key: nickname-r<run id>).")


# Keys that left the run config, and where they went. The disk quota is a property of the
# workspace (one server, one quota), not of a run: stated once, the manager hands the limit to the
# engine as ``train --disk-root PATH --disk-stop-bytes N``.
_QUOTA_MOVED = "the disk quota moved to the workspace's settings.yaml (quota_gb, margin_gb)"
MOVED_KEYS: dict[str, str] = {
    "paths.disk_quota_gb": _QUOTA_MOVED,
    "paths.disk_margin_gb": _QUOTA_MOVED,
    "paths.disk_quota_path": "the disk quota moved to the workspace's settings.yaml (quota_path)",
}


class RunConfig(_Section):
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    quantization: QuantizationConfig = Field(default_factory=QuantizationConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)

    @model_validator(mode="after")
    def _combinations(self) -> RunConfig:
        problems = static_problems(self)
        if problems:
            raise ValueError(problems[0])
        return self

    # Convenience used all over the engine and the manager.
    @property
    def is_t5(self) -> bool:
        return "t5" in self.model.name_or_path.lower()

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:12]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), allow_unicode=True, sort_keys=False)


def static_problems(cfg: RunConfig) -> list[str]:
    """Impossible combinations that need no hardware to detect; each message names the key."""
    problems = []
    if cfg.train.precision == "fp16" and cfg.model.dtype == "bfloat16":
        problems.append(
            "train.precision: fp16 AMP on a bfloat16 model fails with "
            "'_amp_foreach_non_finite_check_and_unscale_cuda not implemented for BFloat16'; use precision: bf16"
        )
    if cfg.train.precision == "fp16" and cfg.model.dtype == "float16" and not cfg.lora.enabled:
        problems.append(
            "train.precision: fp16 AMP with float16 weights fails with 'Attempting to unscale FP16 gradients'; "
            "load model.dtype: float32 (or bfloat16 with precision: bf16)"
        )
    if cfg.train.precision == "bf16" and cfg.model.dtype == "float16":
        problems.append("train.precision: bf16 AMP on float16 weights mixes two half types; set model.dtype: bfloat16")
    if cfg.is_t5 and (cfg.train.precision == "fp16" or cfg.model.dtype == "float16"):
        problems.append("train.precision: T5 overflows in fp16 (NaN loss); use bf16 or fp32")
    if cfg.quantization.load_in_4bit and not cfg.lora.enabled:
        problems.append("quantization.load_in_4bit: 4-bit weights cannot be trained directly; set lora.enabled: true")
    if cfg.quantization.load_in_4bit and cfg.quantization.compute_dtype != cfg.model.dtype:
        problems.append(
            "quantization.compute_dtype must equal model.dtype "
            f"({cfg.quantization.compute_dtype} vs {cfg.model.dtype}): a mismatch is the hand-off's "
            "'expected scalar type BFloat16 but found Float'"
        )
    if cfg.quantization.load_in_4bit and cfg.train.device == "cpu":
        problems.append("quantization.load_in_4bit: bitsandbytes 4-bit needs a CUDA GPU; set train.device: cuda or turn it off")
    if cfg.train.eval_strategy == "steps" and not cfg.train.eval_steps:
        problems.append("train.eval_steps: required when train.eval_strategy is 'steps'")
    if cfg.train.save_strategy == "steps" and not cfg.train.save_steps:
        problems.append("train.save_steps: required when train.save_strategy is 'steps'")
    if cfg.train.fused_lora and not cfg.lora.enabled:
        problems.append("train.fused_lora: fuses LoRA layers and there are none; set lora.enabled: true or fused_lora: false")
    if cfg.train.fused_lora and cfg.lora.dropout > 0:
        problems.append(
            f"train.fused_lora: needs lora.dropout: 0 (got {cfg.lora.dropout}); a dropped-out input is a separate "
            "activation that the fused GEMM cannot skip. Set lora.dropout: 0 or fused_lora: false"
        )
    if cfg.train.compile and not cfg.train.pad_to_multiple_of:
        problems.append(
            "train.compile: set train.pad_to_multiple_of (64 is a good start) so batch lengths fall in a few buckets "
            "and the compiled layers see few shapes"
        )
    if cfg.train.early_stopping_patience and cfg.train.eval_strategy == "no":
        problems.append("train.early_stopping_patience: needs train.eval_strategy steps or epoch")
    return problems


def _importable(module: str) -> bool:
    """Whether ``module`` can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module whose spec is unset
        return False


def tracker_problems(cfg: RunConfig) -> list[str]:
    """The trackers ``train.report_to`` names that this Python cannot import, each with its install command.

    Needs the environment, so it is not part of the schema: a run's config snapshot stays readable
    after a tracker is uninstalled. :func:`load_config` (``add``, ``python -m engine train``) runs it.
    """
    problems = []
    for name in cfg.train.report_to:
        missing = [pip for modules, pip in TRACKERS.get(name, ()) if not any(map(_importable, modules))]
        if missing:
            problems.append(
                f"train.report_to: {name} is not installed in this environment; install it with "
                f"`{sys.executable} -m pip install {' '.join(missing)}`, or take {name} out of train.report_to"
            )
    return problems


# --- loading --------------------------------------------------------------------------------


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: --set {dotted}: '{key}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """Turn ``["train.max_steps=5", ...]`` into a dotted-key → value mapping (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. --set train.max_steps=10")
        try:
            out[key.strip()] = safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def _section_of(loc: str) -> tuple[list[str], type[BaseModel]] | None:
    """The config section a dotted key sits in (its path and model), None when the path leaves the model."""
    *sections, _key = loc.split(".")
    model: Any = RunConfig
    for name in sections:
        field = model.model_fields.get(name)
        model = field.annotation if field else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
    return sections, model


def _near_miss(loc: str) -> str:
    """``"; did you mean 'train.learning_rate'?"`` when an unknown dotted key is close to a known one."""
    found = _section_of(loc)
    if found is None:
        return ""
    sections, model = found
    close = difflib.get_close_matches(loc.split(".")[-1], list(model.model_fields), n=1, cutoff=0.7)
    return f"; did you mean '{'.'.join([*sections, close[0]])}'?" if close else ""


def _known_here(loc: str) -> str:
    """`` (known in train: a, b, …)``: the keys of the section an unknown key sits in, so the message
    answers itself (a workspace has no configs/base.yaml to look them up in)."""
    found = _section_of(loc)
    if found is None:
        return ""
    sections, model = found
    return f" (known in {'.'.join(sections) or 'the top level'}: {', '.join(model.model_fields)})"


def _format_validation(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden" and loc in MOVED_KEYS:
            lines.append(f"{source}: '{loc}' is no longer a run-config key: {MOVED_KEYS[loc]}; delete it here")
        elif e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{loc}'{_near_miss(loc)}{_known_here(loc)}")
        elif e["type"] == "missing":
            lines.append(f"{source}: missing required key '{loc}'")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {loc + ': ' if loc else ''}{msg} (got {e.get('input')!r})" if loc else f"{source}: {msg}")
    return "\n".join(lines)


def config_from_dict(tree: dict[str, Any], source: str = "config", overrides: dict[str, Any] | None = None) -> RunConfig:
    tree = json.loads(json.dumps(tree))  # deep copy, plain types
    for dotted, value in (overrides or {}).items():
        _set_dotted(tree, dotted, value, source)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, source)) from None


def load_config(path: Path | str, overrides: list[str] | dict[str, Any] | None = None) -> RunConfig:
    """Load and validate a YAML run config.

    Args:
        path: the YAML file.
        overrides: ``--set`` pairs (``["train.max_steps=5"]``) or an already-parsed mapping.

    Raises:
        ConfigError: with the file, the key and what to do; also a tracker in ``train.report_to`` that
            is not installed (:func:`tracker_problems`).
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text; save the YAML as UTF-8") from None
    try:
        tree = safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}:{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: expected a mapping with sections model, data, train, ...")
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    cfg = config_from_dict(tree, source, overrides)
    problems = tracker_problems(cfg)
    if problems:
        raise ConfigError("\n".join(f"{source}: {problem}" for problem in problems))
    return cfg


def resolve_path(value: str, base: Path | None = None) -> Path:
    """Relative config paths resolve against the current directory (the workspace)."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base or Path.cwd()) / p
