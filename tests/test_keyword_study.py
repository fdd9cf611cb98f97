"""`searchd keyword-study`: its pieces by hand, and its `bm25 max` row equal to what `searchd eval` measures."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from searchd.eval.keyword_study import boilerplate_share, documents
from tests.test_evaluate import _eval_args


class _Rows:
    """Just the arrays `documents` reads: document row of each chunk."""

    def __init__(self, rows):
        self.rows = np.asarray(rows)


def test_documents_from_chunks_by_hand():
    corpus = _Rows([0, 0, 0, 1, 1, 2])  # chunks 0-2 of document 0, 3-4 of 1, 5 of 2
    scores = np.array([5.0, 4.0, 1.0, 6.0, 0.5, 0.0])
    matched = scores > 0  # chunk 5 matches nothing: document 2 is not found
    assert documents(corpus, scores, matched, "max") == [(1, 6.0), (0, 5.0)]
    assert documents(corpus, scores, matched, "sum2") == [(0, 9.0), (1, 6.5)]
    # soft maximum at T = 1: 5 + log(1 + e^-1 + e^-4) = 5 + log(1.3862) = 5.3266; 6 + log(1 + e^-5.5) = 6.0041
    soft = documents(corpus, scores, matched, "soft1")
    assert [d for d, _ in soft] == [1, 0] and [s for _, s in soft] == pytest.approx([6.0041, 5.3266], abs=1e-4)
    with pytest.raises(ValueError, match="'mean'"):
        documents(corpus, scores, matched, "mean")


def test_boilerplate_share_counts_shingles_found_in_enough_documents():
    recital = "the benefit of the doubt rule applies when the evidence is in approximate balance"  # 14 words
    texts = [(1, recital), (2, recital), (3, recital + " one two three four five six seven eight nine ten"),
             (4, "a wholly different passage about a knee injury in service and nothing else here")]
    doc_of = {1: 10, 2: 11, 3: 12, 4: 12}
    share = boilerplate_share(texts, doc_of, min_docs=3)
    # 14 words -> 7 shingles, each in documents 10, 11, 12: all boilerplate
    assert share[1] == share[2] == 1.0
    # chunk 3: 24 words -> 17 shingles, the recital's 7 in three documents, the 10 reaching into new words in one
    assert share[3] == pytest.approx(7 / 17)
    assert share[4] == 0.0
    assert boilerplate_share(texts, doc_of, min_docs=4)[1] == 0.0


def test_study_rows_and_phrase_sums_match_the_eval(sample_dir, tmp_path):
    from indexer.pipeline import STORE
    from indexer.settings import load_settings
    from indexer.store import DocumentStore
    from searchd.cli import main
    from searchd.eval.keyword_study import Corpus

    args = _eval_args(sample_dir, tmp_path, "bm25")
    assert CliRunner().invoke(main, args).exit_code == 0
    mean = json.loads((tmp_path / "out" / "results.json").read_text())["systems"]["bm25"]["mean"]
    sets = [a for a in args if a.startswith(("eval.", "train_embedder."))] + ["eval.permutations=200"]
    result = CliRunner().invoke(main, ["keyword-study", "--dataset", str(sample_dir), "--split", "test"]
                                + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    row = next(l for l in result.output.splitlines() if l.startswith("| bm25 max |")).split("|")
    assert float(row[2]) == round(mean["ndcg@10"], 4) and float(row[3]) == round(mean["map@100"], 4)
    assert "| whole-document BM25 |" in result.output and "| feedback 5 docs" in result.output
    # BM25 sums over phrases: the per-phrase parts add up to FTS5's score of the whole OR query
    settings = load_settings(None, sets)
    store = DocumentStore(settings.store.url or tmp_path / "idx" / "sample-store" / STORE, create=False)  # postgres: the env URL
    try:
        corpus = Corpus(store, settings)
        r = corpus.retrieve("malpractice warfarin bleeding")
        ids, scores = store.keyword_scored(r.phrases and "(" + " OR ".join(f'"{p}"' for p in r.phrases) + ")",
                                           None, corpus.weights)
        got = r.total()[[corpus.position[int(i)] for i in ids]]
        assert len(ids) > 0 and got == pytest.approx(scores, abs=1e-8)
    finally:
        store.close()
