"""Impact lists: keyword rankings added up from them equal FTS5 scoring every match, and stale lists go unused."""
from __future__ import annotations

import random
import sqlite3

import numpy as np
import pytest

from indexer.documents import Document
from indexer.store import DocumentStore
from searchd import bm25
from searchd.eval.bench import _paragraph_chunker
from searchd.keyword import KeywordQuery, parse

WORDS = ("veteran claim disability stressor court appeal warfarin bleeding kidney lithium patient doctor record "
         "evidence service connection hearing remand denied granted injury knee back hearing tinnitus").split()
WEIGHTS = (2.0, 1.0)
# impact lists and MaxScore exist only for FTS5's bm25(); keyword search on PostgreSQL ranks every match by
# ts_rank_cd in one statement (docs/scale-out.md), so there is nothing of this module to run there
pytestmark = pytest.mark.sqlite_only("impact lists are built from and checked against SQLite FTS5 bm25(); PostgreSQL has none")


def corpus(n_docs: int, seed: int) -> list[Document]:
    """Documents of Zipf-distributed words, so that a few words are in most chunks and many in few."""
    rng = random.Random(seed)
    zipf = [1 / (i + 1) for i in range(len(WORDS))]
    words = lambda n: " ".join(rng.choices(WORDS, zipf, k=n))  # noqa: E731
    return [Document(f"d{seed}-{i}", words(rng.randint(1, 3)),
                     "\n\n".join(words(rng.randint(3, 25)) for _ in range(rng.randint(1, 3))), {"source": "t"})
            for i in range(n_docs)]


@pytest.fixture
def store(tmp_path):
    s = DocumentStore(tmp_path / "store.sqlite")
    s.upsert_documents("c", corpus(150, 0), _paragraph_chunker)
    yield s
    s.close()


def brute(store: DocumentStore, query: KeywordQuery, weights=WEIGHTS) -> list[tuple[int, int, float]]:
    """Every matching chunk scored by FTS5 in one statement, best chunk per document, ties by chunk id."""
    con = sqlite3.connect(store.path)
    rows = con.execute("SELECT f.rowid, c.document_id, -bm25(chunks_fts, ?, ?) FROM chunks_fts f JOIN chunks c "
                       "ON c.id = f.rowid WHERE chunks_fts MATCH ?", (*weights, query.fts())).fetchall()
    con.close()
    best: dict[int, tuple[int, int, float]] = {}
    for chunk, doc, score in sorted(rows, key=lambda r: (-round(r[2], 9), r[0])):
        best.setdefault(doc, (doc, chunk, round(score, 9)))
    return list(best.values())


def queries(n: int, seed: int) -> list[KeywordQuery]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text = " ".join(rng.sample(WORDS, rng.randint(1, 5)))
        if rng.random() < 0.2:
            text += f' "{rng.choice(WORDS)} {rng.choice(WORDS)}"'
        if rng.random() < 0.2:
            text += f" -{rng.choice(WORDS)}"
        out.append(parse(text))
    return [q for q in out if q.fts() is not None]


def check_same(store: DocumentStore, qs: list[KeywordQuery], weights=WEIGHTS, every: int = 1) -> None:
    """bm25.rank as scoring every match ranks, over the documents whose position is a multiple of `every`."""
    snap = store.load_snapshot()
    mask = None if every == 1 else np.arange(len(snap.doc_ids)) % every == 0
    allowed = set(snap.doc_ids.tolist() if mask is None else snap.doc_ids[mask].tolist())
    for q in qs:
        want = [r for r in brute(store, q, weights) if r[0] in allowed]
        for need in (1, 2, 5, 10, len(want) + 1):
            got = bm25.rank(store, snap, q, mask, need, None, weights).documents
            assert [(d, c) for d, c, _ in got] == [(d, c) for d, c, _ in want[:need]], (q, need)
            assert [s for *_, s in got] == [s for *_, s in want[:need]]  # the same floats, rounded alike


@pytest.mark.parametrize("size", [3, 10, 40])
def test_impact_lists_give_the_ranking_of_scoring_every_match(store, size):
    assert store.build_impacts(WEIGHTS, size, progress=False) > 0
    qs = queries(60, size)
    check_same(store, qs)
    check_same(store, qs, every=2)  # under a filter
    check_same(store, qs[:20], every=7)
    # the lists were used: without them, MaxScore would score through keyword_scored
    calls = []
    real = store.keyword_scored
    store.keyword_scored = lambda *a, **k: calls.append(a) or real(*a, **k)
    check_same(store, qs[:10])
    check_same(store, qs[:10], every=2)
    assert not calls


def test_a_list_holds_what_the_term_adds_to_each_chunk(store):
    store.build_impacts(WEIGHTS, 5, progress=False)
    lists = store.term_impacts(WEIGHTS)
    assert lists is not None and lists.terms
    for term in lists.terms:
        ids, scores = store.impact_list(term)
        chunks, want = store.keyword_scored(f'"{term}"', None, WEIGHTS)
        assert len(ids) > 5
        np.testing.assert_array_equal(ids, chunks)
        np.testing.assert_array_equal(np.round(scores, 9), want)


def test_lists_go_unused_once_the_store_changes_or_weights_differ(store):
    store.build_impacts(WEIGHTS, 5, progress=False)
    assert store.term_impacts(WEIGHTS) is not None
    assert store.term_impacts((1.0, 1.0)) is None  # built for other weights
    store.upsert_documents("c", corpus(20, 1), _paragraph_chunker)
    assert store.term_impacts(WEIGHTS) is None  # the idf and lengths moved: stale
    check_same(store, queries(20, 7))  # and search stays exact without them
    store.build_impacts(WEIGHTS, 5, progress=False)
    assert store.term_impacts(WEIGHTS) is not None
    store.apply_changes("c", [], ["d1-0"], _paragraph_chunker)  # a delete also invalidates
    assert store.term_impacts(WEIGHTS) is None


def test_without_lists_nothing_changes(store):
    assert store.term_impacts(WEIGHTS) is None
    for every in (1, 2, 7):  # MaxScore, and the filtered paths
        check_same(store, queries(10, 3), every=every)


def test_phrase_tokens_are_the_fts5_tokens(store):
    got = store.phrase_tokens(["Veterans", "service connection", "Ça"])
    assert got == [["veteran"], ["servic", "connect"], ["ca"]]


def test_bad_size_is_refused(store):
    with pytest.raises(ValueError, match="at least 1"):
        store.build_impacts(WEIGHTS, 0, progress=False)


def test_the_build_makes_lists_once_per_store_state(store, settings):
    from dataclasses import replace

    from indexer.pipeline import build_impact_lists

    s = settings.replace(search=replace(settings.search, impact_list_size=5))
    assert build_impact_lists(s, store) > 0
    assert build_impact_lists(s, store) == 0  # current already
    store.upsert_documents("c", corpus(5, 2), _paragraph_chunker)
    assert build_impact_lists(s, store) > 0
    off = settings.replace(search=replace(settings.search, impact_lists=False))
    store.upsert_documents("c", corpus(5, 3), _paragraph_chunker)
    assert build_impact_lists(off, store) == 0 and store.term_impacts(WEIGHTS) is None
