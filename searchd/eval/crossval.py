"""Choosing a variant by cross-validation over the queries of one eval set (pure functions).

Picking the best of many fusion variants on the same queries that score it overstates what the
choice is worth. Here each query is scored by the variant that did best on the *other* queries
(leave-one-out) or on the other folds (k-fold, seeded), so the mean is an honest estimate of
"tune on this kind of query, then run on a new one".
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

Scores = Mapping[str, Mapping[str, float]]  # variant -> query id -> score


@dataclass(frozen=True)
class CrossValidated:
    """Held-out scores of the variant chosen without each query, and which variants were chosen."""

    scores: dict[str, float]  # query id -> score of the variant chosen on the other queries
    chosen: dict[str, str]  # query id -> that variant

    def counts(self) -> list[tuple[str, int]]:
        """How often each variant was chosen, most often first."""
        return Counter(self.chosen.values()).most_common()


def _best(scores: Scores, variants: Sequence[str], queries: Sequence[str]) -> str:
    """The variant with the highest mean over `queries`; a tie goes to the earlier variant."""
    means = [float(np.mean([scores[v][q] for q in queries])) if queries else 0.0 for v in variants]
    return variants[int(np.argmax(means))]  # argmax takes the first of equal maxima


def assign_folds(queries: Sequence[str], folds: int, seed: int = 42) -> dict[str, int]:
    """Query id -> fold: `folds` = 0 puts each query in its own fold, else a seeded shuffle dealt round-robin."""
    order = sorted(queries)
    if folds:
        random.Random(seed).shuffle(order)
    n = folds or len(order)
    return {q: i % n for i, q in enumerate(order)}


def cross_validate(scores: Scores, folds: int = 0, seed: int = 42) -> CrossValidated:
    """Each query scored by the variant best on the queries outside its fold; `folds` = 0: leave-one-out.

    Every variant must score the same queries (a ValueError names one that does not).
    """
    variants = list(scores)
    if not variants:
        raise ValueError("cross-validation needs at least one variant")
    queries = sorted(scores[variants[0]])
    for v in variants:
        if sorted(scores[v]) != queries:
            raise ValueError(f"variant {v!r} scores other queries than {variants[0]!r}")
    if folds < 0 or folds == 1 or folds > len(queries):
        raise ValueError(f"folds must be 0 (leave-one-out) or 2..{len(queries)}, got {folds}")
    fold_of = assign_folds(queries, folds, seed)
    out, chosen = {}, {}
    for f in range(max(fold_of.values()) + 1):
        held = [q for q in queries if fold_of[q] == f]
        pick = _best(scores, variants, [q for q in queries if fold_of[q] != f])
        for q in held:
            out[q], chosen[q] = float(scores[pick][q]), pick
    return CrossValidated(out, chosen)
