"""Provides the one contract between the engine (writer) and the manager and TUI (readers).

Everything the two sides exchange is spelled here once: stage, event, phase and artifact names,
one typed record per event, failure kinds each with its single hint, exit codes, the run
directory's file names, the data files' names and the config-snapshot loader. No other module
spells those strings; writers and readers import them from here (pueue's ``pueue_lib`` idea,
carried as files).

Torch-free on purpose: the manager and the TUI import this module and must start instantly.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # engine.config is torch-free too, but only the loader needs it
    from engine.config import RunConfig

EVENTS_SCHEMA_VERSION = 1


class Stage(StrEnum):
    """A stage is one engine subcommand run as its own process."""

    TRAIN = "train"
    INFER = "infer"
    EVALUATE = "evaluate"


PIPELINE = (Stage.TRAIN, Stage.INFER, Stage.EVALUATE)


class Event(StrEnum):
    """The events an engine command may append to ``events.jsonl`` (docs/events.md)."""

    STARTED = "started"
    PHASE = "phase"
    PROGRESS = "progress"
    TRAIN_LOG = "train_log"
    EVAL = "eval"
    ARTIFACT = "artifact"
    WARNING = "warning"
    FINISHED = "finished"
    FAILED = "failed"


class Phase(StrEnum):
    """The ``name`` of a ``phase`` event: what the command is doing now."""

    LOAD_DATA = "load_data"
    LOAD_MODEL = "load_model"
    TRAIN = "train"
    SAVE = "save"
    GENERATE = "generate"
    WRITE = "write"
    SCORE = "score"


class ArtifactKind(StrEnum):
    """The ``kind`` of an ``artifact`` event: which file or directory is now complete."""

    FINAL_MODEL = "final_model"
    CHECKPOINT = "checkpoint"
    SUBMISSION = "submission"
    DEV_PREDICTIONS = "dev_predictions"
    METRICS = "metrics"


class ExitCode(IntEnum):
    """Exit statuses of ``python -m engine …`` and of the CLI."""

    OK = 0
    ERROR = 1  # anything else; the events say what
    BAD_INPUT = 2  # config or data: the message names the file, row or key
    INTERRUPTED = 130  # SIGINT/SIGTERM: a clean stop on request


class FailureKind(StrEnum):
    """Why a stage failed. Each kind has exactly one hint (``HINTS``)."""

    OOM = "oom"
    DTYPE = "dtype"
    DISK = "disk"
    DATA = "data"
    CONFIG = "config"
    INTERRUPTED = "interrupted"
    KILLED = "killed"  # SIGKILL with no evidence of the OOM killer
    HOST_OOM = "host_oom"  # SIGKILL with evidence (cgroup memory.events, kernel log)
    TIMEOUT = "timeout"  # a scheduler's time limit (Slurm's TIMEOUT) ended the stage
    UNKNOWN = "unknown"

    @property
    def hint(self) -> str:
        """The one-line advice shown with this kind of failure (the only wording there is)."""
        return HINTS[self]

    @classmethod
    def parse(cls, value: object) -> FailureKind:
        """The kind named by ``value`` (an event's ``kind``); UNKNOWN for anything else."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.UNKNOWN


HINTS: dict[FailureKind, str] = {
    FailureKind.OOM: (
        "GPU memory ran out: lower train.batch_size (raise grad_accum), enable gradient_checkpointing or 4-bit, "
        "or check that no earlier process still holds the GPU"
    ),
    FailureKind.DTYPE: (
        "dtype mismatch between weights, adapter, AMP and inputs: keep model.dtype, quantization.compute_dtype "
        "and train.precision consistent (bf16 model → precision bf16)"
    ),
    FailureKind.DISK: "disk full or quota reached: run `dialsum-tui prune` (old checkpoints, HF caches) and retry, "
    "or raise quota_gb in the workspace's .dialsum/settings.yaml",
    FailureKind.DATA: "the data files are not in the competition schema: fix the file/row named above "
    "(`python -m engine check-data DIR` lists every problem) and retry",
    FailureKind.CONFIG: "the config or the model path is wrong: fix the key named above (or download the model) "
    "and retry",
    FailureKind.INTERRUPTED: "stopped on request: `dialsum-tui retry ID --resume` continues from its last complete "
    "checkpoint (`retry ID` starts over)",
    FailureKind.KILLED: "killed by SIGKILL (no sign of the OOM killer): someone or something killed it; "
    "`dialsum-tui retry ID` runs it again",
    # Assigned only with evidence (the cgroup's oom_kill counter rose, or the kernel log names the pid).
    FailureKind.HOST_OOM: "the host's OOM killer ended it (host RAM, not GPU memory): lower dataloader workers/batch "
    "size or the data kept in memory, or run it when the host is less busy",
    FailureKind.TIMEOUT: "the Slurm time limit ran out: raise slurm.time_limit in .dialsum/settings.yaml and "
    "`dialsum-tui retry ID`",
    FailureKind.UNKNOWN: "no known failure signature: read the message and run.log (`dialsum-tui logs ID`)",
}

# Advice for a failure in a situation where its kind's own hint would mislead (the manager picks
# them; ``{…}`` fields are filled in where the situation is known). Every hint there is lives here.
OTHERS_HELD_HINT = ("another process held GPU memory at the time: free it (`dialsum-tui check`) and retry before "
                    "shrinking the batch")
FULL_FILESYSTEM_HINT = ("free space on that filesystem (`df -h {path}`: `dialsum-tui prune` for our old checkpoints, "
                        "or other users' files), then `dialsum-tui retry ID`")
READ_ONLY_HINT = ("the system remounted it read-only (usually after an I/O error: see `dmesg`); ask the admin to check "
                  "and remount {path} read-write, then `dialsum-tui retry ID`")
SNAPSHOT_HINT = "fix the config and add it again"
ENVIRONMENT_HINT = "fix or unset the variable named above"
SLURM_SETTINGS_HINT = "fix slurm.* in .dialsum/settings.yaml"
ENGINE_COMMAND_HINT = "check ${variable} or the Python environment"


# --- one typed record per event ---------------------------------------------------------------


@dataclass(frozen=True)
class EventRecord:
    """Fields every line carries. Readers ignore fields they do not know (docs/events.md)."""

    event: Event
    ts: float = 0.0
    v: int = EVENTS_SCHEMA_VERSION
    command: str | None = None


@dataclass(frozen=True)
class Started(EventRecord):
    nickname: str | None = None
    model: str | None = None
    config_hash: str | None = None
    device: str | None = None
    dtype: str | None = None
    pid: int | None = None
    world_size: int | None = None
    kind: str | None = None  # model kind: seq2seq | causal (train)
    lora: bool | None = None
    split: str | None = None  # infer: test | dev | both
    predictions: str | None = None  # evaluate: the scored files and how
    references: str | None = None
    tokenizer: str | None = None
    scorer: str | None = None
    resumed_from: str | None = None  # train --resume-from: the complete checkpoint it continues from
    resumed_step: int | None = None  # ... and that checkpoint's global step (of resumed_total)
    resumed_total: int | None = None


@dataclass(frozen=True)
class PhaseChanged(EventRecord):
    name: str | None = None  # a Phase
    split: str | None = None  # infer: test | dev
    n: int | None = None  # infer: dialogues to generate


@dataclass(frozen=True)
class Progress(EventRecord):
    step: int | None = None
    total: int | None = None
    epoch: float | None = None
    eta_s: float | None = None
    tokens_per_s: float | None = None
    samples_per_s: float | None = None


@dataclass(frozen=True)
class TrainLog(EventRecord):
    step: int | None = None
    epoch: float | None = None
    loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None


@dataclass(frozen=True)
class Eval(EventRecord):
    step: int | None = None
    epoch: float | None = None
    rouge1: float | None = None  # F1, 0–1
    rouge2: float | None = None
    rougeL: float | None = None
    final: float | None = None  # mean of the three F1s × 100: the competition's score
    sum: float | None = None
    loss: float | None = None
    tokenizer: str | None = None
    scorer: str | None = None
    n: int | None = None
    split: str | None = None
    # In-training evaluation only: wall seconds training was paused for it (the Trainer's loss
    # pass plus generation and scoring), so its share of the train stage can be reported.
    seconds: float | None = None


@dataclass(frozen=True)
class Artifact(EventRecord):
    kind: str | None = None  # an ArtifactKind
    path: str | None = None
    bytes: int | None = None


@dataclass(frozen=True)
class Warning_(EventRecord):
    message: str | None = None
    count: int | None = None


@dataclass(frozen=True)
class Finished(EventRecord):
    seconds: float | None = None
    metrics: dict[str, Any] | None = None
    pid: int | None = None


@dataclass(frozen=True)
class Failed(EventRecord):
    kind: str | None = None  # a FailureKind
    message: str | None = None
    hint: str | None = None
    rank: int | None = None


RECORDS: dict[Event, type[EventRecord]] = {
    Event.STARTED: Started,
    Event.PHASE: PhaseChanged,
    Event.PROGRESS: Progress,
    Event.TRAIN_LOG: TrainLog,
    Event.EVAL: Eval,
    Event.ARTIFACT: Artifact,
    Event.WARNING: Warning_,
    Event.FINISHED: Finished,
    Event.FAILED: Failed,
}


# Written on every logging step or generation batch: millions in a long run. Every other event is
# rare (a few per stage, one per evaluation or checkpoint), and readers find those without reading
# the frequent ones in between (engine/event_reader.py, docs/events.md "Reading a big file").
FREQUENT_EVENTS = frozenset({Event.PROGRESS, Event.TRAIN_LOG})
RARE_EVENTS = tuple(e for e in Event if e not in FREQUENT_EVENTS)


def record_fields(event: Event) -> frozenset[str]:
    """The field names an ``event`` line may carry (its record's fields)."""
    return frozenset(f.name for f in fields(RECORDS[event]))


def parse_event(raw: dict[str, Any]) -> EventRecord | None:
    """The typed record for one decoded ``events.jsonl`` line; None for an unknown event name."""
    try:
        event = Event(raw.get("event"))
    except ValueError:
        return None
    cls = RECORDS[event]
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in known and k != "event"}, event=event)


# --- file names -------------------------------------------------------------------------------

# Inside a run directory (runs/<id>/).
CONFIG_FILE = "config.yaml"
LOG_FILE = "run.log"
EVENTS_FILE = "events.jsonl"
# Where each rare event of events.jsonl starts, written next to it by EventWriter; a hint, never the truth.
EVENTS_INDEX_FILE = "events.index.jsonl"
RETRY_FILE = "retry.json"  # a retry's origin: the run it retries, the config diff, the resume checkpoint

# The competition's data files, inside ``data.dir``.
TRAIN_CSV = "train.csv"
DEV_CSV = "dev.csv"
TEST_CSV = "test.csv"
DATA_FILES = (TRAIN_CSV, DEV_CSV, TEST_CSV)
SPLIT_FILES = {"train": TRAIN_CSV, "dev": DEV_CSV, "test": TEST_CSV}  # split name -> its file

# Written last inside final_model/: its presence (and validity) is what "complete" means.
FINAL_MODEL_DIR = "final_model"
FINAL_MODEL_META = "dialsum_model.json"

# Inside ``paths.checkpoints``/<nickname>/: the Trainer's output dir and its rotating checkpoints.
TRAINER_DIR = "trainer"
CHECKPOINT_PREFIX = "checkpoint-"
# Written last inside a Trainer checkpoint (engine.checkpoints): only a checkpoint with it is resumed.
CHECKPOINT_META = "dialsum_checkpoint.json"

# Inside ``paths.submissions``: <nickname> + suffix (engine.artifacts builds the paths).
SUBMISSION_SUFFIX = "_submission.csv"
DEV_PREDICTIONS_SUFFIX = "_dev_predictions.csv"


@dataclass(frozen=True)
class RunFiles:
    """The files of one run directory (``runs/<id>/``)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def log(self) -> Path:
        return self.root / LOG_FILE

    @property
    def events(self) -> Path:
        return self.root / EVENTS_FILE

    @property
    def retry(self) -> Path:
        return self.root / RETRY_FILE

    @property
    def events_index(self) -> Path:
        return self.root / EVENTS_INDEX_FILE


def load_snapshot(text: str, source: str | Path = CONFIG_FILE) -> RunConfig:
    """Parse a run's config snapshot (``runs/<id>/config.yaml`` or the store's copy).

    The one loader every reader uses, so path defaults are never re-derived by hand.

    Raises:
        engine.config.ConfigError: the snapshot does not validate (names the key and ``source``).
    """
    import yaml

    from engine.config import ConfigError, config_from_dict, safe_load

    try:
        tree = safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (model:, data:, …)")
    return config_from_dict(strip_moved_keys(tree), source=str(source))


def strip_moved_keys(tree: dict[str, Any]) -> dict[str, Any]:
    """Drop keys that moved out of the run config from a snapshot written before they moved.

    A user's config file with such a key is an error (:data:`engine.config.MOVED_KEYS` says where
    it went); a snapshot is the engine's own record of an old run, so it stays readable.
    """
    from engine.config import MOVED_KEYS

    tree = dict(tree)
    for dotted in MOVED_KEYS:
        section, key = dotted.split(".")
        if isinstance(tree.get(section), dict) and key in tree[section]:
            tree[section] = {k: v for k, v in tree[section].items() if k != key}
    return tree
