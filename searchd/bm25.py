"""The best documents of a keyword query by BM25, without scoring every chunk that shares a word with it.

Words are OR-ed (searchd/keyword.py), so a query with one common word matches most of the corpus,
and FTS5 computes BM25 for every row it returns: at 100,000 chunks that was 0.3-2 s per query.
Which chunks match costs little by comparison: FTS5 returns their ids unscored, and that set is
what keyword mode finds (its total and facets count it). Scoring is then bounded in two ways:

- A filter: only matching chunks of allowed documents are scored (`keyword_scored(..., among=)`,
  up to AMONG of them), all at once when there are at most DIRECT.
- MaxScore. BM25 is a sum over the query's phrases, and one phrase adds less than idf * (k1 + 1)
  to any chunk, whatever the column weights (FTS5: k1 = 1.2, idf = log((N - n + 0.5) / (n + 0.5)),
  at least 1e-6). So score only the candidates that contain one of the rarest phrases (the
  essential ones, `within=`: FTS5 then walks only their rows), each with its full score; a
  chunk with none of them scores below `bound`, the sum of the other phrases' caps. Once the `need`-th document found scores above that bound, no
  unscored chunk can enter the top `need` and the ranking is exact; else the next rarer phrases
  join the essential set, up to all of them.
- Impact lists (indexer/store/impacts.py), when the store has them, filter or not: each common term's
  contribution to every chunk it is in, precomputed by FTS5 at build time. Adding them up per
  matching chunk in query order gives FTS5's own scores (the same floating-point sum), so the
  ranking is the exact one, with no bm25() call per match; rare terms are scored by FTS5 on the
  fly. Without lists for this store state (changed since the build), MaxScore runs.

A PostgreSQL store scores by ts_rank_cd (`store.keyword_scoring`), which is no sum of per-phrase
scores with a known cap: neither MaxScore nor impact lists hold for it, so every allowed match
is scored in one statement, exactly, at the cost of one ts_rank_cd per matching chunk.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from indexer.store import DocumentStore, StoreSnapshot
from searchd.keyword import KeywordQuery

K1 = 1.2  # FTS5's bm25() constants
IDF_FLOOR = 1e-6
EMPTY = np.zeros(0, dtype=np.int64)
DIRECT = 2000  # allowed matching chunks scored in one statement, without MaxScore passes
AMONG = 20000  # at most this many allowed matching chunks restrict the scoring statements


@dataclass(frozen=True)
class KeywordRanking:
    """The top documents of a keyword query, and every chunk it matches (within the filter when one was given)."""

    documents: list[tuple[int, int, float]]  # (document, best chunk, score), best first
    matched: np.ndarray  # chunk ids, ascending


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


def by_impacts(store: DocumentStore, snap: StoreSnapshot, query: KeywordQuery, matched: np.ndarray,
               mask: np.ndarray | None, need: int, deadline: float | None,
               weights: tuple[float, ...]) -> list[tuple[int, int, float]] | None:
    """The top `need` documents of `matched` (the allowed matches), FTS5's scores added up from the impact lists.

    None when the store has no lists for its state (or was written to meanwhile). A phrase without
    a list (in few chunks, or of several words) is scored by FTS5 alone.
    """
    lists = store.term_impacts(weights)
    if lists is None:
        return None
    if len(matched) == 0:
        return []
    parts = []
    for phrase, toks in zip(query.include, store.phrase_tokens(query.include)):
        if len(toks) == 1 and lists.has(toks[0]):
            parts.append(store.impact_list(toks[0]))
        else:
            parts.append(store.phrase_impacts(KeywordQuery((phrase,), ()).fts(), weights, deadline))
    if store.fts_fingerprint() != lists.fingerprint:  # written meanwhile: the lists may not hold any more
        return None
    acc = np.zeros(max([int(matched[-1])] + [int(ids.max()) for ids, _ in parts if len(ids)]) + 1)
    for ids, scores in parts:  # in query order, as FTS5 sums: the same floating-point result
        acc[ids] += scores
    scores = np.round(acc[matched], 9)  # NOT-ed chunks are not in `matched`
    take = 4 * need
    while True:
        # every chunk scoring at least the take-th best: a document outside has all its chunks below
        sel = slice(None) if take >= len(scores) else scores >= np.partition(scores, len(scores) - take)[-take]
        docs = best_documents(matched[sel], scores[sel], snap, mask)
        if len(docs) >= need or take >= len(scores):
            return docs[:need]
        take *= 4


def rank(store: DocumentStore, snap: StoreSnapshot, query: KeywordQuery, mask: np.ndarray | None, need: int,
         deadline: float | None, weights: tuple[float, ...] = (1.0, 1.0), impacts: bool = True) -> KeywordRanking:
    """The `need` best documents (within `mask` when given) by their best chunk's BM25, as the full query ranks them.

    `weights`: FTS5 column weights (title, text). `need` larger than the matching documents returns them all.
    `impacts`: use the impact lists when the store has them (the result is the same either way).
    """
    match = query.fts()
    if match is None:
        return KeywordRanking([], EMPTY)
    matched = store.keyword_chunks(match, deadline)  # unscored: FTS5 merges the OR / NOT itself
    doc_rows = snap.chunk_doc_rows(matched)
    keep = doc_rows >= 0 if mask is None else (doc_rows >= 0) & np.append(mask, False)[doc_rows]
    if mask is not None:
        matched = matched[keep]
    # a narrow filter may allow fewer matching documents than `need`: then the first pass can stop early
    need = min(need, int(np.count_nonzero(np.bincount(doc_rows[keep], minlength=1))))
    if need <= 0:
        return KeywordRanking([], matched)
    if store.keyword_scoring != "bm25":
        chunks, scores = store.keyword_scored(match, matched if mask is not None and len(matched) <= AMONG else None,
                                              weights, deadline)
        return KeywordRanking(best_documents(chunks, scores, snap, mask)[:need], matched)
    if impacts:
        docs = by_impacts(store, snap, query, matched, mask, need, deadline, weights)
        if docs is not None:
            return KeywordRanking(docs, matched)
    counts = store.phrase_counts([KeywordQuery((t,), ()).fts() for t in query.include], deadline)
    # rarest first; a phrase in no chunk adds nothing to any score, so no pass needs it
    order = sorted((i for i in range(len(counts)) if counts[i] > 0), key=lambda i: (counts[i], i))
    total = max(len(snap.chunk_ids), 1)
    # few allowed matches (a narrow filter): score them all at once, FTS5 walking only their id range
    essential = len(order) if mask is not None and len(matched) <= DIRECT else 1
    # a wide filter leaves most matches allowed: shipping their ids to SQLite would cost more than it saves
    among = matched if mask is not None and len(matched) <= AMONG else None
    while True:
        rest = order[essential:]
        bound = sum(phrase_cap(counts[i], total) for i in rest) * (1 + 1e-9)
        within = KeywordQuery(tuple(query.include[i] for i in order[:essential]), ()).fts() if rest else None
        chunks, scores = store.keyword_scored(match, among, weights, deadline, within)
        docs = best_documents(chunks, scores, snap, mask)
        if not rest or (len(docs) >= need and docs[need - 1][2] > bound):
            return KeywordRanking(docs[:need], matched)
        essential = min(2 * essential, len(order))


def top_documents(store: DocumentStore, snap: StoreSnapshot, query: KeywordQuery, mask: np.ndarray | None,
                  need: int, deadline: float | None, weights: tuple[float, ...] = (1.0, 1.0),
                  impacts: bool = True) -> list[tuple[int, int, float]]:
    """The `need` best documents of `rank`, without the match set."""
    return rank(store, snap, query, mask, need, deadline, weights, impacts).documents
