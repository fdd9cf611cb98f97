"""Collapsing chunk rankings to documents, and fusing document rankings (pure functions).

Rules (search.fusion): `rrf`, reciprocal rank fusion; `minmax` and `zscore`, CombSUM of each
ranking's scores normalised over that ranking (min-max to [0, 1], or to mean 0 and unit standard
deviation), so that a retriever whose best hits stand far above the rest of its list weighs more
on that query. A document missing from a ranking gets that ranking's lowest normalised score
(0 for min-max, the minimum z for z-score): it was not in the window, so it scored at most that.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from indexer.errors import ConfigError, choices

Ranking = Sequence[tuple[int, int, float]]  # (document, best chunk, score), best first


def collapse(ranked: Iterable[tuple[int, float]], doc_of: Mapping[int, int]) -> list[tuple[int, int, float]]:
    """(chunk, score) best first -> (document, best chunk, score) best first; unknown chunks are dropped."""
    seen: dict[int, tuple[int, int, float]] = {}
    for chunk, score in ranked:
        doc = doc_of.get(chunk)
        if doc is not None and doc not in seen:
            seen[doc] = (doc, chunk, score)
    return list(seen.values())


def rrf(rankings: Sequence[Ranking], weights: Sequence[float], k: int = 60) -> list[tuple[int, int, float]]:
    """Reciprocal rank fusion of document rankings: score(d) = sum_i w_i / (k + rank_i(d)).

    Each ranking is (document, best chunk, score) best first; rank is 1-based. A document's
    chunk comes from the ranking that contributes most to its fused score (the earlier ranking
    on a tie). Ties in fused score go to the smaller document id, so the order is deterministic.
    """
    parts = [[weight / (k + rank) for rank in range(1, len(ranking) + 1)] for ranking, weight in zip(rankings, weights)]
    return _combine(rankings, parts, [0.0] * len(rankings))


def normalised(scores: Sequence[float], how: str) -> np.ndarray:
    """Scores of one ranking min-max scaled to [0, 1] or z-scored; a constant list maps to all 1 (or all 0)."""
    x = np.asarray(scores, dtype=np.float64)
    if len(x) == 0:
        return x
    if how == "minmax":
        span = x.max() - x.min()
        return (x - x.min()) / span if span > 0 else np.ones_like(x)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def combsum(rankings: Sequence[Ranking], weights: Sequence[float], how: str) -> list[tuple[int, int, float]]:
    """CombSUM of normalised scores (`how`: minmax | zscore): score(d) = sum_i w_i * norm_i(d)."""
    parts, floors = [], []
    for ranking, weight in zip(rankings, weights):
        z = normalised([s for _, _, s in ranking], how)
        parts.append((weight * z).tolist())
        floors.append(weight * float(z.min()) if len(z) else 0.0)
    return _combine(rankings, parts, floors)


FUSIONS = ("rrf", "minmax", "zscore")


def fuse(rankings: Sequence[Ranking], weights: Sequence[float], rule: str, k: int = 60) -> list[tuple[int, int, float]]:
    """Fuse document rankings with the named rule (search.fusion); a ConfigError names the valid ones."""
    if rule == "rrf":
        return rrf(rankings, weights, k)
    if rule in ("minmax", "zscore"):
        return combsum(rankings, weights, rule)
    raise ConfigError(f"unknown fusion rule {rule!r} (search.fusion); valid: {choices(FUSIONS)}")


def _combine(rankings: Sequence[Ranking], parts: Sequence[Sequence[float]],
             floors: Sequence[float]) -> list[tuple[int, int, float]]:
    """Sum each document's part from every ranking (its floor where absent); chunk from the largest part."""
    present: list[dict[int, tuple[float, int]]] = [
        {doc: (part, chunk) for (doc, chunk, _), part in zip(ranking, ps)} for ranking, ps in zip(rankings, parts)]
    fused: dict[int, float] = {}
    best: dict[int, tuple[float, int]] = {}
    for i, found in enumerate(present):
        for doc, (part, chunk) in found.items():
            if doc not in best or part > best[doc][0]:
                best[doc] = (part, chunk)
    for doc in best:
        fused[doc] = sum(found[doc][0] if doc in found else floor for found, floor in zip(present, floors))
    order = sorted(fused, key=lambda d: (-fused[d], d))
    return [(d, best[d][1], fused[d]) for d in order]


def fuse_windows(dense: Ranking, lexical: Ranking, rule: str, weights: Sequence[float], window: int,
                 k: int = 60) -> list[tuple[int, int, float]]:
    """Fuse two rankings (each cut at the fusion depth), keeping as many documents as the union of their
    top `window` holds: a deeper fusion reorders the result set without making it larger (the facets and
    the total count what search.result_window chose)."""
    fused = fuse([dense, lexical], weights, rule, k)
    if len(dense) > window or len(lexical) > window:
        fused = fused[:len({d for d, _, _ in dense[:window]} | {d for d, _, _ in lexical[:window]})]
    return fused
