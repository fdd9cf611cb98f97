"""The best documents of a keyword query by BM25, without scoring every chunk that shares a word with it.

Words are OR-ed (searchd/keyword.py), so a query with one common word matches most of the corpus,
and FTS5 computes BM25 for every row it returns: at 100,000 chunks that was 0.3-2 s per query.
BM25 is a sum over the query's phrases, and one phrase adds less than idf * (k1 + 1) to any chunk
(FTS5: k1 = 1.2, idf = log((N - n + 0.5) / (n + 0.5)), at least 1e-6). So the MaxScore rule
applies: score only the chunks that contain one of the rarest phrases (the essential ones), each
with its full score; a chunk with none of them scores below `bound`, the sum of the other phrases'
caps. Once the `need`-th document found scores above that bound, no unscored chunk can enter the
top `need` and the ranking is exact; else the next rarer phrases join the essential set, up to all
of them (the plain query). Which documents match is unchanged: that is the unscored match set.
"""
from __future__ import annotations

import math

import numpy as np

from indexer.store import DocumentStore, StoreSnapshot
from searchd.keyword import KeywordQuery

K1 = 1.2  # FTS5's bm25() constants
IDF_FLOOR = 1e-6


def phrase_cap(count: int, total: int) -> float:
    """The most one phrase found in `count` of `total` chunks can add to a chunk's BM25 score."""
    idf = math.log((total - count + 0.5) / (count + 0.5))
    return (K1 + 1) * max(idf, IDF_FLOOR)


def best_documents(chunks: np.ndarray, scores: np.ndarray, snap: StoreSnapshot,
                   mask: np.ndarray | None) -> list[tuple[int, int, float]]:
    """(document, best chunk, score) best first over scored chunks of the allowed documents; ties by chunk id."""
    rows = snap.chunk_doc_rows(chunks)
    keep = rows >= 0 if mask is None else (rows >= 0) & np.append(mask, False)[rows]
    chunks, scores, rows = chunks[keep], scores[keep], rows[keep]
    order = np.lexsort((chunks, -scores))
    _, first = np.unique(rows[order], return_index=True)  # first = best chunk of each document
    best = order[np.sort(first)]
    return list(zip(snap.doc_ids[rows[best]].tolist(), chunks[best].tolist(), scores[best].tolist()))


def top_documents(store: DocumentStore, snap: StoreSnapshot, query: KeywordQuery, mask: np.ndarray | None,
                  need: int, deadline: float | None, weights: tuple[float, ...] = (1.0, 1.0)) -> list[tuple[int, int, float]]:
    """The `need` best documents (within `mask` when given) by their best chunk's BM25, as the full query ranks them.

    `weights`: FTS5 column weights (title, text). Whatever they are, one phrase adds at most
    idf * (k1 + 1) to a chunk (BM25 saturates in the weighted term frequency), so the bound holds.
    """
    match = query.fts()
    if match is None or need <= 0:
        return []
    phrases = [KeywordQuery((t,), ()).fts() for t in query.include]
    exclude = match[len(KeywordQuery(query.include, ()).fts()):]  # the " NOT ..." tail, kept on every pass
    counts = store.phrase_counts(phrases, deadline)
    # rarest first; a phrase in no chunk adds nothing to any score, so no pass needs it
    order = sorted((i for i in range(len(phrases)) if counts[i] > 0), key=lambda i: (counts[i], i))
    if not order:
        return []
    total = max(len(snap.chunk_ids), 1)
    essential = 1
    while True:
        rest = order[essential:]
        bound = sum(phrase_cap(counts[i], total) for i in rest) * (1 + 1e-9)
        chosen = KeywordQuery(tuple(query.include[i] for i in order[:essential]), ()).fts() + exclude
        chunks, scores = store.keyword_scored(match if not rest else chosen, match, weights, deadline)
        docs = best_documents(chunks, scores, snap, mask)
        if not rest or (len(docs) >= need and docs[need - 1][2] > bound):
            return docs[:need]
        essential = min(2 * essential, len(order))
