"""Retrieval metrics: hand-worked cases, then cross-checks against sentence-transformers and pytrec_eval."""
from __future__ import annotations

import json
import math
import random
import sqlite3

import pytest
from typing import Mapping

from searchd.eval.metrics import (Cutoffs, accuracy_at_k, map_at_k, mrr_at_k, ndcg_at_k, precision_at_k,
                             recall_at_k, score_run)

# One query, judgments: A=2, B=1, C=0 (judged, not relevant), D=1. Relevant: A, B, D (3 docs).
QRELS = {"A": 2, "B": 1, "C": 0, "D": 1}
# The system returns X, B, C, A, Y, D (X and Y unjudged).
RUN = ["X", "B", "C", "A", "Y", "D"]


def ranking_from_scores(scores: Mapping[str, float]) -> list[str]:
    """Doc ids by descending score, ties broken by ascending id (as sentence-transformers sorts)."""
    return [doc for doc, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]


def test_accuracy_is_any_relevant_in_top_k():
    assert accuracy_at_k(RUN, QRELS, 1) == 0.0  # X is unjudged
    assert accuracy_at_k(RUN, QRELS, 2) == 1.0  # B at rank 2
    assert accuracy_at_k(RUN, {"C": 0}, 6) == 0.0  # a zero grade is not relevant


def test_precision_and_recall():
    # top 3 = X, B, C: one relevant (B). P@3 = 1/3; R@3 = 1 of 3 relevant = 1/3
    assert precision_at_k(RUN, QRELS, 3) == pytest.approx(1 / 3)
    assert recall_at_k(RUN, QRELS, 3) == pytest.approx(1 / 3)
    # top 10 of a 6-long list: B, A, D relevant. P@10 = 3/10 (divides by k, not by 6); R@10 = 3/3
    assert precision_at_k(RUN, QRELS, 10) == pytest.approx(0.3)
    assert recall_at_k(RUN, QRELS, 10) == 1.0


def test_mrr():
    assert mrr_at_k(RUN, QRELS, 10) == 0.5  # first relevant (B) at rank 2
    assert mrr_at_k(RUN, QRELS, 1) == 0.0  # nothing relevant in the top 1


def test_map_divides_by_min_k_and_relevant():
    # relevant at ranks 2 (B), 4 (A), 6 (D): precisions 1/2, 2/4, 3/6 -> sum 1.5
    # MAP@10 = 1.5 / min(10, 3) = 0.5
    assert map_at_k(RUN, QRELS, 10) == pytest.approx(0.5)
    # MAP@4: ranks 2 and 4 only: 1/2 + 2/4 = 1.0, divided by min(4, 3) = 3 -> 1/3
    assert map_at_k(RUN, QRELS, 4) == pytest.approx(1 / 3)
    # MAP@2: rank 2 only: 1/2, divided by min(2, 3) = 2 -> 0.25 (trec_eval's map_cut_2 would say 0.5/3)
    assert map_at_k(RUN, QRELS, 2) == pytest.approx(0.25)


def test_ndcg_graded_and_binary():
    # graded gains at ranks 1..5: X=0, B=1, C=0, A=2, Y=0
    # DCG@5 = 1/log2(3) + 2/log2(5) = 0.630930 + 0.861353 = 1.492283
    # ideal: A=2, B=1, D=1 -> 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.630930 + 0.5 = 3.130930
    # NDCG@5 = 1.492283 / 3.130930 = 0.476627
    dcg5 = 1 / math.log2(3) + 2 / math.log2(5)
    idcg5 = 2 + 1 / math.log2(3) + 0.5
    assert ndcg_at_k(RUN, QRELS, 5) == pytest.approx(dcg5 / idcg5)
    assert ndcg_at_k(RUN, QRELS, 5) == pytest.approx(0.476627, abs=1e-6)
    # binary (sentence-transformers): B and A count 1 each: 0.630930 + 0.430677 = 1.061606
    # ideal: 1 + 0.630930 + 0.5 = 2.130930 -> 1.061606 / 2.130930 = 0.498189
    assert ndcg_at_k(RUN, QRELS, 5, graded=False) == pytest.approx(0.498189, abs=1e-6)
    # a perfect ranking scores 1, an empty one 0
    assert ndcg_at_k(["A", "B", "D"], QRELS, 10) == pytest.approx(1.0)
    assert ndcg_at_k([], QRELS, 10) == 0.0


def test_score_run_skips_queries_without_relevant_and_averages():
    qrels = {"q1": QRELS, "q2": {"Z": 1}, "q3": {"C": 0}}
    runs = {"q1": RUN, "q2": ["Z"]}
    scores = score_run(runs, qrels)
    assert scores.skipped == ["q3"]  # only a zero judgment: left out, as sentence-transformers does
    assert set(scores.per_query) == {"q1", "q2"}
    # mrr@10: q1 = 0.5, q2 = 1.0 -> mean 0.75
    assert scores.mean["mrr@10"] == pytest.approx(0.75)
    assert scores.per_query["q2"]["map@100"] == 1.0
    # a judged query the system never answered counts as all zeros
    assert score_run({}, {"q2": {"Z": 1}}).mean["accuracy@10"] == 0.0


def test_ranking_ties_break_by_ascending_id():
    assert ranking_from_scores({"b": 1.0, "a": 1.0, "c": 2.0}) == ["c", "a", "b"]


def _random_case(seed: int, graded: bool):
    """Random qrels and a scored run with distinct scores over 60 documents and 25 queries."""
    rnd = random.Random(seed)
    docs = [f"d{i:02d}" for i in range(60)]
    qrels, scores = {}, {}
    for q in range(25):
        judged = rnd.sample(docs, rnd.randint(1, 15))
        qrels[f"q{q}"] = {d: rnd.choice([0, 1, 2] if graded else [0, 1, 1]) for d in judged}
        retrieved = rnd.sample(docs, rnd.randint(0, 40))
        scores[f"q{q}"] = {d: rnd.random() for d in retrieved}
    return qrels, scores


def test_matches_sentence_transformers_information_retrieval_evaluator():
    """Binary judgments: every metric equals compute_metrics of sentence-transformers."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    qrels, scores = _random_case(7, graded=False)
    relevant_docs = {q: {d for d, g in j.items() if g > 0} for q, j in qrels.items()}
    corpus = {f"d{i:02d}": "x" for i in range(60)}
    queries = {q: "x" for q in qrels}
    cut = Cutoffs(accuracy=(1, 3, 5, 10), precision_recall=(1, 3, 5, 10), ndcg=(5, 10), mrr=(10,), map=(100,))
    evaluator = InformationRetrievalEvaluator(queries, corpus, relevant_docs, accuracy_at_k=list(cut.accuracy),
                                              precision_recall_at_k=list(cut.precision_recall),
                                              ndcg_at_k=list(cut.ndcg), mrr_at_k=list(cut.mrr), map_at_k=list(cut.map))
    results = [[{"corpus_id": d, "score": s} for d, s in scores[q].items()] for q in evaluator.queries_ids]
    theirs = evaluator.compute_metrics(results)
    ours = score_run({q: ranking_from_scores(s) for q, s in scores.items()}, qrels, cut)
    assert ours.skipped == sorted(set(qrels) - set(evaluator.queries_ids))
    for family, name in [("accuracy@k", "accuracy"), ("precision@k", "precision"), ("recall@k", "recall"),
                         ("ndcg@k", "ndcg"), ("mrr@k", "mrr"), ("map@k", "map")]:
        for k, value in theirs[family].items():
            assert ours.mean[f"{name}@{k}"] == pytest.approx(float(value), abs=1e-9), f"{name}@{k}"


def _trec_check(qrels: dict, scores: dict[str, dict[str, float]]) -> int:
    """Compare every metric with pytrec_eval on a run; returns the number of queries compared."""
    import pytrec_eval

    rankings = {q: ranking_from_scores(s) for q, s in scores.items()}
    ours = score_run(rankings, qrels)
    # trec_eval breaks score ties by doc id the other way round: give it strictly falling scores
    run = {q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in rankings.items() if r}
    measures = {"success.1,3,5,10", "P.1,3,5,10", "recall.1,3,5,10", "ndcg_cut.5,10", "map_cut.100"}
    trec = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    # recip_rank has no cut-off in trec_eval: score the run truncated to 10
    rr10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(
        {q: dict(list(s.items())[:10]) for q, s in run.items()})
    names = {"accuracy@{k}": "success_{k}", "precision@{k}": "P_{k}", "recall@{k}": "recall_{k}"}
    compared = 0
    for q, mine in ours.per_query.items():
        t = trec.get(q, {})
        for k in (1, 3, 5, 10):
            for our_name, trec_name in names.items():
                assert mine[our_name.format(k=k)] == pytest.approx(t.get(trec_name.format(k=k), 0.0), abs=1e-9)
        for k in (5, 10):
            assert mine[f"ndcg@{k}"] == pytest.approx(t.get(f"ndcg_cut_{k}", 0.0), abs=1e-9)
        assert mine["mrr@10"] == pytest.approx(rr10.get(q, {}).get("recip_rank", 0.0), abs=1e-9)
        n_rel = sum(g > 0 for g in qrels[q].values())
        # map_cut divides by all relevant, ours by min(100, relevant): rescale to compare
        assert mine["map@100"] * min(100, n_rel) / n_rel == pytest.approx(t.get("map_cut_100", 0.0), abs=1e-9)
        compared += 1
    return compared


def test_matches_pytrec_eval_on_random_graded_run():
    qrels, scores = _random_case(11, graded=True)
    assert _trec_check(qrels, scores) > 15


def test_matches_pytrec_eval_on_real_dense_run(sample_dir):
    """A real run: the packaged MiniLM over the sample corpus, graded judgments."""
    from indexer.embedder import SentenceTransformerEmbedder
    from indexer.models import packaged_model_dir
    from indexer.readers.beir import load_qrels, load_queries, read
    from indexer.readers import ReadOptions

    docs = list(read(sample_dir, ReadOptions()))
    queries = load_queries(sample_dir)
    qrels = load_qrels(sample_dir, "test")
    embedder = SentenceTransformerEmbedder(packaged_model_dir())
    d = embedder.embed_documents([f"{doc.title}. {doc.text}" for doc in docs])
    q = embedder.embed_queries([queries[qid] for qid in qrels])
    sims = q @ d.T
    scores = {qid: {doc.id: float(sims[i, j]) for j, doc in enumerate(docs)} for i, qid in enumerate(qrels)}
    assert _trec_check(qrels, scores) == 6
    # MiniLM finds the highly relevant document for most sample queries: a sanity floor, not a target
    assert score_run({k: ranking_from_scores(v) for k, v in scores.items()}, qrels).mean["mrr@10"] > 0.5


@pytest.mark.slow
def test_matches_pytrec_eval_on_nfcorpus_bm25(shared_data):
    """A real run on real graded qrels: SQLite FTS5 BM25 over NFCorpus, its dev queries, top 100."""
    from indexer.readers import ReadOptions
    from indexer.readers.beir import load_qrels, load_queries, read

    path = shared_data / "nfcorpus"
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(id UNINDEXED, text)")
    db.executemany("INSERT INTO docs VALUES (?, ?)", ((d.id, f"{d.title} {d.text}") for d in read(path, ReadOptions())))
    queries, qrels = load_queries(path), load_qrels(path, "dev")
    scores = {}
    for qid in qrels:
        terms = " OR ".join(json.dumps(w) for w in queries[qid].lower().split() if w.isalnum())
        rows = db.execute("SELECT id, -bm25(docs) FROM docs WHERE docs MATCH ? ORDER BY 2 DESC LIMIT 100",
                          (terms,)).fetchall() if terms else []
        scores[qid] = {doc: float(s) for doc, s in rows}
    assert _trec_check(qrels, scores) > 300
