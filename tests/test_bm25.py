"""Keyword ranking without scoring every match: the same documents, in the same order, as scoring all of them."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from search_fixtures import build_sample_index

from searchd import bm25
from searchd.keyword import parse
from searchd.query import Query

QUERIES = ["veteran PTSD stressor", "the court and the doctor", "warfarin bleeding -intracranial",
           '"service connection" veteran denied', "patient", "lithium kidney disease treatment court"]


@pytest.fixture
def service(settings, sample_dir):
    return build_sample_index(settings, sample_dir)


def brute(service, q: str, allowed: set[int] | None) -> list[tuple[int, int, float]]:
    """Every matching chunk scored by FTS5 in one statement, best chunk per document, ties by chunk id."""
    con = sqlite3.connect(service.settings.index.dir / "store.sqlite")
    rows = con.execute("SELECT f.rowid, c.document_id, -bm25(chunks_fts) FROM chunks_fts f JOIN chunks c "
                       "ON c.id = f.rowid WHERE chunks_fts MATCH ?", (parse(q).fts(),)).fetchall()
    con.close()
    best: dict[int, tuple[int, int, float]] = {}
    for chunk, doc, score in sorted(rows, key=lambda r: (-round(r[2], 9), r[0])):
        if (allowed is None or doc in allowed) and doc not in best:
            best[doc] = (doc, chunk, round(score, 9))
    return list(best.values())


@pytest.mark.parametrize("q", QUERIES)
@pytest.mark.parametrize("filtered", [False, True])
def test_top_documents_equal_scoring_every_match(service, q, filtered):
    snap = service.snapshot()
    mask = (np.arange(len(snap.doc_ids)) % 2 == 0) if filtered else None
    allowed = set(snap.doc_ids[mask].tolist()) if filtered else None
    want = brute(service, q, allowed)
    for need in range(1, len(want) + 2):
        got = bm25.top_documents(service.store, snap, parse(q), mask, need, None)
        assert [(d, c) for d, c, _ in got] == [(d, c) for d, c, _ in want[:need]]
        np.testing.assert_allclose([s for _, _, s in got], [s for _, _, s in want[:need]], rtol=1e-9, atol=1e-9)


def test_rare_words_are_scored_first_and_common_ones_only_when_needed(service, monkeypatch):
    """The first pass scores only chunks with the rarest word; more join only while unscored chunks could win."""
    passes = []
    real = service.store.keyword_scored
    monkeypatch.setattr(service.store, "keyword_scored", lambda e, m, w=(1.0, 1.0), d=None: passes.append(e) or real(e, m, w, d))
    words = parse("patient court veteran prazosin")
    top = bm25.top_documents(service.store, service.snapshot(), words, None, 1, None)
    counts = service.store.phrase_counts([f'"{w}"' for w in words.include])
    rarest = [words.include[i] for i in sorted(range(len(counts)), key=lambda i: (counts[i], i))]
    assert rarest[0] == "prazosin" and passes[0] == '"prazosin"'
    assert passes[1:] == [f'("prazosin" OR "{rarest[1]}")', '("patient" OR "court" OR "veteran" OR "prazosin")'][:len(passes) - 1]
    assert top[0][0] == brute(service, "patient court veteran prazosin", None)[0][0]


def test_keyword_mode_finds_every_match_and_counts_exactly(service):
    """The total and the facets of keyword mode are over every matching document, not only the scored ones."""
    result = service.search(Query("the court and the doctor", "keyword", k=1))
    assert result.total == len(brute(service, "the court and the doctor", None))
    assert sum(v.count for f in result.facets if f.name == "collection" for v in f.values) == result.total


def test_phrase_cap_bounds_fts5_contributions():
    assert bm25.phrase_cap(900, 1000) == pytest.approx(2.2e-6)  # a word in most chunks is capped by the idf floor
    assert bm25.phrase_cap(1, 1000) > bm25.phrase_cap(10, 1000) > 0
