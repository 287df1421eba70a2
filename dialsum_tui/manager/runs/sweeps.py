"""Provides sweeps: one config expanded into variants (a grid of ``--sweep KEY=V1,V2`` axes, ``--seeds N``,
a sweep file of override sets), each variant validated exactly like ``add --set`` and given a readable
nickname (``<nick>-lr1e-4-r8``); the sweep record the store keeps; and what a sweep is now — its
progress and its best run by dev ROUGE — read from its runs' store records alone.

Pure: no store and no run directory. The facade validates, preflights and queues the variants
(:meth:`dialsum_tui.manager.service.Manager.add_sweep`); docs/sweeps.md is the user's page.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dialsum_tui.manager.errors import DialsumError
from dialsum_tui.manager.runs.events import stored_eval
from dialsum_tui.manager.runs.models import Run, RunState
from engine.artifacts import NICKNAME_MAX_CHARS, nickname_problem
from engine.checkpoints import dotted_items
from engine.config import (
    ConfigError,
    RunConfig,
    config_from_dict,
    load_config,
    parse_overrides,
    safe_load,
    tracker_problems,
)
from engine.contract import Stage

MIN_VARIANTS = 2  # one variant is a plain `add --set`
MAX_VARIANTS = 1000  # `--seeds 10000` or a grid typo must not queue ten thousand runs
SEED_KEY = "train.seed"
NICKNAME_KEY = "model.nickname"
# How a swept key reads in a variant's nickname (the last part of the dotted key otherwise).
ABBREVIATIONS = {
    "learning_rate": "lr", "batch_size": "bs", "eval_batch_size": "ebs", "grad_accum": "ga", "epochs": "ep",
    "max_steps": "steps", "warmup_ratio": "warmup", "weight_decay": "wd", "num_beams": "beams",
    "max_new_tokens": "newtok", "max_source_length": "src", "max_target_length": "tgt", "dropout": "drop",
    "topic_dropout": "tdrop", "lr_scheduler": "sched", "name_or_path": "model", "max_train_samples": "ntrain",
}
_UNSAFE = re.compile(r"[\s/\\\x00-\x1f]+")  # what a nickname cannot hold (engine.artifacts.nickname_problem)


class SweepError(DialsumError, ConfigError):
    """A sweep that cannot be queued as given (exit status 2); the message names the flag, key or variant."""


class SweepNotFound(DialsumError, KeyError):
    """No sweep with that id; ``str()`` says so and where sweeps are listed."""

    def __str__(self) -> str:
        return f"no sweep {self.args[0]} in this workspace; `dialsum-tui ls` shows each sweep's id on its group line"


def sweep_id(text: str | int) -> str:
    """``"s12"`` from ``"s12"``, ``"S12"`` or ``12`` (a sweep's id is ``s`` + its first run's id)."""
    raw = str(text).strip().lower()
    digits = raw[1:] if raw.startswith("s") else raw
    if not digits.isdigit():
        raise SweepError(f"--sweep {text!r}: a sweep id looks like s12 (the id on its group line in `dialsum-tui ls`)")
    return f"s{int(digits)}"


# --- the record the store keeps ---------------------------------------------------------------


@dataclass(frozen=True)
class Sweep:
    """One sweep as the store keeps it (the ``sweeps`` table); its runs carry its id (``Run.sweep``)."""

    id: str
    config_path: str  # the config the variants came from
    nickname: str  # the config's own nickname: the variants' common prefix
    keys: tuple[str, ...]  # the swept dotted keys, in the order the names use them
    variants: dict[str, dict[str, Any]]  # variant nickname → its swept values (dotted key → value)
    created_at: float = 0.0
    ended_at: float | None = None  # when its end was announced (the one notify); None while it runs

    def label(self, nickname: str) -> str:
        """``"lr=1e-4 r=8"``: what sets variant ``nickname`` apart ('' for a run that is none of them)."""
        values = self.variants.get(nickname) or {}
        return " ".join(f"{short_key(key)}={value_text(values[key])}" for key in self.keys if key in values)

    def to_json(self) -> dict[str, Any]:
        """``id``, ``config_path``, ``nickname``, ``keys``, ``variants``, ``created_at``, ``ended_at``."""
        return {"id": self.id, "config_path": self.config_path, "nickname": self.nickname, "keys": list(self.keys),
                "variants": self.variants, "created_at": self.created_at, "ended_at": self.ended_at}


# --- expanding a sweep ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One run of a sweep: its nickname, the values that make it, and its validated config."""

    nickname: str
    values: dict[str, Any]  # swept dotted key → value (parsed like --set)
    config: RunConfig

    @property
    def label(self) -> str:
        """``"lr=1e-4 r=8"``: what sets this variant apart."""
        return " ".join(f"{short_key(key)}={value_text(value)}" for key, value in self.values.items())

    def overrides(self) -> dict[str, Any]:
        """What turns the sweep's config into this variant (the swept values and the nickname)."""
        return {**self.values, NICKNAME_KEY: self.nickname}


@dataclass(frozen=True)
class SweepPlan:
    """A sweep worked out and validated, not queued."""

    config_path: str
    nickname: str
    keys: tuple[str, ...]
    variants: tuple[Variant, ...]
    common: dict[str, Any] = field(default_factory=dict)  # the --set values every variant shares

    def record(self) -> Sweep:
        """The store's record of it (the id and time are the store's to give)."""
        return Sweep("", self.config_path, self.nickname, self.keys, {v.nickname: v.values for v in self.variants})


def split_values(text: str) -> list[str]:
    """``"1e-4,2e-4"`` → ``["1e-4", "2e-4"]``; commas inside ``[]``, ``{}`` or quotes stay (a list value)."""
    out, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [part.strip() for part in out]


def parse_axis(text: str) -> tuple[str, list[tuple[str, Any]]]:
    """``"train.learning_rate=1e-4,2e-4"`` → the key and its (text as typed, value parsed like --set) pairs.

    Raises:
        SweepError: no ``=``, no key, an empty value, or a value given twice.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    example = "e.g. --sweep train.learning_rate=1e-4,2e-4"
    if not sep or not key:
        raise SweepError(f"--sweep {text!r}: expected KEY=V1,V2,..., {example}")
    texts = split_values(raw)
    if any(not t for t in texts):
        raise SweepError(f"--sweep {text!r}: an empty value; {example}")
    seen: set[str] = set()
    for t in texts:
        if t in seen:
            raise SweepError(f"--sweep {text!r}: {t} is given twice")
        seen.add(t)
    return key, [(t, parse_overrides([f"{key}={t}"])[key]) for t in texts]


def read_sweep_file(path: str | Path) -> list[dict[str, Any]]:
    """The override sets of a sweep file: a YAML list of mappings (dotted keys, or nested sections),
    each optionally with ``name`` (the variant's nickname suffix); ``{variants: [...]}`` too.

    Raises:
        SweepError: the file is missing, not YAML, or not a list of mappings (names the entry).
    """
    path = Path(path).expanduser()
    try:
        tree = safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SweepError(f"--sweep-file {path}: cannot read it ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise SweepError(f"--sweep-file {path}: invalid YAML ({err})") from None
    if isinstance(tree, dict) and set(tree) == {"variants"}:
        tree = tree["variants"]
    if not isinstance(tree, list) or not tree:
        raise SweepError(f"--sweep-file {path}: expected a list of override sets, e.g.\n"
                         "- {train.learning_rate: 1e-4, lora.r: 8}\n- {train.learning_rate: 3e-4, lora.r: 16}")
    entries = []
    for i, entry in enumerate(tree, start=1):
        if not isinstance(entry, dict) or not entry:
            raise SweepError(f"--sweep-file {path}: entry {i} is {entry!r}; each entry is a mapping of config keys")
        flat = dotted_items(entry)
        name = flat.pop("name", None)
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise SweepError(f"--sweep-file {path}: entry {i}: name must be a non-empty string")
        entries.append({"name": name.strip() if name else None, "values": flat})
    return entries


def short_key(key: str) -> str:
    """How a swept key reads in names: ``train.learning_rate`` → ``lr``, ``lora.r`` → ``r``."""
    last = key.rsplit(".", 1)[-1]
    return ABBREVIATIONS.get(last, last)


def value_text(value: Any, typed: str | None = None) -> str:
    """A value as a nickname shows it: as typed when it was typed, else compact (``1e-4``, ``8``,
    ``true``); a path by its last part."""
    if typed is not None:
        text = typed
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = _float_text(value)
    elif isinstance(value, str):
        text = Path(value).name or value
    elif isinstance(value, list):
        text = "+".join(value_text(v) for v in value)
    else:
        text = str(value)
    if isinstance(value, str) and typed is not None and ("/" in text or "\\" in text):
        text = Path(text.strip("'\"")).name or text
    return _UNSAFE.sub("_", text.strip("'\"")) or "_"


def _float_text(value: float) -> str:
    if not math.isfinite(value) or value == 0:
        return repr(value)
    plain = f"{value:g}"
    sci = f"{value:.6e}".split("e")
    mantissa = sci[0].rstrip("0").rstrip(".")
    exponent = int(sci[1])
    short = f"{mantissa}e{exponent}"
    return short if len(short) < len(plain) else plain


def _suffix(keys: tuple[str, ...], values: dict[str, Any], typed: dict[str, str]) -> str:
    shorts = [short_key(k) for k in keys]
    parts = []
    for key, short in zip(keys, shorts, strict=True):
        if key not in values:
            continue
        if shorts.count(short) > 1:  # two keys read alike (lora.dropout, train.dropout): the section too
            short = key.replace(".", "_")
        text = value_text(values[key], typed.get(key))
        glue = "" if re.match(r"^[-+]?[0-9.]", text) and not short[-1:].isdigit() else "-"
        parts.append(f"{short}{glue}{text}")
    return "-".join(parts)


def _name(base: str, suffix: str, index: int) -> str:
    name = f"{base}-{suffix}" if suffix else f"{base}-v{index}"
    if len(name) <= NICKNAME_MAX_CHARS:
        return name
    room = NICKNAME_MAX_CHARS - len(suffix) - 1
    if room >= 4:  # the base gives way first: the values are what tells the variants apart
        return f"{base[:room].rstrip('-_ ')}-{suffix}"
    return f"{base[:NICKNAME_MAX_CHARS - 8]}-v{index}"


def expand(axes: list[str] | None = None, seeds: int | None = None, entries: list[dict[str, Any]] | None = None,
           base_seed: int = 42, common: dict[str, Any] | None = None) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """The swept keys and one ``{"name", "values", "typed"}`` per variant: every combination of the
    sweep file's entries, each ``--sweep`` axis and the seeds (in that order; the last varies fastest).

    Raises:
        SweepError: a key swept twice, swept and also ``--set``, ``--seeds`` below 1 or with a swept
            ``train.seed``, fewer than :data:`MIN_VARIANTS` or more than :data:`MAX_VARIANTS` variants.
    """
    common = common or {}
    dimensions: list[list[dict[str, Any]]] = []
    keys: list[str] = []
    if entries:
        file_keys = [k for e in entries for k in e["values"]]
        keys += list(dict.fromkeys(file_keys))
        dimensions.append([{"name": e.get("name"), "values": dict(e["values"]), "typed": {}} for e in entries])
    for text in axes or []:
        key, pairs = parse_axis(text)
        if key in keys:
            raise SweepError(f"--sweep {key}: the key is swept twice (another --sweep or the sweep file); "
                             "give all its values in one --sweep")
        keys.append(key)
        dimensions.append([{"name": None, "values": {key: v}, "typed": {key: t}} for t, v in pairs])
    if seeds is not None:
        if seeds < 1:
            raise SweepError(f"--seeds {seeds}: give a count of 1 or more")
        if SEED_KEY in keys:
            raise SweepError(f"--seeds and a swept {SEED_KEY} contradict each other; use one")
        keys.append(SEED_KEY)
        dimensions.append([{"name": None, "values": {SEED_KEY: base_seed + i}, "typed": {}} for i in range(seeds)])
    for key in keys:
        if key == NICKNAME_KEY:
            raise SweepError(f"{NICKNAME_KEY} cannot be swept: each variant's nickname is made from its values")
        if key in common:
            raise SweepError(f"{key} is both --set and swept; drop one")
    total = math.prod(len(d) for d in dimensions) if dimensions else 0
    if total > MAX_VARIANTS:
        raise SweepError(f"the sweep has {total} variants; at most {MAX_VARIANTS} are queued at once")
    if total < MIN_VARIANTS:
        raise SweepError(f"the sweep has {total} variant(s); a sweep needs at least {MIN_VARIANTS} "
                         "(one variant is `dialsum-tui add CONFIG --set KEY=VALUE`)")
    variants = []
    for combo in itertools.product(*dimensions):
        names = [part["name"] for part in combo if part["name"]]
        values: dict[str, Any] = {}
        typed: dict[str, str] = {}
        for part in combo:
            values.update(part["values"])
            typed.update(part["typed"])
        variants.append({"name": "-".join(names) or None, "values": values, "typed": typed})
    return tuple(keys), variants


def plan_sweep(config_path: str | Path, axes: list[str] | None = None, seeds: int | None = None,
               sweep_file: str | Path | None = None, overrides: list[str] | None = None) -> SweepPlan:
    """Expand and validate a sweep: every variant's config is the file with ``overrides`` (--set) and
    its swept values, validated exactly as ``add --set`` validates a value.

    Raises:
        ConfigError: the config itself is invalid (names the file and key).
        SweepError: the sweep as given is wrong, or a variant is invalid (names the variant and its values).
    """
    path = Path(config_path)
    common = parse_overrides(overrides or [])
    base = load_config(path, dict(common))  # the file's own errors, named as `add` names them
    entries = read_sweep_file(sweep_file) if sweep_file is not None else None
    keys, raw = expand(axes, seeds, entries, base_seed=base.train.seed, common=common)
    tree = safe_load(path.read_text(encoding="utf-8"))
    names: dict[str, int] = {}
    seen: dict[str, str] = {}
    variants = []
    for index, item in enumerate(raw, start=1):
        suffix = value_text(item["name"]) if item["name"] else _suffix(keys, item["values"], item["typed"])
        name = _name(base.model.nickname, suffix, index)
        if name in names:  # two values that read alike once cleaned ("a/b", "a_b")
            name = _name(base.model.nickname, f"{suffix}-v{index}", index)
        names[name] = index
        problem = nickname_problem(name)
        if problem:
            raise SweepError(f"sweep variant {index} ({_values_text(item['values'])}): {problem}")
        source = f"{path} [sweep variant {name}: {_values_text(item['values'])}]"
        try:
            cfg = config_from_dict(tree, source, {**common, **item["values"], NICKNAME_KEY: name})
        except ConfigError as err:
            raise SweepError(f"sweep not queued: variant {name} ({_values_text(item['values'])}) is invalid:\n"
                             f"{err}") from None
        problems = tracker_problems(cfg)
        if problems:
            raise SweepError("\n".join(f"{source}: {p}" for p in problems))
        same = cfg.model_dump()
        same["model"].pop("nickname")
        fingerprint = repr(same)
        if fingerprint in seen:
            raise SweepError(f"sweep not queued: variants {seen[fingerprint]} and {name} are the same config "
                             f"({_values_text(item['values'])}); drop the repeated value")
        seen[fingerprint] = name
        dump = cfg.model_dump()  # the values as validated ("1e-4" typed is 0.0001), as the snapshot has them
        variants.append(Variant(name, {key: _dotted(dump, key, value) for key, value in item["values"].items()}, cfg))
    return SweepPlan(str(path), base.model.nickname, keys, tuple(variants), common)


def _dotted(tree: dict[str, Any], key: str, default: Any) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _values_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in values.items())


# --- a sweep now --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepBest:
    """The sweep's best run by evaluate-stage dev ROUGE, among scores made the same way."""

    run_id: int
    nickname: str
    final: float  # ×100, as the leaderboard shows it
    tokenizer: str | None
    scorer: str | None
    n: int | None
    ranked: int  # runs whose scores were compared
    unranked: tuple[int, ...] = ()  # runs scored another way (tokenizer, scorer, dev rows): not compared

    @property
    def basis(self) -> str:
        made = f"{self.tokenizer or '-'}/{self.scorer or '-'}"
        return made + (f", n={self.n}" if self.n is not None else "")

    @property
    def text(self) -> str:
        """``"bart-tiny-lr3e-3 (run 7) 47.10 mecab/competition"``."""
        left = f"; {len(self.unranked)} scored another way not ranked" if self.unranked else ""
        return f"{self.nickname} (run {self.run_id}) {self.final:.2f} {self.basis}{left}"

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "nickname": self.nickname, "final": self.final, "tokenizer": self.tokenizer,
                "scorer": self.scorer, "n": self.n, "ranked": self.ranked, "unranked": list(self.unranked)}


def sweep_best(runs: list[Run]) -> SweepBest | None:
    """The best of ``runs`` by their evaluate stage's dev final (the store's record; no file is read).

    Scores are compared only on one basis (tokenizer, scorer, dev rows scored): the basis most runs
    were scored on (ties: the newest run's); the others are listed as not ranked, never compared.
    """
    scored = []
    for run in runs:
        record = stored_eval(run.metrics)
        if record is not None and record.command == Stage.EVALUATE and isinstance(record.final, int | float):
            scored.append((run, record))
    if not scored:
        return None
    groups: dict[tuple[Any, Any, Any], list[tuple[Run, Any]]] = {}
    for run, record in scored:
        groups.setdefault((record.tokenizer, record.scorer, record.n), []).append((run, record))
    basis = max(groups, key=lambda b: (len(groups[b]), max(run.id for run, _r in groups[b])))
    run, record = max(groups[basis], key=lambda pair: (float(pair[1].final), -pair[0].id))
    unranked = tuple(sorted(r.id for b, members in groups.items() if b != basis for r, _rec in members))
    return SweepBest(run.id, run.nickname, float(record.final), record.tokenizer, record.scorer, record.n,
                     len(groups[basis]), unranked)


@dataclass(frozen=True)
class SweepStatus:
    """A sweep as ``ls``, the TUI, the results and the hand-off show it."""

    sweep: Sweep
    runs: tuple[Run, ...]  # the latest run of each variant, in the sweep's variant order
    members: tuple[int, ...]  # every run id of the sweep (a retried variant has several)
    best: SweepBest | None

    @property
    def id(self) -> str:
        return self.sweep.id

    @property
    def total(self) -> int:
        return len(self.runs)

    def count(self, *states: RunState) -> int:
        return sum(run.state in states for run in self.runs)

    @property
    def done(self) -> int:
        """Variants whose latest run is final (succeeded, failed, cancelled or interrupted)."""
        return sum(run.state.is_final for run in self.runs)

    @property
    def ended(self) -> bool:
        return bool(self.runs) and self.done == self.total

    @property
    def progress_text(self) -> str:
        """``"3/4 done"``, then what did not succeed: ``"4/4 done, 1 failed"``."""
        text = f"{self.done}/{self.total} done"
        bad = [(self.count(RunState.FAILED), "failed"), (self.count(RunState.CANCELLED), "cancelled"),
               (self.count(RunState.INTERRUPTED), "interrupted")]
        return text + "".join(f", {n} {what}" for n, what in bad if n)

    @property
    def keys_text(self) -> str:
        """``"lr × r"``: the swept keys."""
        return " × ".join(short_key(key) for key in self.sweep.keys)

    @property
    def state(self) -> str:
        """``running`` while any variant runs, ``queued`` while any waits, else ``ended``."""
        if self.count(RunState.RUNNING):
            return "running"
        if self.count(RunState.QUEUED, RunState.WAITING):
            return "queued"
        return "ended"

    def to_json(self) -> dict[str, Any]:
        """``id``, ``nickname``, ``config_path``, ``keys``, ``runs`` (latest per variant), ``members``,
        ``total``, ``done``, ``succeeded``, ``failed``, ``progress``, ``state``, ``best``."""
        return {"id": self.id, "nickname": self.sweep.nickname, "config_path": self.sweep.config_path,
                "keys": list(self.sweep.keys), "runs": [run.id for run in self.runs], "members": list(self.members),
                "total": self.total, "done": self.done, "succeeded": self.count(RunState.SUCCEEDED),
                "failed": self.count(RunState.FAILED), "progress": self.progress_text, "state": self.state,
                "best": self.best.to_json() if self.best else None}


def sweep_status(sweep: Sweep, runs: list[Run]) -> SweepStatus:
    """What ``sweep`` is now, from every run (any order): its members carry its id."""
    members = sorted((run for run in runs if run.sweep == sweep.id), key=lambda r: r.id)
    latest: dict[str, Run] = {}
    for run in members:
        latest[run.nickname] = run  # a retried variant: its newest run stands for it
    order = [name for name in sweep.variants if name in latest] + [n for n in latest if n not in sweep.variants]
    current = tuple(latest[name] for name in order)
    return SweepStatus(sweep, current, tuple(run.id for run in members), sweep_best(list(current)))


def sweep_statuses(sweeps: list[Sweep], runs: list[Run]) -> list[SweepStatus]:
    """:func:`sweep_status` of each sweep, one pass over the runs (a 200-run sweep costs one dict)."""
    by_sweep: dict[str, list[Run]] = {}
    for run in runs:
        if run.sweep:
            by_sweep.setdefault(run.sweep, []).append(run)
    return [sweep_status(sweep, by_sweep.get(sweep.id, [])) for sweep in sweeps]


def sweep_groups(runs: list[Run]) -> dict[str, list[Run]]:
    """Sweep id → the latest run of each of its variants (by nickname), from the runs alone (any order)."""
    latest: dict[str, dict[str, Run]] = {}
    for run in sorted((r for r in runs if r.sweep), key=lambda r: r.id):
        latest.setdefault(str(run.sweep), {})[run.nickname] = run
    return {sweep: list(members.values()) for sweep, members in latest.items()}
