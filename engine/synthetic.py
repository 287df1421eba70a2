"""Provides a deterministic synthetic Korean dialogue-summarization set in the competition schema.

Each sample comes from a scenario (a topic, slot choices, turn templates and summary templates).
The summary is built from the same slot values as the dialogue, so a tiny model can learn to copy
who/what/where/when within a minute or two on CPU. ``profile="competition"`` pads dialogues with
small talk and optional exchanges until their lengths resemble the real set (long tail included),
for GPU throughput benchmarks.
"""

from __future__ import annotations

import csv
import io
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.artifacts import atomic_write_text
from engine.contract import SPLIT_FILES, ExitCode
from engine.synthetic_scenarios import BYSTANDER_TURN, FILLERS, GENERIC_EXTRAS, SCENARIOS, Word

PROFILES = ("demo", "competition")
SPLITS = ("train", "dev", "test")
# Columns of each written file; test has neither topic nor summary, like the real test.csv.
COLUMNS = {"train": ("fname", "dialogue", "summary", "topic"), "dev": ("fname", "dialogue", "summary", "topic"),
           "test": ("fname", "dialogue")}

# --- generation ---------------------------------------------------------------------------------


@dataclass
class _Draft:
    turns: list[tuple[int, str]]
    summary: list[str]
    references: list[str]


def _n_speakers(rng: random.Random) -> int:
    # The real set is mostly two-speaker; 3-7 speakers are rare.
    return rng.choices((2, 3, 4, 5, 6, 7), weights=(80, 10, 4, 3, 2, 1))[0]


def _insert(rng: random.Random, turns: list[tuple[int, str]], block: list[tuple[int, str]], start: int = 0) -> None:
    """Insert ``block`` at a random gap where no speaker would talk twice in a row (else at the end)."""
    def fits(at: int) -> bool:
        return (at == 0 or turns[at - 1][0] != block[0][0]) and (at == len(turns) or turns[at][0] != block[-1][0])

    gaps = [at for at in range(min(start, len(turns)), len(turns) + 1) if fits(at)]
    at = rng.choice(gaps) if gaps else len(turns)
    turns[at:at] = block


def _target_turns(rng: random.Random, profile: str) -> int:
    if profile == "demo":
        return rng.randint(6, 12)
    # Log-normal turn counts: mean ~14 turns (~450 characters), a long tail up to 60 turns (~1% over
    # 512 tokens, as in the real set).
    return max(5, min(60, round(math.exp(rng.gauss(2.5, 0.65)))))


def _draft(rng: random.Random, profile: str) -> tuple[str, _Draft]:
    scenario = rng.choice(SCENARIOS)
    values = {name: Word(rng.choice(choices)) for name, choices in scenario.slots.items()}
    turns = [(who, tpl.format_map(values)) for who, tpl in scenario.turns]
    summary = [scenario.summaries[0].format_map(values)]
    references = [s.format_map(values) for s in scenario.summaries]
    target = _target_turns(rng, profile)
    # Optional exchanges add both turns and summary sentences (long summaries follow long dialogues).
    extras = list(scenario.extras)
    rng.shuffle(extras)
    if profile == "demo":
        extras = extras[: rng.randint(0, 1)]
    else:
        extras += rng.sample(GENERIC_EXTRAS, len(GENERIC_EXTRAS))
        extras = extras[: max(0, (target - len(turns)) // 5)]
    for extra in extras:
        _insert(rng, turns, [(who, tpl.format_map(values)) for who, tpl in extra.turns], start=2)
        summary.append(extra.summary.format_map(values))
    while len(turns) + 2 <= target:
        first, second = rng.choice(FILLERS)
        opener = rng.choice((1, 2))
        _insert(rng, turns, [(opener, first), (3 - opener, second)])
    n = _n_speakers(rng)
    if n > 2:
        extra_people = [f"#Person{k}#" for k in range(3, n + 1)]
        for k in range(3, n + 1):
            _insert(rng, turns, [(k, BYSTANDER_TURN)], start=2)
        summary.append(f"{'와 '.join(extra_people[:-1]) + '와 ' if len(extra_people) > 1 else ''}"
                       f"{extra_people[-1]}도 찬성합니다.")
    topic = rng.choice(scenario.topics)
    return topic, _Draft(turns, summary, references)


def _dialogue(turns: list[tuple[int, str]]) -> str:
    return "\n".join(f"#Person{who}#: {text}" for who, text in turns)


def _fnames(split: str, n: int, rng: random.Random) -> list[str]:
    # dev and test skip one index, like the real dev_475 and test_466: never assume contiguous fnames.
    indices = list(range(n + 1 if split != "train" and n > 1 else n))
    if len(indices) > n:
        indices.pop(rng.randint(1, n - 1))
    return [f"{split}_{i}" for i in indices]


def generate(n_train: int, n_dev: int, n_test: int, seed: int = 0, profile: str = "demo") -> dict[str, list[dict]]:
    """Generate the three splits as lists of row dicts.

    Args:
        n_train: rows in train (fname, dialogue, summary, topic).
        n_dev: rows in dev (same columns).
        n_test: rows in test (fname, dialogue only). Test rows also carry ``references`` (three
            summary variants) for :func:`write_dataset`'s ``test_references.csv``.
        seed: the same seed and profile give byte-identical output.
        profile: ``demo`` (6-12 turns, CPU-friendly) or ``competition`` (real-set lengths).

    Returns:
        ``{"train": [...], "dev": [...], "test": [...]}``.

    Raises:
        ValueError: a negative size or an unknown profile.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
    sizes = {"train": n_train, "dev": n_dev, "test": n_test}
    for split, n in sizes.items():
        if n < 0:
            raise ValueError(f"--{split} {n}: the number of rows must be 0 or more")
    out: dict[str, list[dict]] = {}
    for split, n in sizes.items():
        # A string seed is hashed with SHA-512 by random.Random: stable across runs and Python versions.
        rng = random.Random(f"dialsum-synth:{seed}:{profile}:{split}")
        rows = []
        for fname in _fnames(split, n, rng):
            topic, draft = _draft(rng, profile)
            row: dict[str, Any] = {"fname": fname, "dialogue": _dialogue(draft.turns)}
            if split == "test":
                row["references"] = draft.references
            else:
                row["summary"] = " ".join(draft.summary)
                row["topic"] = topic
            rows.append(row)
        out[split] = rows
    return out


def _to_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    # LF line ends like the real files; embedded newlines are quoted by the csv module.
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[row[c] for c in columns] for row in rows])
    return buf.getvalue()


def write_dataset(out: str | Path, **kw: Any) -> dict[str, Path]:
    """Generate and write train.csv, dev.csv, test.csv and test_references.csv into ``out``.

    Args:
        out: directory (created if missing).
        **kw: :func:`generate` arguments (``n_train``, ``n_dev``, ``n_test``, ``seed``, ``profile``).

    Returns:
        Paths by name: ``train``, ``dev``, ``test``, ``test_references`` (fname,summary,summary1,summary2:
        the multi-reference file the evaluator scores test predictions against).
    """
    data = generate(**kw)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory; pass --out a directory")
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for split in SPLITS:
        paths[split] = out / SPLIT_FILES[split]
        atomic_write_text(paths[split], _to_csv(data[split], COLUMNS[split]))
    refs = [{"fname": r["fname"], "summary": r["references"][0], "summary1": r["references"][1],
             "summary2": r["references"][2]} for r in data["test"]]
    paths["test_references"] = out / "test_references.csv"
    atomic_write_text(paths["test_references"], _to_csv(refs, ("fname", "summary", "summary1", "summary2")))
    return paths


def main(args: Any) -> int:
    """``python -m engine synth``: write the set and print one line per file. 0 ok, 2 bad input."""
    try:
        paths = write_dataset(args.out, n_train=args.train, n_dev=args.dev, n_test=args.test, seed=args.seed,
                              profile=getattr(args, "profile", "demo"))
    except ValueError as err:
        print(f"synth: {err}")
        return ExitCode.BAD_INPUT
    for name, path in paths.items():
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        chars = sum(len(r.get("dialogue", "")) for r in rows) / max(1, len(rows))
        extra = f", dialogue mean {chars:.0f} chars" if rows and "dialogue" in rows[0] else ""
        print(f"wrote {path} ({len(rows)} rows{extra})")
    return ExitCode.OK
