"""Provides a timing of the metric at competition size: 499 dev items x 3 references, every scorer.

Run: ``python benchmarks/metric_speed.py [--items 499] [--refs 3]``. Prints seconds; asserts nothing
(timings depend on the machine and belong in docs/benchmarks.md, not in tests).
"""

from __future__ import annotations

import argparse
import random
import time

from engine.metrics import score, tokenize

_SUBJECTS = ["#Person1#은", "#Person2#는", "#Person1#과 #Person2#는", "Tom은", "두 사람은"]
_OBJECTS = ["호텔 방을", "병원 진료를", "저녁 식사를", "비행기 표를", "회의 일정을", "새 휴대폰을", "영화표를"]
_VERBS = ["예약한다", "취소했다", "바꾸기로 했다", "알아보고 있다", "추천한다", "걱정한다"]
_EXTRAS = ["내일 오후 3시에", "주말에", "친구와 함께", "전화로", "가격 때문에", "급하게"]


def _summary(rng: random.Random) -> str:
    """One summary of the competition's typical length (~40 KoBART tokens: two or three clauses)."""
    clauses = [
        f"{rng.choice(_SUBJECTS)} {rng.choice(_EXTRAS)} {rng.choice(_OBJECTS)} {rng.choice(_VERBS)}."
        for _ in range(rng.randint(2, 3))
    ]
    return " ".join(clauses)


def _timed(label: str, fn) -> None:
    start = time.perf_counter()
    result = fn()
    print(f"{label:<50} {time.perf_counter() - start:7.3f} s   final={result.final:7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=499)
    parser.add_argument("--refs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    predictions = [_summary(rng) for _ in range(args.items)]
    references = [[_summary(rng) for _ in range(args.refs)] for _ in range(args.items)]
    print(f"{args.items} items x {args.refs} references")

    start = time.perf_counter()
    tokenize("가")  # first use builds the Mecab tagger (and loads its dictionary)
    print(f"{'cold start: Mecab tagger':<50} {time.perf_counter() - start:7.3f} s")
    _timed("competition, mecab (first: imports rouge-score)", lambda: score(predictions, references))
    _timed("competition, mecab (warm)", lambda: score(predictions, references))
    _timed("competition, whitespace", lambda: score(predictions, references, tokenizer="whitespace"))
    _timed("competition, char", lambda: score(predictions, references, tokenizer="char"))
    _timed("baseline (rouge 1.0.1 reimplemented)", lambda: score(predictions, references, scorer="baseline"))


if __name__ == "__main__":
    main()
