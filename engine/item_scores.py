"""Provides per-item ROUGE: the score of each dialogue, computed exactly as ``python -m engine evaluate``
computes its mean (same tokenizer, same scorer, same per-reference averaging).

It reuses :mod:`engine.metrics`' internals instead of re-deriving them, so the mean of these items
is the evaluate number to the last bit (``tests/manager/test_samples.py`` checks it through the CLI).
Torch-free and light at import: the manager's per-sample insights import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine import metrics


@dataclass(frozen=True)
class ItemScore:
    """ROUGE F1 (0..1) of one prediction, averaged over that item's references."""

    rouge1: float
    rouge2: float
    rougeL: float  # noqa: N815 - the name every ROUGE table and the events schema use

    @property
    def final(self) -> float:
        """mean(R1, R2, RL) × 100, the leaderboard's scale."""
        return (self.rouge1 + self.rouge2 + self.rougeL) / 3 * 100


def score_items(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    tokenizer: str = "mecab",
    scorer: str = "competition",
) -> list[ItemScore]:
    """Score each prediction on its own, the way :func:`engine.metrics.score` scores every item.

    Args:
        predictions: One predicted summary per item.
        references: For each item, its reference summaries (at least one).
        tokenizer: ``mecab``, ``whitespace`` or ``char`` (competition scorer only).
        scorer: ``competition`` or ``baseline``.

    Returns:
        One :class:`ItemScore` per item, in input order; an empty prediction scores 0.

    Raises:
        ValueError: the same bad input :func:`engine.metrics.score` refuses.
    """
    # Validation (and its messages) come from the aggregate scorer itself: one definition.
    if scorer not in metrics.SCORERS:
        raise ValueError(f"unknown scorer {scorer!r}; choose one of {', '.join(metrics.SCORERS)}")
    if tokenizer not in metrics.TOKENIZERS:
        raise ValueError(f"unknown tokenizer {tokenizer!r}; choose one of {', '.join(metrics.TOKENIZERS)}")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists; pass one list per prediction")
    if any(not refs for refs in references):
        raise ValueError("an item has no reference; give each prediction at least one")
    if scorer == "baseline":
        rows = [
            tuple(metrics._mean_in_order(column) for column in zip(*(metrics.baseline_pair(pred, ref) for ref in refs)))
            for pred, refs in zip(predictions, references)
        ]
    else:
        from rouge_score import rouge_scorer  # lazy: pulls nltk, numpy and absl

        rouge = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"],
                                         tokenizer=metrics._RougeScoreTokenizer(tokenizer))
        rows = [
            (0.0, 0.0, 0.0) if not pred.strip() else metrics._competition_item(rouge, pred, refs)
            for pred, refs in zip(predictions, references)
        ]
    return [ItemScore(*row) for row in rows]


def mean_scores(items: Sequence[ItemScore]) -> tuple[float, float, float]:
    """(R1, R2, RL) means over the items, summed in the order evaluate sums them."""
    if not items:
        raise ValueError("nothing to average: no items")
    return tuple(metrics._mean_in_order([getattr(item, key) for item in items]) for key in ("rouge1", "rouge2", "rougeL"))
