"""Provides the competition metric (Korean ROUGE-1/2/L F1 on Mecab morphemes, mean over references)
and the organizer baseline's ``rouge==1.0.1`` numbers; ``engine/evaluate.py`` is the command around it.

Two scorers, because the team mixed them up and their numbers were not comparable:

* ``competition`` (default): every morpheme surface form Mecab returns (punctuation kept, no
  lowercasing or stemming), ROUGE from Google's ``rouge-score`` with that tokenizer (its default
  tokenizer keeps only ``[a-z0-9]`` and so scores Korean 0), F1 averaged over the references of an
  item, then over items. ``final`` = mean(R1, R2, RL) x 100 is the leaderboard number.
* ``baseline``: bit-for-bit what the organizer's baseline printed with ``rouge==1.0.1`` on raw text
  (whitespace tokens, sentences split on ``.``, unique n-grams, summary-level union-LCS), except
  that an empty prediction scores 0 where the package raises.

Light at import time: Mecab and ``rouge-score`` (nltk, numpy, absl) load inside the functions
that need them, so ``python -m engine --help`` and the manager stay fast.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from engine.data import DataError

TOKENIZERS = ("mecab", "whitespace", "char")
SCORERS = ("competition", "baseline")
METRICS_FILE = "metrics.json"

# What each tokenizer means, printed next to the numbers so a table never hides its tokenization.
TOKENIZER_LABELS = {
    "mecab": "Mecab morphemes (what the leaderboard uses)",
    "whitespace": "whitespace-separated words",
    "char": "characters without spaces (much higher than Mecab: the team's 94.51 was a char-level sum)",
}

# How many offending fnames an error message lists before it says "and N more".
_LIST_LIMIT = 10


class MetricInputError(DataError):
    """Bad predictions/references input; the message names the file, the fnames and the fix.

    A :class:`engine.data.DataError`, so callers that already handle data problems (exit 2,
    failure kind ``data``) handle this one too.
    """


@dataclass
class Scores:
    """ROUGE F1 of a set of predictions, averaged over each item's references, then over items.

    Attributes:
        rouge1: ROUGE-1 F1 in 0..1.
        rouge2: ROUGE-2 F1 in 0..1.
        rougeL: ROUGE-L F1 in 0..1.
        tokenizer: How text was split into tokens (``mecab``, ``whitespace`` or ``char``).
        scorer: ``competition`` or ``baseline``.
        n: Number of items (predictions) scored.
        refs_per_item: Mean number of references per item.
        empty_predictions: Predictions that were empty or whitespace only (they score 0).
    """

    rouge1: float
    rouge2: float
    rougeL: float  # noqa: N815 - the name every ROUGE table and the events schema use
    tokenizer: str
    scorer: str
    n: int
    refs_per_item: float
    empty_predictions: int = 0

    @property
    def final(self) -> float:
        """The leaderboard number: mean(R1, R2, RL) x 100."""
        return (self.rouge1 + self.rouge2 + self.rougeL) / 3 * 100

    @property
    def sum(self) -> float:
        """The team's "ROUGE sum": (R1 + R2 + RL) x 100, on a 0..300 scale."""
        return (self.rouge1 + self.rouge2 + self.rougeL) * 100

    def to_dict(self) -> dict[str, Any]:
        """Return the ``--json`` keys (plus ``empty_predictions``)."""
        body = asdict(self)
        empty = body.pop("empty_predictions")
        body.update(final=self.final, sum=self.sum)
        keys = ("rouge1", "rouge2", "rougeL", "final", "sum", "tokenizer", "scorer", "n", "refs_per_item")
        return {**{key: body[key] for key in keys}, "empty_predictions": empty}


# --- tokenizers -----------------------------------------------------------------------------

_tagger: Any = None
# Guards both construction and parsing: a MeCab tagger is not documented as thread-safe, and the
# lock costs nothing next to the parse itself.
_tagger_lock = threading.Lock()


def _mecab_tagger() -> Any:
    """Return the process-wide Mecab tagger, building it on first use."""
    global _tagger
    if _tagger is None:
        with _tagger_lock:
            if _tagger is None:
                import mecab_ko  # lazy: a C extension plus a dictionary, not needed for --help

                _tagger = mecab_ko.Tagger()
    return _tagger


def _mecab_morphemes(text: str) -> list[str]:
    tagger = _mecab_tagger()
    surfaces = []
    with _tagger_lock:
        node = tagger.parseToNode(text)
        while node is not None:
            # BOS/EOS nodes carry no text; every other node is one morpheme, punctuation included.
            if node.surface:
                surfaces.append(node.surface)
            node = node.next
    return surfaces


def tokenize(text: str, tokenizer: str = "mecab") -> list[str]:
    """Split ``text`` into the tokens the competition scorer compares.

    Args:
        text: Any text; empty or whitespace-only text gives no tokens.
        tokenizer: ``mecab`` (morpheme surface forms, punctuation kept, no lowercasing),
            ``whitespace`` (``str.split``) or ``char`` (every character that is not whitespace).

    Returns:
        The tokens in order.

    Raises:
        ValueError: ``tokenizer`` is not one of :data:`TOKENIZERS`.
    """
    if tokenizer == "mecab":
        return _mecab_morphemes(text) if text.strip() else []
    if tokenizer == "whitespace":
        return text.split()
    if tokenizer == "char":
        return [ch for ch in text if not ch.isspace()]
    raise ValueError(f"unknown tokenizer {tokenizer!r}; choose one of {', '.join(TOKENIZERS)}")


class _RougeScoreTokenizer:
    """Adapter for ``rouge_score``: it only needs an object with ``tokenize(text)``."""

    def __init__(self, name: str):
        self.name = name

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, self.name)


# --- competition scorer (rouge-score with a Korean tokenizer) ---------------------------------


def _competition_item(scorer: Any, prediction: str, references: Sequence[str]) -> tuple[float, float, float]:
    per_ref = [scorer.score(ref, prediction) for ref in references]
    return tuple(statistics.fmean(s[key].fmeasure for s in per_ref) for key in ("rouge1", "rouge2", "rougeL"))


# --- baseline scorer (rouge==1.0.1 reimplemented) ----------------------------------------------
# Written out rather than called so that an empty prediction scores 0 instead of raising, and so
# that the definition is readable here; tests/engine/test_metrics.py checks it against the package.


def _baseline_sentences(text: str) -> list[str]:
    # rouge 1.0.1 keeps every non-empty piece between dots, so a piece of spaces becomes "".
    return [" ".join(piece.split()) for piece in text.split(".") if len(piece) > 0]


def _baseline_words(sentences: Sequence[str]) -> list[str]:
    # split(" ") (not split()) on purpose: an empty sentence yields the token "" as in the package.
    return [word for sentence in sentences for word in sentence.split(" ")]


def _ngram_set(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _baseline_f1(hyp_count: int, ref_count: int, overlap: int) -> float:
    # Same operations in the same order as rouge.rouge_score.f_r_p_rouge_n, so floats match exactly.
    precision = 0.0 if hyp_count == 0 else overlap / hyp_count
    recall = 0.0 if ref_count == 0 else overlap / ref_count
    return 2.0 * ((precision * recall) / (precision + recall + 1e-8))


def _lcs_words(ref: Sequence[str], hyp: Sequence[str]) -> set[str]:
    """Return the words of the one LCS that rouge 1.0.1 reconstructs (its tie-break matters)."""
    rows, cols = len(ref), len(hyp)
    table = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(1, rows + 1):
        for j in range(1, cols + 1):
            if ref[i - 1] == hyp[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    words: set[str] = set()
    i, j = rows, cols
    while i > 0 and j > 0:
        if ref[i - 1] == hyp[j - 1]:
            words.add(ref[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def baseline_pair(prediction: str, reference: str) -> tuple[float, float, float]:
    """Score one pair exactly as ``rouge.Rouge().get_scores(prediction, reference)`` (F1 only).

    Args:
        prediction: Raw predicted summary.
        reference: Raw reference summary.

    Returns:
        ``(rouge1, rouge2, rougeL)`` F1; all 0.0 where the package would raise (nothing but dots
        or nothing at all on either side).
    """
    hyp_sentences, ref_sentences = _baseline_sentences(prediction), _baseline_sentences(reference)
    if not hyp_sentences or not ref_sentences:
        return 0.0, 0.0, 0.0
    hyp_words, ref_words = _baseline_words(hyp_sentences), _baseline_words(ref_sentences)
    rouge_n = []
    for n in (1, 2):
        hyp_ngrams, ref_ngrams = _ngram_set(hyp_words, n), _ngram_set(ref_words, n)
        rouge_n.append(_baseline_f1(len(hyp_ngrams), len(ref_ngrams), len(hyp_ngrams & ref_ngrams)))
    # Summary-level ROUGE-L: the union (as a set of words) of the LCS of every reference sentence
    # with every predicted sentence, over the counts of distinct words on each side.
    union: set[str] = set()
    for ref_sentence in ref_sentences:
        for hyp_sentence in hyp_sentences:
            union |= _lcs_words(ref_sentence.split(" "), hyp_sentence.split(" "))
    recall = len(union) / len(set(ref_words))
    precision = len(union) / len(set(hyp_words))
    rouge_l = 2.0 * ((precision * recall) / (precision + recall + 1e-8))
    return rouge_n[0], rouge_n[1], rouge_l


def _mean_in_order(values: Sequence[float]) -> float:
    # rouge 1.0.1 adds scores one by one from 0 and divides once; plain sum() would too on 3.11,
    # but 3.12 made sum() compensated, which changes the last bits.
    total = 0.0
    for value in values:
        total += value
    return total / len(values)


# --- scoring ----------------------------------------------------------------------------------


def score(
    predictions: list[str],
    references: list[list[str]],
    tokenizer: str = "mecab",
    scorer: str = "competition",
) -> Scores:
    """Score predictions against their references.

    Args:
        predictions: One predicted summary per item.
        references: For each item, its reference summaries (at least one).
        tokenizer: Token split for the competition scorer (see :func:`tokenize`). The baseline
            scorer always splits raw text on spaces, as ``rouge==1.0.1`` does, and reports
            ``whitespace``.
        scorer: ``competition`` (rouge-score on the chosen tokens, counts clipped, ROUGE-L over the
            whole text) or ``baseline`` (rouge 1.0.1: unique n-grams, sentences split on ``.``).

    Returns:
        Mean F1 over items, each item being the mean over its references. Empty predictions score
        0 and are counted in ``empty_predictions``.

    Raises:
        ValueError: Unknown tokenizer or scorer, lengths differ, an item has no reference, or
            there is nothing to score.
    """
    if scorer not in SCORERS:
        raise ValueError(f"unknown scorer {scorer!r}; choose one of {', '.join(SCORERS)}")
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {tokenizer!r}; choose one of {', '.join(TOKENIZERS)}")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists; pass one list per prediction")
    if not predictions:
        raise ValueError("nothing to score: no predictions were given")
    without = [i for i, refs in enumerate(references) if not refs]
    if without:
        raise ValueError(f"items {listed(without)} have no reference; give each prediction at least one")

    if scorer == "baseline":
        tokenizer = "whitespace"
        items = [
            tuple(_mean_in_order(column) for column in zip(*(baseline_pair(pred, ref) for ref in refs)))
            for pred, refs in zip(predictions, references)
        ]
    else:
        from rouge_score import rouge_scorer  # lazy: pulls nltk, numpy and absl

        rouge = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_RougeScoreTokenizer(tokenizer))
        items = [
            (0.0, 0.0, 0.0) if not pred.strip() else _competition_item(rouge, pred, refs)
            for pred, refs in zip(predictions, references)
        ]
    r1, r2, rl = (_mean_in_order([item[k] for item in items]) for k in range(3))
    return Scores(
        rouge1=r1,
        rouge2=r2,
        rougeL=rl,
        tokenizer=tokenizer,
        scorer=scorer,
        n=len(predictions),
        refs_per_item=statistics.fmean(len(refs) for refs in references),
        empty_predictions=sum(1 for pred in predictions if not pred.strip()),
    )


def listed(names: Sequence[Any]) -> str:
    shown = ", ".join(str(name) for name in names[:_LIST_LIMIT])
    more = len(names) - _LIST_LIMIT
    return f"{shown} (and {more} more)" if more > 0 else shown
