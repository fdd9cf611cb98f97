"""Retrieval metrics over one ranked list: pure functions, no I/O.

Definitions follow sentence-transformers' InformationRetrievalEvaluator
(sentence_transformer/evaluation/information_retrieval.py, `compute_metrics`):

- a document is relevant when its judgment is > 0 (TREC's relevance level 1);
- accuracy@k: 1 if any relevant document is in the top k, else 0 (the query-level share
  of these is trec_eval's success@k);
- precision@k: relevant in top k / k (k, not the number returned, as in trec_eval P_k);
- recall@k: relevant in top k / all relevant;
- mrr@k: 1 / rank of the first relevant document in the top k, else 0;
- map@k: sum over relevant documents at rank r <= k of (relevant in top r) / r, divided
  by min(k, all relevant). trec_eval's map_cut_k divides by all relevant instead, so the
  two agree whenever a query has at most k relevant documents;
- ndcg@k: DCG = sum gain_i / log2(i + 1) over ranks i = 1..k, divided by the DCG of the
  ideal ordering of all judged documents. The one deliberate difference: sentence-
  transformers uses binary gains (1 for any relevant document); we use the graded
  judgment as the gain (linear gain, as trec_eval's ndcg_cut). With binary judgments the
  two are identical; `graded=False` gives the sentence-transformers value on graded data.

Queries without any relevant document are left out of averages, as sentence-transformers
does (it drops them when it is built); `score_run` says how many were left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

Qrels = Mapping[str, int]  # doc id -> graded judgment for one query



def relevant(qrels: Qrels) -> set[str]:
    """Documents judged relevant (grade > 0)."""
    return {doc for doc, grade in qrels.items() if grade > 0}


def accuracy_at_k(ranking: Sequence[str], qrels: Qrels, k: int) -> float:
    """1.0 when at least one relevant document is in the top k, else 0.0."""
    rel = relevant(qrels)
    return 1.0 if any(doc in rel for doc in ranking[:k]) else 0.0


def precision_at_k(ranking: Sequence[str], qrels: Qrels, k: int) -> float:
    """Relevant documents in the top k, divided by k."""
    rel = relevant(qrels)
    return sum(doc in rel for doc in ranking[:k]) / k


def recall_at_k(ranking: Sequence[str], qrels: Qrels, k: int) -> float:
    """Relevant documents in the top k, divided by all relevant documents."""
    rel = relevant(qrels)
    return sum(doc in rel for doc in ranking[:k]) / len(rel) if rel else 0.0


def mrr_at_k(ranking: Sequence[str], qrels: Qrels, k: int) -> float:
    """Reciprocal rank of the first relevant document within the top k (0 when none)."""
    rel = relevant(qrels)
    for rank, doc in enumerate(ranking[:k], 1):
        if doc in rel:
            return 1.0 / rank
    return 0.0


def map_at_k(ranking: Sequence[str], qrels: Qrels, k: int) -> float:
    """Average precision over the top k, normalised by min(k, relevant) as sentence-transformers does."""
    rel = relevant(qrels)
    if not rel:
        return 0.0
    found, total = 0, 0.0
    for rank, doc in enumerate(ranking[:k], 1):
        if doc in rel:
            found += 1
            total += found / rank
    return total / min(k, len(rel))


def dcg(gains: Iterable[float]) -> float:
    """Discounted cumulative gain: gain at rank i (1-based) divided by log2(i + 1)."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def ndcg_at_k(ranking: Sequence[str], qrels: Qrels, k: int, graded: bool = True) -> float:
    """NDCG@k with the judgment as gain (graded) or 1 per relevant document (binary)."""
    gain = {doc: (float(g) if graded else 1.0) for doc, g in qrels.items() if g > 0}
    ideal = dcg(sorted(gain.values(), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg(gain.get(doc, 0.0) for doc in ranking[:k]) / ideal


@dataclass(frozen=True)
class Cutoffs:
    """Which k each metric family is reported at (the issue's defaults)."""

    accuracy: tuple[int, ...] = (1, 3, 5, 10)
    precision_recall: tuple[int, ...] = (1, 3, 5, 10)
    ndcg: tuple[int, ...] = (5, 10)
    mrr: tuple[int, ...] = (10,)
    map: tuple[int, ...] = (100,)

    @property
    def depth(self) -> int:
        """How many hits a ranking needs so that every metric is exact."""
        return max(self.accuracy + self.precision_recall + self.ndcg + self.mrr + self.map)


def score_query(ranking: Sequence[str], qrels: Qrels, cutoffs: Cutoffs = Cutoffs()) -> dict[str, float]:
    """Every metric of one query, keyed like `ndcg@10`."""
    out: dict[str, float] = {}
    for k in cutoffs.accuracy:
        out[f"accuracy@{k}"] = accuracy_at_k(ranking, qrels, k)
    for k in cutoffs.precision_recall:
        out[f"precision@{k}"] = precision_at_k(ranking, qrels, k)
        out[f"recall@{k}"] = recall_at_k(ranking, qrels, k)
    for k in cutoffs.ndcg:
        out[f"ndcg@{k}"] = ndcg_at_k(ranking, qrels, k)
    for k in cutoffs.mrr:
        out[f"mrr@{k}"] = mrr_at_k(ranking, qrels, k)
    for k in cutoffs.map:
        out[f"map@{k}"] = map_at_k(ranking, qrels, k)
    return out


@dataclass
class RunScores:
    """Per-query and mean scores of one ranked run."""

    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]
    skipped: list[str] = field(default_factory=list)  # queries with no relevant document


def score_run(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Qrels],
              cutoffs: Cutoffs = Cutoffs()) -> RunScores:
    """Score every judged query; a judged query missing from `rankings` scores as an empty list."""
    per_query: dict[str, dict[str, float]] = {}
    skipped = []
    for qid in sorted(qrels):
        if not relevant(qrels[qid]):
            skipped.append(qid)
            continue
        per_query[qid] = score_query(rankings.get(qid, ()), qrels[qid], cutoffs)
    return RunScores(per_query, mean_scores(per_query), skipped)


def mean_scores(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over queries (empty when there are no queries)."""
    if not per_query:
        return {}
    keys = next(iter(per_query.values())).keys()
    return {key: sum(q[key] for q in per_query.values()) / len(per_query) for key in keys}

