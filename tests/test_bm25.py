"""Keyword ranking without scoring every match: the same documents, in the same order, as scoring all of them."""
from __future__ import annotations

import numpy as np
import pytest
from search_fixtures import brute_keyword, build_sample_index

from searchd import bm25
from searchd.keyword import parse
from searchd.query import Query

QUERIES = ["veteran PTSD stressor", "the court and the doctor", "warfarin bleeding -intracranial",
           '"service connection" veteran denied', "patient", "lithium kidney disease treatment court"]


@pytest.fixture
def service(settings, sample_dir):
    return build_sample_index(settings, sample_dir)


def brute(service, q: str, allowed: set[int] | None, weights=(1.0, 1.0)) -> list[tuple[int, int, float]]:
    """Every matching chunk scored in one statement (FTS5 bm25, or ts_rank_cd), best chunk per document, ties by chunk id."""
    rows = brute_keyword(service.store, q, weights)
    best: dict[int, tuple[int, int, float]] = {}
    for chunk, doc, score in sorted(rows, key=lambda r: (-round(r[2], 9), r[0])):
        if (allowed is None or doc in allowed) and doc not in best:
            best[doc] = (doc, chunk, round(score, 9))
    return list(best.values())


@pytest.mark.parametrize("q", QUERIES)
@pytest.mark.parametrize("filtered", [False, True, "one"])
def test_top_documents_equal_scoring_every_match(service, q, filtered):
    snap = service.snapshot()
    mask = None if not filtered else (np.arange(len(snap.doc_ids)) % (2 if filtered is True else len(snap.doc_ids)) == 0)
    allowed = set(snap.doc_ids[mask].tolist()) if filtered else None
    want = brute(service, q, allowed)
    for need, impacts in ((n, i) for n in range(1, len(want) + 2) for i in (True, False)):  # lists, MaxScore
        found = bm25.rank(service.store, snap, parse(q), mask, need, None, impacts=impacts)
        got = found.documents
        assert set(snap.chunk_documents(found.matched).values()) == {d for d, _, _ in want}  # the match set
        assert [(d, c) for d, c, _ in got] == [(d, c) for d, c, _ in want[:need]]
        np.testing.assert_allclose([s for _, _, s in got], [s for _, _, s in want[:need]], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("weights", [(2.0, 1.0), (0.0, 1.0), (5.0, 0.5)])
@pytest.mark.parametrize("q", ["veteran PTSD stressor", "warfarin bleeding -intracranial", "patient court"])
def test_column_weights_rank_as_fts5_weighted_bm25_does(service, q, weights):
    snap = service.snapshot()
    mask = np.arange(len(snap.doc_ids)) % 2 == 1
    for m, allowed in ((None, None), (mask, set(snap.doc_ids[mask].tolist()))):
        want = brute(service, q, allowed, weights)
        for impacts in (True, False):
            got = bm25.top_documents(service.store, snap, parse(q), m, 5, None, weights, impacts)
            assert [(d, c) for d, c, _ in got] == [(d, c) for d, c, _ in want[:5]]
            np.testing.assert_allclose([s for _, _, s in got], [s for _, _, s in want[:5]], rtol=1e-9, atol=1e-9)


@pytest.mark.sqlite_only("MaxScore passes hold for BM25's per-phrase caps; PostgreSQL's ts_rank_cd is scored in one pass")
def test_rare_words_are_scored_first_and_common_ones_only_when_needed(service, monkeypatch):
    """The first pass scores only chunks with the rarest word; more join only while unscored chunks could win."""
    passes = []
    real = service.store.keyword_scored
    monkeypatch.setattr(service.store, "keyword_scored",
                        lambda m, a=None, w=(1.0, 1.0), d=None, e=None: passes.append((a, e)) or real(m, a, w, d, e))
    words = parse("patient court veteran prazosin")
    counts = dict(zip(words.include, service.store.phrase_counts([f'"{w}"' for w in words.include])))
    rarest = sorted(words.include, key=lambda w: (counts[w], words.include.index(w)))
    top = bm25.top_documents(service.store, service.snapshot(), words, None, 1, None)
    assert rarest[0] == "prazosin" and passes[0] == (None, '"prazosin"')
    if len(passes) > 1:  # the next pass adds the next rarest word; the last scores every match (within None)
        assert passes[1][1] in (f'("prazosin" OR "{rarest[1]}")', None)
    assert len(passes) < len(words.include) and top[0][0] == brute(service, "patient court veteran prazosin", None)[0][0]


def test_a_filter_scores_only_matching_chunks_of_allowed_documents(service, monkeypatch):
    """Under a filter, no chunk of a document the filter excludes is ever scored."""
    passes = []
    real = service.store.keyword_scored
    monkeypatch.setattr(service.store, "keyword_scored",
                        lambda m, a=None, w=(1.0, 1.0), d=None, e=None: passes.append((a, e)) or real(m, a, w, d, e))
    snap = service.snapshot()
    mask = np.arange(len(snap.doc_ids)) % 3 == 0
    allowed = set(snap.doc_ids[mask].tolist())
    got = bm25.top_documents(service.store, snap, parse("the court and the doctor"), mask, 3, None)
    assert [d for d, _, _ in got] == [d for d, _, _ in brute(service, "the court and the doctor", allowed)[:3]]
    scored = np.concatenate([among for among, _ in passes])
    assert set(snap.chunk_documents(scored).values()) <= allowed


def test_keyword_mode_finds_every_match_and_counts_exactly(service):
    """The total and the facets of keyword mode are over every matching document, not only the scored ones."""
    result = service.search(Query("the court and the doctor", "keyword", k=1))
    assert result.total == len(brute(service, "the court and the doctor", None))
    assert sum(v.count for f in result.facets if f.name == "collection" for v in f.values) == result.total


def test_phrase_cap_bounds_fts5_contributions():
    assert bm25.phrase_cap(900, 1000) == pytest.approx(2.2e-6)  # a word in most chunks is capped by the idf floor
    assert bm25.phrase_cap(1, 1000) > bm25.phrase_cap(10, 1000) > 0
