"""StoreSnapshot.facet against a count written out by hand, on random hand-made rows (ties, negations,
mentions of documents no longer in the store, missing metadata)."""
from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from indexer.store import StoreSnapshot


def _rows(seed: int):
    rng = random.Random(seed)
    docs = [(i, rng.choice(["bva", "nm"]), rng.choice(["s1", "s2", None]), rng.choice(["a", "b", "c", None]),
             rng.choice(["x", None]), rng.choice([1999, 2003, 2010, None])) for i in range(1, 60, 2)]
    chunks = [(10 * d, d) for d, *_ in docs]
    mentions = []
    for _ in range(300):  # document 999 is not in the store: its mentions count nowhere
        d = rng.choice([d for d, *_ in docs] + [999])
        label = rng.choice(["Disease", "Chemical"])
        nid = f"MESH:D{rng.randrange(12):02d}"
        mentions.append((d, label, nid, f"name {nid}", rng.choice(["affirmed", "negated", "hypothetical"]), 1))
    return docs, chunks, mentions


def _expected(counts: Counter, limit: int) -> tuple[list[tuple[str, int]], bool]:
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ordered[:limit], len(ordered) > limit


@pytest.mark.parametrize("seed", range(5))
def test_facets_equal_a_hand_count(seed):
    docs, chunks, mentions = _rows(seed)
    snap = StoreSnapshot((seed,), docs, chunks, mentions)
    rng = np.random.default_rng(seed)
    for _ in range(4):
        mask = rng.random(len(docs)) < 0.6
        kept = {d[0] for d, keep in zip(docs, mask) if keep}
        for limit in (3, 50):
            for label in ("Disease", "Chemical", "Gene"):  # Gene: no mentions at all
                pairs = {(d, nid) for d, lab, nid, _n, neg, _c in mentions
                         if lab == label and neg == "affirmed" and d in kept}  # a document counts once
                counts = Counter(nid for _d, nid in pairs)
                got, truncated = snap.facet(label, mask, limit)
                assert ([(i, c) for i, _name, c in got], truncated) == _expected(counts, limit)
            for i, name in enumerate(("collection", "source", "doc_type", "court")):
                counts = Counter(d[i + 1] for d in docs if d[0] in kept and d[i + 1] is not None)
                got, truncated = snap.facet(name, mask, limit)
                assert ([(v, c) for v, _name, c in got], truncated) == _expected(counts, limit)
