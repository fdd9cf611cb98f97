"""Collapsing chunk rankings to documents, and reciprocal rank fusion (pure functions)."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence


def collapse(ranked: Iterable[tuple[int, float]], doc_of: Mapping[int, int]) -> list[tuple[int, int, float]]:
    """(chunk, score) best first -> (document, best chunk, score) best first; unknown chunks are dropped."""
    seen: dict[int, tuple[int, int, float]] = {}
    for chunk, score in ranked:
        doc = doc_of.get(chunk)
        if doc is not None and doc not in seen:
            seen[doc] = (doc, chunk, score)
    return list(seen.values())


def rrf(rankings: Sequence[Sequence[tuple[int, int, float]]], weights: Sequence[float],
        k: int = 60) -> list[tuple[int, int, float]]:
    """Reciprocal rank fusion of document rankings: score(d) = sum_i w_i / (k + rank_i(d)).

    Each ranking is (document, best chunk, score) best first; rank is 1-based. A document's
    chunk comes from the ranking that contributes most to its fused score (the earlier ranking
    on a tie). Ties in fused score go to the smaller document id, so the order is deterministic.
    """
    fused: dict[int, float] = {}
    best: dict[int, tuple[float, int]] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, (doc, chunk, _) in enumerate(ranking, 1):
            part = weight / (k + rank)
            fused[doc] = fused.get(doc, 0.0) + part
            if doc not in best or part > best[doc][0]:
                best[doc] = (part, chunk)
    order = sorted(fused, key=lambda d: (-fused[d], d))
    return [(d, best[d][1], fused[d]) for d in order]
